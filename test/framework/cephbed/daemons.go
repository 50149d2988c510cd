package cephbed

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nfs-provisioner/nfs-provisioner/test/framework"
)

// pollInterval is how often readiness is checked; each check is a ceph CLI
// process (~0.3 s of Python start-up), so checking more often only steals
// CPU from the daemons.
const pollInterval = 250 * time.Millisecond

// daemon is one Ceph daemon this cluster started.
type daemon struct {
	typ, id string
	proc    *framework.Process
}

func (d *daemon) name() string { return d.typ + "." + d.id }

// launch starts ceph-<typ> -i id in the foreground: Ceph logs to
// log/<typ>.<id>.log (appended to across restarts), and what the daemon
// prints itself goes to log/<typ>.<id>.<start>.out.
func (c *Cluster) launch(typ, id string) (*daemon, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.generation++
	d := &daemon{typ: typ, id: id}
	p, err := framework.Launch(framework.ProcessSpec{
		Name:    "ceph-" + d.name(),
		Path:    "ceph-" + typ,
		Args:    []string{"-f", "-c", c.conf, "-i", id},
		Dir:     c.Dir,
		LogFile: filepath.Join(c.Dir, "log", fmt.Sprintf("%s.%d.out", d.name(), c.generation)),
	})
	if err != nil {
		return nil, err
	}
	d.proc = p
	c.daemons = append(c.daemons, d)
	return d, nil
}

// PIDs maps each running daemon ("mon.a", "mgr.x", "osd.0", "mds.a") to
// its process ID.
func (c *Cluster) PIDs() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := make(map[string]int, len(c.daemons))
	for _, d := range c.daemons {
		m[d.name()] = d.proc.PID()
	}
	return m
}

// Stop stops every daemon, each by its PID: SIGTERM, then SIGKILL after
// Options.StopGrace. The mgr goes first and its CephFS sessions are
// evicted: it does not close them when it exits, and a restarted MDS would
// wait in up:reconnect for clients that never come back. Then the MDS,
// while the OSD can still take its journal, then the OSD, the mon last.
// The directory stays: Restart brings the same cluster back. It reports
// daemons that had died before it was called.
func (c *Cluster) Stop() error { return c.stop(c.opts.StopGrace) }

// closeGrace is the SIGTERM-to-SIGKILL delay when the cluster is being
// thrown away: a graceful MDS stop (5-7 s) buys nothing then.
const closeGrace = time.Second

func (c *Cluster) stop(grace time.Duration) error {
	c.mu.Lock()
	daemons := c.daemons
	c.daemons = nil
	c.mu.Unlock()
	var errs []error
	for _, d := range daemons {
		select {
		case <-d.proc.Exited():
			errs = append(errs, fmt.Errorf("%s (pid %d) died before Stop: %v; last lines of its log:\n%s",
				d.name(), d.proc.PID(), d.proc.ExitErr(), c.tailLog(d.name(), 20)))
		default:
		}
	}
	byType := func(types ...string) []*daemon {
		var out []*daemon
		for _, d := range daemons {
			for _, t := range types {
				if d.typ == t {
					out = append(out, d)
				}
			}
		}
		return out
	}
	graceful := grace > closeGrace
	groups := [][]*daemon{byType("mds"), byType("mgr", "osd"), byType("mon")}
	if graceful {
		groups = [][]*daemon{byType("mgr"), byType("mds"), byType("osd"), byType("mon")}
	}
	for i, group := range groups {
		if graceful && i == 1 && len(byType("mgr")) > 0 {
			c.evictMgrSessions()
		}
		var (
			wg sync.WaitGroup
			mu sync.Mutex
		)
		for _, d := range group {
			wg.Go(func() {
				t := time.Now()
				err := d.proc.Stop(grace)
				mu.Lock()
				defer mu.Unlock()
				errs = append(errs, err)
				c.logf("%s (pid %d) stopped in %.1fs", d.name(), d.proc.PID(), time.Since(t).Seconds())
			})
		}
		wg.Wait()
	}
	return errors.Join(errs...)
}

// Restart stops the daemons if they run and starts them again on the same
// directories, returning once the cluster is ready again. The mon keeps its
// ports (if another process took one meanwhile, Restart fails with the
// mon's bind error); the other daemons may bind new ones, as after any
// restart. Clients that stay up reconnect (a ceph-fuse mount kept through
// a Restart writes afterwards: TestRestart).
func (c *Cluster) Restart(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultStartTimeout)
		defer cancel()
	}
	if err := c.Stop(); err != nil {
		return fmt.Errorf("cephbed: restart: %w", err)
	}
	p := &phases{c: c, t0: time.Now()}
	for _, d := range []struct{ typ, id string }{{"mon", monID}, {"mgr", mgrID}, {"osd", osdID}, {"mds", mdsID}} {
		if _, err := c.launch(d.typ, d.id); err != nil {
			return fmt.Errorf("cephbed: restart: %w", err)
		}
	}
	p.done("daemons started", p.t0)
	if err := c.waitReady(ctx, p); err != nil {
		return fmt.Errorf("cephbed: restart: %w", err)
	}
	c.logf("restarted in %.1fs (%s); %s", time.Since(p.t0).Seconds(), strings.Join(p.marks, ", "), c.memory())
	return nil
}

