package ganesha

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"k8s.io/klog/v2"
)

// Config configures a Server.
type Config struct {
	StateDir string // required, absolute; see the package doc for its layout
	// RuntimeDir holds what lives only while the server runs: the D-Bus
	// socket, PID files and logs. Keep it off every exported filesystem
	// (a tmpfs such as /run). Default: StateDir, as before.
	RuntimeDir  string
	BindAddress string // ganesha Bind_addr; "" = all addresses
	NFSPort     int    // default 2049
	MountdPort  int    // default 20048
	NFSv3       bool   // also serve NFSv3 (needs rpcbind); NFSv4 is always on
	GracePeriod int    // NFSv4 grace seconds, 0..180; 0 = Graceless
	// LeaseLifetime is the NFSv4 lease in seconds; default 60, never more
	// than a non-zero GracePeriod.
	LeaseLifetime int
	LogLevel      string // ganesha log level (EVENT, INFO, DEBUG, ...); default EVENT
	// CephConf is the ceph.conf of the cluster CephFS exports (FSAL CEPH)
	// are in; empty: no CephFS exports. Needs nfs-ganesha-ceph.
	CephConf string
	// Recovery and ServerScope: see mainConfig. Set both for a server
	// that another may take over from (active/passive over CephFS).
	Recovery    *RADOSRecovery
	ServerScope string

	// Binaries; empty means PATH (plus /usr/sbin, /sbin).
	GaneshaPath        string
	DBusDaemonPath     string
	RpcbindPath        string
	SocketActivatePath string // systemd-socket-activate; optional

	StartTimeout time.Duration // readiness wait per start; default 30s plus 100ms per export (each new filesystem is probed)
	StopTimeout  time.Duration // wait per stop step; default 10s
	MaxBackoff   time.Duration // longest wait between restarts; default 10s
	Clock        Clock         // default the real clock

	// BusObserver, when set, is told of every D-Bus call to ganesha (for
	// a latency histogram); nil means no one is told.
	BusObserver BusObserver
}

func (c Config) withDefaults() Config {
	if c.NFSPort == 0 {
		c.NFSPort = 2049
	}
	if c.MountdPort == 0 {
		c.MountdPort = 20048
	}
	if c.LeaseLifetime == 0 {
		c.LeaseLifetime = 60
		if c.GracePeriod > 0 {
			c.LeaseLifetime = min(60, c.GracePeriod)
		}
	}
	if c.LogLevel == "" {
		c.LogLevel = "EVENT"
	}
	if c.StartTimeout == 0 {
		c.StartTimeout = defaultStartTimeout
	}
	if c.StopTimeout == 0 {
		c.StopTimeout = 10 * time.Second
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = 10 * time.Second
	}
	if c.Clock == nil {
		c.Clock = realClock{}
	}
	return c
}

const defaultStartTimeout = 30 * time.Second

// statePaths are the files and directories under Config.StateDir.
type statePaths struct {
	root, exports, recovery, run, log string
	sentinel                          string
	mainConf, includes, dbusConf      string
	dbusSocket, dbusPid               string
	ganeshaPid, rpcbindPid            string
	ganeshaLog                        string
	dbusLog, rpcbindLog               string
}

func newStatePaths(root, runtime string) statePaths {
	if runtime == "" {
		runtime = root
	}
	run, log := filepath.Join(runtime, "run"), filepath.Join(runtime, "log")
	return statePaths{
		root: root, exports: filepath.Join(root, "exports"), recovery: filepath.Join(root, "recovery"),
		sentinel: filepath.Join(root, "sentinel"),
		run:      run, log: log,
		mainConf: filepath.Join(root, "ganesha.conf"), includes: filepath.Join(root, "exports.conf"),
		dbusConf:   filepath.Join(root, "dbus.conf"),
		dbusSocket: filepath.Join(run, "dbus.sock"), dbusPid: filepath.Join(run, "dbus.pid"),
		ganeshaPid: filepath.Join(run, "ganesha.pid"), rpcbindPid: filepath.Join(run, "rpcbind.pid"),
		ganeshaLog: filepath.Join(log, "ganesha.log"),
		dbusLog:    filepath.Join(log, "dbus.log"), rpcbindLog: filepath.Join(log, "rpcbind.log"),
	}
}

