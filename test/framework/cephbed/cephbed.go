// Package cephbed runs a real single-node Ceph cluster for tests: one
// ceph-mon, ceph-mgr, ceph-osd (BlueStore on a sparse file) and ceph-mds as
// plain child processes on 127.0.0.1, with cephx on, a CephFS named
// "cephfs" with an active MDS, and a pool "nfs-ganesha" (application nfs)
// for ganesha's RADOS recovery database. Everything — configuration,
// keyrings, data, admin sockets, logs — lives in one temporary directory;
// nothing is written to /etc/ceph, /var/lib/ceph, /var/run/ceph or
// /var/log/ceph, and nothing but the daemons it started is ever signalled.
//
// A test asks for a cluster of its own:
//
//	c := cephbed.Start(t, cephbed.Options{})
//	out, err := c.Ceph(ctx, "fs", "subvolume", "create", cephbed.FSName, "v1", "--size", "1048576")
//
// or, since bootstrap costs 6-10 s (more on a loaded machine), shares one
// per test binary:
//
//	func TestMain(m *testing.M) { os.Exit(cephbed.Main(m)) }
//	...
//	c := cephbed.Shared(t)
//
// Ganesha (FSAL_CEPH, 4.3) keeps its MDS session open for 300 s after it
// exits, even cleanly, holding caps on what it served: a test that checks
// data through MountFuse after stopping a ganesha, or restarts the cluster,
// evicts it first (Evict with client_metadata.uuid=ganesha-<nodeid>-<export
// id in 4 hex digits>), or it waits. See /work/shared/research/ceph-facts.md.
//
// The binaries come from Debian's ceph-mon, ceph-mgr, ceph-osd, ceph-mds,
// ceph-common and ceph-fuse packages (hack/install-deps.sh).
package cephbed

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	// FSName is the CephFS the bed creates.
	FSName = "cephfs"
	// GaneshaPool is the RADOS pool (application "nfs") the bed creates
	// for ganesha's recovery backend (RADOS_KV { Pool = ... }).
	GaneshaPool = "nfs-ganesha"

	// DefaultStartTimeout bounds Start and Restart. Bootstrap takes ~15 s on
	// an idle 2-core machine; CI runs several test packages at once.
	DefaultStartTimeout = 3 * time.Minute
	// DefaultStopGrace is how long a daemon gets between SIGTERM and
	// SIGKILL. The MDS takes ~11 s to stop on SIGTERM.
	DefaultStopGrace = 15 * time.Second
	// DefaultBlockSize is the size of the OSD's sparse block file; only
	// what is written takes disk space.
	DefaultBlockSize = 20 << 30

	dirPrefix = "cephbed-"
	ownerFile = "owner.pid"
	// cliTimeout bounds one ceph CLI call that has no deadline of its own.
	cliTimeout = 60 * time.Second
)

// Options configure a cluster. The zero value is fine.
type Options struct {
	// TempDir is where the cluster's directory is made; empty means
	// os.TempDir(). Keep it short: admin socket paths must fit in 107 bytes.
	TempDir string
	// BlockSize is the OSD's block file size in bytes; 0 means
	// DefaultBlockSize.
	BlockSize int64
	// StopGrace is the SIGTERM-to-SIGKILL delay of each daemon; 0 means
	// DefaultStopGrace.
	StopGrace time.Duration
	// Logf receives progress lines (phases and their durations). Start
	// uses t.Logf; nil means no progress lines.
	Logf func(format string, args ...any)
}

// Cluster is a running (or, after Stop, stopped) single-node Ceph. Its
// exported fields are read-only.
type Cluster struct {
	// Dir holds ceph.conf, the keyrings, the daemons' data, admin sockets
	// (run/) and logs (log/); Close removes it.
	Dir string
	// FSID is the cluster's fsid.
	FSID string
	// MonHost is the mon_host value of ceph.conf, e.g.
	// "[v2:127.0.0.1:40001,v1:127.0.0.1:40002]".
	MonHost string
	// StartupTime is how long the bootstrap took.
	StartupTime time.Duration

	opts         Options
	conf         string
	adminKeyring string
	adminKey     string

	mu         sync.Mutex
	daemons    []*daemon // in start order: mon, mgr, osd, mds
	generation int       // counts starts, to name each start's stdout file
	closeOnce  sync.Once
	closeErr   error
}

// ConfPath is the path of the cluster's ceph.conf; give it to every Ceph
// client (-c, CEPH_CONF, Ceph_Conf in ganesha).
func (c *Cluster) ConfPath() string { return c.conf }

// AdminKeyring is the path of the client.admin keyring. ceph.conf names it
// as the default keyring, so `ceph -c ConfPath()` is admin.
func (c *Cluster) AdminKeyring() string { return c.adminKeyring }

// Admin is the client.admin identity.
func (c *Cluster) Admin() Client {
	return Client{Name: "admin", Keyring: c.adminKeyring, Key: c.adminKey}
}

