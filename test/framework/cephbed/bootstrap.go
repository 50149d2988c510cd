package cephbed

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nfs-provisioner/nfs-provisioner/test/framework"
)

// Pools of FSName, named as `ceph fs volume create` names them.
const (
	metaPool = "cephfs." + FSName + ".meta"
	dataPool = "cephfs." + FSName + ".data"
)

// monRetries is how often the mon is made anew on other ports when a port
// chosen as free was taken before it bound it.
const monRetries = 3

// phases times the steps of a start-up for the progress lines.
type phases struct {
	c     *Cluster
	t0    time.Time
	marks []string
}

func (p *phases) done(what string, since time.Time) {
	d := time.Since(since)
	p.marks = append(p.marks, fmt.Sprintf("%s %.1fs", what, d.Seconds()))
	p.c.logf("%s in %.1fs (%.1fs since start)", what, d.Seconds(), time.Since(p.t0).Seconds())
}

// bootstrap makes the cluster from nothing: as ceph's own
// qa/standalone/ceph-helpers.sh and vstart.sh do, but with the OSD's
// mkfs, the mgr and the file system's set-up run side by side.
func (c *Cluster) bootstrap(ctx context.Context) error {
	p := &phases{c: c, t0: time.Now()}
	c.logf("bootstrapping a single-node Ceph in %s", c.Dir)

	t := time.Now()
	keys, err := c.prepare()
	if err != nil {
		return err
	}
	var mon *daemon
	for attempt := 1; ; attempt++ {
		if mon, err = c.makeMon(ctx, keys); err == nil {
			break
		}
		if !errors.Is(err, errPortTaken) || attempt == monRetries {
			return err
		}
		c.logf("mon: a port was taken (%v); retrying on new ports", err)
	}
	if err := c.wait(ctx, "mon quorum", []*daemon{mon}, func(ctx context.Context) (bool, error) {
		_, err := c.Ceph(ctx, "mon", "stat")
		return err == nil, nil
	}); err != nil {
		return err
	}
	p.done("mon up", t)

	// The OSD, the mgr and the file system need only the mon.
	t = time.Now()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	run := func(what string, f func() error) {
		wg.Go(func() {
			t := time.Now()
			err := f()
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", what, err))
				return
			}
			p.done(what, t)
		})
	}
	run("mgr started", func() error { _, err := c.launch("mgr", mgrID); return err })
	run("osd created", func() error { return c.makeOSD(ctx) })
	run("file system created", func() error { return c.makeFS(ctx) })
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	p.done("daemons started", t)

	if err := c.waitReady(ctx, p); err != nil {
		return err
	}
	c.StartupTime = time.Since(p.t0)
	c.logf("ready in %.1fs (%s); %s", c.StartupTime.Seconds(), strings.Join(p.marks, ", "), c.memory())
	return nil
}