// Server runs ganesha.nfsd with a private dbus-daemon (and rpcbind for
// NFSv3) as supervised children.
type Server struct {
	cfg   Config
	paths statePaths
	main  mainConfig
	bins  struct{ ganesha, dbus, rpcbind, activate string }

	bus     *busClient
	exports *ExportManager

	// detach makes children survive our death; only the stale-leftover
	// test's helper process sets it.
	detach bool

	mu       sync.Mutex
	running  bool
	sp       *spawner
	dbusProc *child
	ganesha  *child
	rpcbind  *rpcbindManager
	cancel   context.CancelFunc
	supDone  chan struct{}
	restarts int
}

// NewServer validates cfg, finds the binaries and loads the export files
// already in the state dir. It starts nothing.
func NewServer(cfg Config) (*Server, error) {
	cfg = cfg.withDefaults()
	if cfg.StateDir == "" || !filepath.IsAbs(cfg.StateDir) {
		return nil, fmt.Errorf("ganesha config: StateDir %q must be an absolute path", cfg.StateDir)
	}
	cfg.StateDir = filepath.Clean(cfg.StateDir)
	var errs []error
	if cfg.BindAddress != "" && net.ParseIP(cfg.BindAddress) == nil {
		errs = append(errs, fmt.Errorf("BindAddress %q is not an IP address", cfg.BindAddress))
	}
	for name, p := range map[string]int{"NFSPort": cfg.NFSPort, "MountdPort": cfg.MountdPort} {
		if p < 1 || p > 65535 {
			errs = append(errs, fmt.Errorf("%s %d out of range 1..65535", name, p))
		}
	}
	if cfg.NFSPort == cfg.MountdPort {
		errs = append(errs, fmt.Errorf("NFSPort and MountdPort are both %d", cfg.NFSPort))
	}
	if cfg.GracePeriod < 0 || cfg.GracePeriod > 180 {
		errs = append(errs, fmt.Errorf("GracePeriod %d out of range 0..180", cfg.GracePeriod))
	}
	if cfg.LeaseLifetime < 1 || cfg.LeaseLifetime > 180 {
		errs = append(errs, fmt.Errorf("LeaseLifetime %d out of range 1..180", cfg.LeaseLifetime))
	}
	if cfg.RuntimeDir != "" && !filepath.IsAbs(cfg.RuntimeDir) {
		errs = append(errs, fmt.Errorf("RuntimeDir %q must be an absolute path", cfg.RuntimeDir))
	}
	s := &Server{cfg: cfg, paths: newStatePaths(cfg.StateDir, cfg.RuntimeDir)}
	s.main = mainConfig{
		BindAddress: cfg.BindAddress, NFSPort: cfg.NFSPort, MountdPort: cfg.MountdPort, NFSv3: cfg.NFSv3,
		GracePeriod: cfg.GracePeriod, LeaseLifetime: cfg.LeaseLifetime, RecoveryRoot: s.paths.recovery,
		LogLevel: cfg.LogLevel, ExportsInclude: s.paths.includes, SentinelPath: s.paths.sentinel,
		Recovery: cfg.Recovery, ServerScope: cfg.ServerScope,
		CephConf: cfg.CephConf,
	}
	if err := s.main.validate(); err != nil {
		errs = append(errs, err)
	}
	var err error
	if s.bins.ganesha, err = lookBinary(cfg.GaneshaPath, "ganesha.nfsd"); err != nil {
		errs = append(errs, fmt.Errorf("ganesha.nfsd not found (%w): install nfs-ganesha nfs-ganesha-vfs", err))
	} else if cfg.GaneshaPath == "" {
		// A packaged ganesha: its plugin must come from the package too. A
		// ganesha named in GaneshaPath may be built elsewhere; not checked.
		if _, err := findVFSPlugin(vfsPluginGlobs); err != nil {
			errs = append(errs, err)
		}
		if cfg.CephConf != "" {
			if _, err := findPlugin(cephPluginGlobs, "libfsalceph.so", "nfs-ganesha-ceph"); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if s.bins.dbus, err = lookBinary(cfg.DBusDaemonPath, "dbus-daemon"); err != nil {
		errs = append(errs, fmt.Errorf("dbus-daemon not found (%w): install dbus", err))
	}
	if cfg.NFSv3 {
		if s.bins.rpcbind, err = lookBinary(cfg.RpcbindPath, "rpcbind"); err != nil {
			errs = append(errs, fmt.Errorf("rpcbind not found (%w): install rpcbind, or turn NFSv3 off", err))
		}
		// Optional: without it rpcbind listens on every address.
		s.bins.activate, _ = lookBinary(cfg.SocketActivatePath, "systemd-socket-activate")
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("ganesha config: %w", errors.Join(errs...))
	}
	for _, d := range []string{s.paths.root, s.paths.exports, s.paths.recovery, s.paths.run, s.paths.log, s.paths.sentinel} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("ganesha state dir: %w", err)
		}
	}
	s.bus = newBusClient("unix:path=" + s.paths.dbusSocket)
	s.bus.observe = cfg.BusObserver
	if s.exports, err = newExportManager(s.bus, cfg.StateDir); err != nil {
		return nil, err
	}
	return s, nil
}