// Start bootstraps a cluster for the duration of the test: progress goes to
// t.Logf, and on cleanup its daemons are stopped and its directory removed
// (only the logs are kept, and their path logged, when the test failed).
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	ctx, cancel := context.WithTimeout(context.Background(), DefaultStartTimeout)
	defer cancel()
	c, err := New(ctx, opts)
	if err != nil {
		t.Fatalf("cephbed: %v", err)
	}
	t.Cleanup(func() {
		// t.Logf may not be used after the test; Close logs nothing else.
		c.opts.Logf = nil
		if err := c.close(t.Failed()); err != nil {
			t.Errorf("cephbed: %v", err)
		}
		if t.Failed() {
			t.Logf("cephbed: logs kept in %s", filepath.Join(c.Dir, "log"))
		}
	})
	return c
}

// New bootstraps a cluster from nothing and returns once it is ready: mon
// in quorum, the OSD up, all PGs active, the MDS of FSName active and the
// mgr's volumes module answering. On error nothing it started is left
// running and only the logs are kept. The caller must Close it.
func New(ctx context.Context, opts Options) (_ *Cluster, err error) {
	if opts.BlockSize == 0 {
		opts.BlockSize = DefaultBlockSize
	}
	if opts.StopGrace == 0 {
		opts.StopGrace = DefaultStopGrace
	}
	if opts.TempDir == "" {
		removeStaleDirs(os.TempDir())
	}
	for _, bin := range []string{"ceph", "ceph-mon", "ceph-mgr", "ceph-osd", "ceph-mds", "monmaptool"} {
		if _, err := exec.LookPath(bin); err != nil {
			return nil, fmt.Errorf("cephbed: %w (install Ceph: hack/install-deps.sh)", err)
		}
	}
	dir, err := os.MkdirTemp(opts.TempDir, dirPrefix)
	if err != nil {
		return nil, fmt.Errorf("cephbed: %w", err)
	}
	c := &Cluster{Dir: dir, opts: opts}
	defer func() {
		if err != nil {
			if cerr := c.close(true); cerr != nil {
				err = errors.Join(err, cerr)
			}
			err = fmt.Errorf("cephbed: bootstrap (logs in %s): %w", filepath.Join(dir, "log"), err)
		}
	}()
	// removeStaleDirs deletes the directory once this PID is gone, which
	// is what happens to it when a test binary dies without cleanup.
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(fmt.Sprint(os.Getpid())), 0o644); err != nil {
		return nil, err
	}
	if err := c.bootstrap(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// Close stops the daemons (SIGKILL after a second: their data is going)
// and removes Dir. Calling it again is a no-op.
func (c *Cluster) Close() error { return c.close(false) }

func (c *Cluster) close(keepLogs bool) error {
	c.closeOnce.Do(func() {
		errs := []error{c.stop(closeGrace)}
		if keepLogs {
			errs = append(errs, c.removeAllBut("log"))
		} else {
			errs = append(errs, os.RemoveAll(c.Dir))
		}
		c.closeErr = errors.Join(errs...)
	})
	return c.closeErr
}

// removeAllBut removes everything in Dir except keep, and the owner file,
// so that removeStaleDirs leaves what remains for whoever reads a failure.
func (c *Cluster) removeAllBut(keep string) error {
	entries, err := os.ReadDir(c.Dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		if e.Name() != keep {
			errs = append(errs, os.RemoveAll(filepath.Join(c.Dir, e.Name())))
		}
	}
	return errors.Join(errs...)
}

func (c *Cluster) logf(format string, args ...any) {
	if c.opts.Logf != nil {
		c.opts.Logf("cephbed: "+format, args...)
	}
}

// Ceph runs the ceph CLI as client.admin against this cluster and returns
// its standard output. The error carries the standard error.
func (c *Cluster) Ceph(ctx context.Context, args ...string) ([]byte, error) {
	return c.CephAs(ctx, c.Admin(), args...)
}

// CephAs is Ceph as another client.
func (c *Cluster) CephAs(ctx context.Context, who Client, args ...string) ([]byte, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cliTimeout)
		defer cancel()
	}
	full := append([]string{"-c", c.conf, "--id", who.Name, "--keyring", who.Keyring, "--connect-timeout", "30"}, args...)
	cmd := exec.CommandContext(ctx, "ceph", full...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("ceph %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// CephJSON runs the ceph CLI with --format=json and decodes its output
// into v.
func (c *Cluster) CephJSON(ctx context.Context, v any, args ...string) error {
	out, err := c.Ceph(ctx, append(args, "--format=json")...)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(out, v); err != nil {
		return fmt.Errorf("ceph %s: decode %.200q: %w", strings.Join(args, " "), out, err)
	}
	return nil
}

// CreateSubvolume creates subvolume name of FSName (group _nogroup) with a
// quota of size bytes (0: none) and returns its path in the file system,
// e.g. /volumes/_nogroup/name/<uuid>.
func (c *Cluster) CreateSubvolume(ctx context.Context, name string, size int64) (string, error) {
	args := []string{"fs", "subvolume", "create", FSName, name}
	if size > 0 {
		args = append(args, "--size", fmt.Sprint(size))
	}
	if _, err := c.Ceph(ctx, args...); err != nil {
		return "", fmt.Errorf("cephbed: %w", err)
	}
	out, err := c.Ceph(ctx, "fs", "subvolume", "getpath", FSName, name)
	if err != nil {
		return "", fmt.Errorf("cephbed: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}