// prepare writes ceph.conf and every keyring, and returns the entities the
// mon's auth database starts with. All keys are made here, so the daemons
// need no `ceph auth` round trip before they can start.
func (c *Cluster) prepare() ([]entity, error) {
	for _, d := range []string{"log", "run", "crash", "keys", "mon", "mgr/" + mgrID, "osd/" + osdID, "mds/" + mdsID, "fuse"} {
		if err := os.MkdirAll(filepath.Join(c.Dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	fsid, err := newUUID()
	if err != nil {
		return nil, err
	}
	c.FSID = fsid
	c.conf = filepath.Join(c.Dir, "ceph.conf")
	c.adminKeyring = filepath.Join(c.Dir, "ceph.client.admin.keyring")

	ents := []entity{
		{name: "mon.", caps: map[string]string{"mon": "allow *"}},
		{name: "client.admin", caps: map[string]string{"mon": "allow *", "osd": "allow *", "mds": "allow *", "mgr": "allow *"}},
		{name: "mgr." + mgrID, caps: map[string]string{"mon": "allow profile mgr", "osd": "allow *", "mds": "allow *"}},
		{name: "osd." + osdID, caps: map[string]string{"mon": "allow profile osd", "mgr": "allow profile osd", "osd": "allow *"}},
		{name: "mds." + mdsID, caps: map[string]string{"mon": "allow profile mds", "mgr": "allow profile mds", "osd": "allow rwx", "mds": "allow"}},
	}
	for i := range ents {
		if ents[i].key, err = newCephxKey(); err != nil {
			return nil, err
		}
	}
	c.adminKey = ents[1].key
	if err := errors.Join(
		writeKeyring(c.adminKeyring, ents[1]),
		writeKeyring(filepath.Join(c.Dir, "mgr", mgrID, "keyring"), ents[2]),
		writeKeyring(filepath.Join(c.Dir, "osd", osdID, "keyring"), ents[3]),
		writeKeyring(filepath.Join(c.Dir, "mds", mdsID, "keyring"), ents[4]),
	); err != nil {
		return nil, err
	}
	return ents, nil
}

// errPortTaken marks a mon that could not bind a port chosen as free.
var errPortTaken = errors.New("port already in use")

// makeMon writes ceph.conf for two fresh ports, makes the mon's store and
// starts it.
func (c *Cluster) makeMon(ctx context.Context, ents []entity) (*daemon, error) {
	ports, err := framework.FreePorts(2)
	if err != nil {
		return nil, err
	}
	c.MonHost = fmt.Sprintf("[v2:127.0.0.1:%d,v1:127.0.0.1:%d]", ports[0], ports[1])
	if err := writeConf(c.conf, confParams{Dir: c.Dir, FSID: c.FSID, MonV2Port: ports[0], MonV1Port: ports[1], BlockSize: c.opts.BlockSize,
		DisabledMgrModules: disabledMgrModules()}); err != nil {
		return nil, err
	}
	monDir := filepath.Join(c.Dir, "mon", monID)
	if err := os.RemoveAll(monDir); err != nil {
		return nil, err
	}
	monmap := filepath.Join(c.Dir, "monmap")
	// ceph-mon --mkfs imports every entity of this keyring into the auth
	// database: the daemons' keys and caps are in place from the start.
	bootKeyring := filepath.Join(c.Dir, "mon-bootstrap.keyring")
	if err := writeKeyring(bootKeyring, ents...); err != nil {
		return nil, err
	}
	if err := runTool(ctx, "monmaptool", "--create", "--clobber", "--fsid", c.FSID,
		"--addv", monID, c.MonHost, monmap); err != nil {
		return nil, err
	}
	if err := runTool(ctx, "ceph-mon", "-c", c.conf, "--mkfs", "-i", monID,
		"--monmap", monmap, "--keyring", bootKeyring); err != nil {
		return nil, err
	}
	mon, err := c.launch("mon", monID)
	if err != nil {
		return nil, err
	}
	// A mon that cannot bind retries a few times and exits; one that
	// bound is listening within a second.
	if err := c.wait(ctx, "mon listening", []*daemon{mon}, func(context.Context) (bool, error) {
		return listening(ports[0]) && listening(ports[1]), nil
	}); err != nil {
		if strings.Contains(c.tailLog(mon.name(), 30), "Address already in use") {
			c.stopDaemon(mon)
			return nil, fmt.Errorf("%w: %w", errPortTaken, err)
		}
		return nil, err
	}
	return mon, nil
}

// makeOSD registers osd.0 with the mon, makes its BlueStore and starts it.
func (c *Cluster) makeOSD(ctx context.Context) error {
	uuid, err := newUUID()
	if err != nil {
		return err
	}
	// The key is in the auth database already (see makeMon).
	if _, err := c.Ceph(ctx, "osd", "new", uuid, osdID); err != nil {
		return err
	}
	if err := runTool(ctx, "ceph-osd", "-c", c.conf, "-i", osdID, "--mkfs", "--osd-uuid", uuid); err != nil {
		return err
	}
	_, err = c.launch("osd", osdID)
	return err
}

// makeFS creates the pools, the file system and the ganesha pool, all in
// one ceph CLI process (it reads commands from standard input), and starts
// the MDS, which becomes active once the OSD serves the metadata pool.
func (c *Cluster) makeFS(ctx context.Context) error {
	script := strings.Join([]string{
		"osd pool create " + metaPool,
		"osd pool create " + dataPool,
		// The mgr's `fs volume create` would do the same, but needs the
		// mgr to be up: this needs only the mon.
		"fs new " + FSName + " " + metaPool + " " + dataPool,
		"osd pool create " + GaneshaPool,
		"osd pool application enable " + GaneshaPool + " nfs",
	}, "\n") + "\n"
	if err := c.cephBatch(ctx, script); err != nil {
		return err
	}
	_, err := c.launch("mds", mdsID)
	return err
}

// cephBatch runs ceph with commands on standard input, one a line; it
// fails if any of them failed (the CLI goes on after an error and reports
// it on standard error as "Error ...").
func (c *Cluster) cephBatch(ctx context.Context, script string) error {
	cmd := exec.CommandContext(ctx, "ceph", "-c", c.conf, "--connect-timeout", "30")
	cmd.Stdin = strings.NewReader(script)
	out, err := cmd.CombinedOutput()
	if err == nil && strings.Contains(string(out), "Error ") {
		err = errors.New("a command failed")
	}
	if err != nil {
		return fmt.Errorf("ceph <<%q: %w: %s", script, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// mgrModules are the mgr modules the bed loads: Pacific's always-on
// modules (`ceph mgr dump`: always_on_modules), of which volumes serves
// `ceph fs subvolume` and status `ceph fs status`, and iostat.
var mgrModules = map[string]bool{
	"balancer": true, "crash": true, "devicehealth": true, "orchestrator": true, "pg_autoscaler": true,
	"progress": true, "rbd_support": true, "status": true, "telemetry": true, "volumes": true,
	"iostat": true,
}

// disabledMgrModules lists every other module installed: the list is made
// from what the package ships, so a module a newer ceph-mgr adds is not
// loaded either.
func disabledMgrModules() string {
	entries, _ := os.ReadDir("/usr/share/ceph/mgr")
	var off []string
	for _, e := range entries {
		if e.IsDir() && !mgrModules[e.Name()] && !strings.HasPrefix(e.Name(), "_") {
			off = append(off, e.Name())
		}
	}
	return strings.Join(off, ",")
}

func runTool(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func newUUID() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // RFC 4122 variant
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]), nil
}