// DefaultRuntimeDir is the runtime directory of the server whose state is in
// stateDir: under /run, one per state dir, so several servers on one machine
// never share a socket.
func DefaultRuntimeDir(stateDir string) string {
	sum := sha256.Sum256([]byte(filepath.Clean(stateDir)))
	return filepath.Join("/run/nfs-provisioner", hex.EncodeToString(sum[:8]))
}

// BusAddressOf is the D-Bus address of the server whose runtime directory
// is runtimeDir.
func BusAddressOf(runtimeDir string) string {
	return "unix:path=" + newStatePaths("", runtimeDir).dbusSocket
}

// Exports returns the export manager; it works while the server runs.
func (s *Server) Exports() *ExportManager { return s.exports }

// BusAddress is the private D-Bus address, for ConnectExportManager.
func (s *Server) BusAddress() string { return s.bus.address }

// GaneshaPID returns the PID of the running ganesha.nfsd, or 0.
func (s *Server) GaneshaPID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ganesha == nil || s.ganesha.exited() {
		return 0
	}
	return s.ganesha.pid()
}

// Restarts counts how often the supervisor restarted ganesha.
func (s *Server) Restarts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.restarts
}

// Start runs dbus-daemon, rpcbind (NFSv3 only, if none answers) and
// ganesha.nfsd, and returns once D-Bus answers and the NFS port accepts.
// Leftovers of a previous run on the same state dir are killed first.
// Afterwards ganesha is supervised until Stop.
func (s *Server) Start(ctx context.Context) error {
	logger := klog.FromContext(ctx).WithValues("stateDir", s.cfg.StateDir)
	ctx = klog.NewContext(ctx, logger)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running {
		return errors.New("ganesha server already started")
	}
	t0 := time.Now()
	if err := preflight(s.cfg.StateDir, s.cfg.NFSv3); err != nil {
		return err
	}
	for _, l := range []struct {
		pidFile  string
		binaries []string
	}{
		{s.paths.ganeshaPid, []string{"ganesha.nfsd"}},
		{s.paths.dbusPid, []string{"dbus-daemon"}},
		{s.paths.rpcbindPid, []string{"rpcbind", "systemd-socket-activate"}},
	} {
		if err := killLeftover(ctx, l.pidFile, l.binaries, s.cfg.StateDir); err != nil {
			return err
		}
	}
	s.sp = newSpawner()
	s.rpcbind = &rpcbindManager{
		spawner: s.sp, binary: s.bins.rpcbind, activate: s.bins.activate, loopback: isLoopback(s.cfg.BindAddress),
		stateDir: s.cfg.StateDir, pidFile: s.paths.rpcbindPid, logFile: s.paths.rpcbindLog, detach: s.detach,
	}
	if err := s.startDBusLocked(ctx); err != nil {
		s.teardownLocked(ctx)
		return err
	}
	if err := s.startGaneshaLocked(ctx); err != nil {
		s.teardownLocked(ctx)
		return err
	}
	runCtx, cancel := context.WithCancel(klog.NewContext(context.Background(), logger))
	s.cancel = cancel
	s.supDone = make(chan struct{})
	s.running = true
	go s.supervise(runCtx)
	logger.Info("NFS server started", "pid", s.ganesha.pid(), "nfsPort", s.cfg.NFSPort, "nfsv3", s.cfg.NFSv3,
		"bind", s.cfg.BindAddress, "duration", time.Since(t0))
	return nil
}

func (s *Server) startDBusLocked(ctx context.Context) error {
	if err := writeFileAtomic(s.paths.dbusConf, renderDBusConfig(s.paths.dbusSocket), 0o644, false); err != nil {
		return err
	}
	if err := os.Remove(s.paths.dbusSocket); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove stale D-Bus socket: %w", err)
	}
	s.bus.Close()
	c, err := startChild(s.sp, childSpec{
		name: "dbus-daemon", path: s.bins.dbus,
		// --nofork keeps it our child, so we Wait for it and know its PID.
		args:     []string{"--config-file=" + s.paths.dbusConf, "--nofork", "--nopidfile"},
		stateDir: s.cfg.StateDir, pidFile: s.paths.dbusPid, logFile: s.paths.dbusLog, detach: s.detach,
	})
	if err != nil {
		return err
	}
	s.dbusProc = c
	err = s.waitFor(ctx, c, s.paths.dbusLog, func() error {
		_, err := s.bus.connection()
		return err
	})
	if err != nil {
		return fmt.Errorf("dbus-daemon: %w", err)
	}
	return nil
}