// waitReady waits for what tests rely on, in the order it happens: the
// OSD up, the MDS active, every PG active, and the mgr's volumes module
// answering (`ceph fs subvolume ...` goes to the mgr).
func (c *Cluster) waitReady(ctx context.Context, p *phases) error {
	c.mu.Lock()
	all := append([]*daemon(nil), c.daemons...)
	c.mu.Unlock()

	t := time.Now()
	if err := c.wait(ctx, "osd up", all, func(ctx context.Context) (bool, error) {
		var st struct {
			NumUpOSDs int `json:"num_up_osds"`
		}
		if err := c.CephJSON(ctx, &st, "osd", "stat"); err != nil {
			return false, nil
		}
		return st.NumUpOSDs == 1, nil
	}); err != nil {
		return err
	}
	p.done("osd up", t)

	t = time.Now()
	if err := c.wait(ctx, "mds active", all, c.mdsActive); err != nil {
		return err
	}
	p.done("mds active", t)

	t = time.Now()
	if err := c.wait(ctx, "pgs active and volumes module ready", all, func(ctx context.Context) (bool, error) {
		var st struct {
			Summary struct {
				NumPGs  int `json:"num_pgs"`
				ByState []struct {
					Name string `json:"name"`
					Num  int    `json:"num"`
				} `json:"num_pg_by_state"`
			} `json:"pg_summary"`
		}
		if err := c.CephJSON(ctx, &st, "pg", "stat"); err != nil {
			return false, nil
		}
		active := 0
		for _, s := range st.Summary.ByState {
			if strings.Contains(s.Name, "active") && !strings.Contains(s.Name, "peering") {
				active += s.Num
			}
		}
		if st.Summary.NumPGs == 0 || active != st.Summary.NumPGs {
			return false, nil
		}
		_, err := c.Ceph(ctx, "fs", "subvolume", "ls", FSName)
		return err == nil, nil
	}); err != nil {
		return err
	}
	p.done("pgs active, mgr ready", t)
	return nil
}

// mdsActive reports whether rank 0 of FSName is up:active.
func (c *Cluster) mdsActive(ctx context.Context) (bool, error) {
	var fs struct {
		MDSMap struct {
			Info map[string]struct {
				Name  string `json:"name"`
				Rank  int    `json:"rank"`
				State string `json:"state"`
			} `json:"info"`
		} `json:"mdsmap"`
	}
	if err := c.CephJSON(ctx, &fs, "fs", "get", FSName); err != nil {
		return false, nil
	}
	for _, i := range fs.MDSMap.Info {
		if i.Rank == 0 && i.State == "up:active" {
			return true, nil
		}
	}
	return false, nil
}

// wait polls cond until it is true. It gives up at once when one of the
// watched daemons exits, and quotes that daemon's log, which holds the
// reason.
func (c *Cluster) wait(ctx context.Context, what string, watch []*daemon, cond func(context.Context) (bool, error)) error {
	for {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		ok, err := cond(cctx)
		cancel()
		if err != nil {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		if ok {
			return nil
		}
		for _, d := range watch {
			select {
			case <-d.proc.Exited():
				return fmt.Errorf("%s (pid %d) exited (%v) while waiting for %s; last lines of its log:\n%s\n%s",
					d.name(), d.proc.PID(), d.proc.ExitErr(), what, c.tailLog(d.name(), 30), d.proc.Tail(10))
			default:
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-time.After(pollInterval):
		}
	}
}

// evictMgrSessions evicts the CephFS sessions the stopped mgr's volumes
// module left, best effort: at worst the next MDS start waits for them.
func (c *Cluster) evictMgrSessions() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var sessions []struct {
		ID int64 `json:"id"`
	}
	filter := "client_metadata.entity_id=" + mgrID
	if err := c.CephJSON(ctx, &sessions, "tell", "mds."+FSName+":0", "client", "ls", filter); err != nil {
		c.logf("listing the mgr's CephFS sessions: %v", err)
		return
	}
	if len(sessions) == 0 {
		return
	}
	if err := c.Evict(ctx, filter); err != nil {
		c.logf("evicting the mgr's CephFS sessions: %v", err)
		return
	}
	c.logf("evicted the stopped mgr's %d CephFS sessions", len(sessions))
}

// stopDaemon stops one daemon and forgets it.
func (c *Cluster) stopDaemon(d *daemon) {
	_ = d.proc.Stop(c.opts.StopGrace)
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, x := range c.daemons {
		if x == d {
			c.daemons = append(c.daemons[:i], c.daemons[i+1:]...)
			break
		}
	}
}

// tailLog returns the last n lines of Ceph's own log of a daemon.
func (c *Cluster) tailLog(name string, n int) string {
	b, err := os.ReadFile(filepath.Join(c.Dir, "log", name+".log"))
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// memory describes the daemons' resident set sizes, the other cost every
// test package pays for a bed.
func (c *Cluster) memory() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var parts []string
	var total int64
	for _, d := range c.daemons {
		rss, err := d.proc.RSS()
		if err != nil {
			parts = append(parts, d.name()+" ?")
			continue
		}
		total += rss
		parts = append(parts, fmt.Sprintf("%s %d MB", d.name(), rss>>20))
	}
	return fmt.Sprintf("RSS %s (%d MB in all)", strings.Join(parts, ", "), total>>20)
}

func listening(port int) bool {
	conn, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second)
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

// removeStaleDirs deletes bed directories whose test binary is gone: one
// that dies cannot clean up (the kernel kills its daemons through
// Pdeathsig, but the files, and a ceph-fuse mount, stay).
func removeStaleDirs(tmp string) {
	dirs, _ := filepath.Glob(filepath.Join(tmp, dirPrefix+"*"))
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, ownerFile))
		if err != nil {
			continue // not ours, still being set up, or kept logs
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); !errors.Is(err, os.ErrNotExist) {
			continue
		}
		if unmountAll(d) == nil {
			_ = os.RemoveAll(d)
		}
	}
}