func (s *Server) startGaneshaLocked(ctx context.Context) error {
	if s.cfg.NFSv3 {
		// Checked on every start: the rpcbind we reused may be gone.
		if err := s.rpcbind.ensure(ctx); err != nil {
			return err
		}
	}
	if err := writeFileAtomic(s.paths.mainConf, renderMain(s.main), 0o644, false); err != nil {
		return err
	}
	if err := s.exports.writeIncludes(); err != nil {
		return err
	}
	// Keep the log of the previous instance readable, but start fresh, so
	// the tail we quote on failure belongs to this start.
	if _, err := os.Stat(s.paths.ganeshaLog); err == nil {
		os.Rename(s.paths.ganeshaLog, s.paths.ganeshaLog+".1")
	}
	c, err := startChild(s.sp, childSpec{
		name: "ganesha.nfsd", path: s.bins.ganesha,
		// Its log goes to stderr, and through our pipe into a capped file.
		args: []string{"-F", "-f", s.paths.mainConf, "-L", "STDERR", "-p", s.paths.ganeshaPid,
			"-N", "NIV_" + s.cfg.LogLevel},
		// ganesha finds its bus through the "system bus" variable.
		//
		// ganesha tells filesystems apart by their UUID, which it gets
		// from libblkid. libblkid's cache file (/run/blkid/blkid.tab,
		// shared by every process on the node) holds an entry per block
		// device it ever probed, and ganesha read, checked and rewrote all
		// of it for every export of a new filesystem: with a few hundred
		// loop devices that was three quarters of ganesha's work for such
		// an export. Without the file, libblkid probes the one device it is
		// asked about, so the UUID is still read, from the device itself.
		env:      s.ganeshaEnv(),
		stateDir: s.cfg.StateDir, pidFile: s.paths.ganeshaPid, logFile: s.paths.ganeshaLog, detach: s.detach,
	})
	if err != nil {
		return err
	}
	s.ganesha = c
	nfsAddr := net.JoinHostPort(dialHost(s.cfg.BindAddress), strconv.Itoa(s.cfg.NFSPort))
	err = s.waitFor(ctx, c, s.paths.ganeshaLog, func() error {
		if _, err := s.bus.ShowExports(ctx); err != nil {
			return err
		}
		conn, err := net.DialTimeout("tcp", nfsAddr, time.Second)
		if err != nil {
			return err
		}
		return conn.Close()
	})
	if err != nil {
		return fmt.Errorf("ganesha.nfsd: %w", err)
	}
	return nil
}

// ganeshaEnv is ganesha's environment beyond ours: its bus, and the
// cluster of CephFS exports. FSAL_CEPH reads the CEPH block only when it is
// loaded from ganesha.conf; loaded by an export added over D-Bus, it sees
// only that export's file and falls back to libcephfs's defaults, where
// CEPH_CONF names the cluster.
func (s *Server) ganeshaEnv() []string {
	env := []string{"DBUS_SYSTEM_BUS_ADDRESS=" + s.bus.address, "BLKID_FILE=/dev/null"}
	if s.cfg.CephConf != "" {
		env = append(env, "CEPH_CONF="+s.cfg.CephConf)
	}
	return env
}

// waitFor polls ready until it succeeds, the child dies (the error quotes
// the end of its log) or StartTimeout passes.
func (s *Server) waitFor(ctx context.Context, c *child, logFile string, ready func() error) error {
	timeout := s.startTimeout()
	deadline := time.Now().Add(timeout)
	for {
		err := ready()
		if err == nil {
			return nil
		}
		if c.exited() {
			return fmt.Errorf("exited during start-up (%s); last log lines:\n%s", c.exitStatus(), tailFile(logFile, 15))
		}
		if time.Now().After(deadline) {
			c.stop(ctx, s.cfg.StopTimeout)
			return fmt.Errorf("not ready after %s: %w; last log lines:\n%s", timeout, err, tailFile(logFile, 15))
		}
		select {
		case <-ctx.Done():
			c.stop(ctx, s.cfg.StopTimeout)
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// startTimeout is how long a start may take: ganesha probes the filesystem
// of every export before it answers on D-Bus, so a server with hundreds of
// filesystem volumes needs longer than an empty one.
func (s *Server) startTimeout() time.Duration {
	if s.cfg.StartTimeout != defaultStartTimeout {
		return s.cfg.StartTimeout
	}
	s.exports.mu.Lock()
	n := len(s.exports.known)
	s.exports.mu.Unlock()
	return s.cfg.StartTimeout + time.Duration(n)*100*time.Millisecond
}

func dialHost(bind string) string {
	switch bind {
	case "", "0.0.0.0":
		return "127.0.0.1"
	case "::":
		return "::1"
	}
	return bind
}

// supervise restarts ganesha (and the dbus-daemon, if that died) until ctx
// is cancelled by Stop.
func (s *Server) supervise(ctx context.Context) {
	defer close(s.supDone)
	logger := klog.FromContext(ctx)
	bo := backoff{initial: 100 * time.Millisecond, max: s.cfg.MaxBackoff, stableAfter: 10 * time.Second}
	for {
		s.mu.Lock()
		g, d := s.ganesha, s.dbusProc
		s.mu.Unlock()
		var which *child
		select {
		case <-ctx.Done():
			return
		case <-g.done:
			which = g
		case <-d.done:
			which = d
		}
		logFile := s.paths.ganeshaLog
		if which == d {
			logFile = s.paths.dbusLog
		}
		wait := bo.next(s.cfg.Clock.Now().Sub(which.started))
		logger.Error(nil, "Child died, restarting", "name", which.name, "pid", which.pid(),
			"status", which.exitStatus(), "backoff", wait, "logTail", tailFile(logFile, 5))
		select {
		case <-ctx.Done():
			return
		case <-s.cfg.Clock.After(wait):
		}
		s.mu.Lock()
		err := s.restartLocked(ctx)
		if err == nil {
			s.restarts++
		}
		s.mu.Unlock()
		if err != nil {
			logger.Error(err, "Restart failed; will retry")
			continue
		}
		logger.Info("NFS server restarted", "pid", s.GaneshaPID())
	}
}

func (s *Server) restartLocked(ctx context.Context) error {
	if s.dbusProc.exited() {
		// ganesha cannot re-register on a new bus; restart both.
		if !s.ganesha.exited() {
			s.ganesha.stop(ctx, s.cfg.StopTimeout)
		}
		if err := s.startDBusLocked(ctx); err != nil {
			return err
		}
	}
	if !s.ganesha.exited() {
		return nil
	}
	return s.startGaneshaLocked(ctx)
}

// Stop shuts ganesha down (D-Bus admin shutdown, then SIGTERM, then
// SIGKILL), then the rpcbind we started, if any, and the dbus-daemon. It
// stops only processes this Server started.
func (s *Server) Stop(ctx context.Context) error {
	logger := klog.FromContext(ctx).WithValues("stateDir", s.cfg.StateDir)
	ctx = klog.NewContext(ctx, logger)
	s.mu.Lock()
	if !s.running {
		s.mu.Unlock()
		return nil
	}
	s.running = false
	s.cancel()
	done := s.supDone
	s.mu.Unlock()
	<-done // the supervisor may be mid-restart and needs the lock

	s.mu.Lock()
	defer s.mu.Unlock()
	t0 := time.Now()
	s.teardownLocked(ctx)
	logger.Info("NFS server stopped", "duration", time.Since(t0))
	return nil
}

func (s *Server) teardownLocked(ctx context.Context) {
	if g := s.ganesha; g != nil && !g.exited() {
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		// The reply may never come: ganesha exits while answering.
		_ = s.bus.Shutdown(sctx)
		cancel()
		t := time.NewTimer(s.cfg.StopTimeout)
		select {
		case <-g.done:
		case <-t.C:
		}
		t.Stop()
		g.stop(ctx, s.cfg.StopTimeout)
	}
	if s.rpcbind != nil {
		s.rpcbind.stop(ctx)
	}
	s.bus.Close()
	if s.dbusProc != nil {
		s.dbusProc.stop(ctx, s.cfg.StopTimeout)
		os.Remove(s.paths.dbusSocket)
	}
	if s.sp != nil {
		s.sp.close()
		s.sp = nil
	}
	s.ganesha, s.dbusProc = nil, nil
}

// Healthy returns nil while ganesha runs and answers on D-Bus.
func (s *Server) Healthy() error {
	s.mu.Lock()
	running, g := s.running, s.ganesha
	s.mu.Unlock()
	if !running {
		return errors.New("ganesha server not started")
	}
	if g == nil || g.exited() {
		return errors.New("ganesha.nfsd not running")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := s.bus.ShowExports(ctx); err != nil {
		return fmt.Errorf("ganesha.nfsd not answering: %w", err)
	}
	return nil
}
