package mysql

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestReplicatedStatefulSet runs the StatefulSet's life with the shipped
// scripts: bootstrap, clones under load, a crash failover, the ex-primary's
// rejoin, a planned switchover and an interrupted scale-up clone. Each step
// builds on the previous one, so the first failure stops the test.
//
// Figures are logged with the prefix FIGURE:
//
//	go test -v -count=1 -run TestReplicatedStatefulSet ./test/mysql/ | grep FIGURE
func TestReplicatedStatefulSet(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: needs mariadbd, mariadb-backup and socat processes")
	}
	testStart := time.Now()
	c := newCluster(t, 10, "mysql-0", "mysql-1", "mysql-2")
	p0, p1, p2 := c.pod("mysql-0"), c.pod("mysql-1"), c.pod("mysql-2")
	step := func(name string, f func(t *testing.T)) {
		if !t.Run(name, f) {
			t.FailNow()
		}
	}
	// Subtests report through the parent's cluster helpers, so point them
	// at the running subtest.
	sub := func(t *testing.T) { c.t = t }
	var w1, w2, w3, w4 *writer

	step("bootstrap primary", func(t *testing.T) {
		sub(t)
		start := time.Now()
		ic, cl := c.initPod(p0)
		if ic.err != nil || cl.err != nil {
			t.Fatalf("init containers:\n%s\n%s", ic, cl)
		}
		if role, _ := os.ReadFile(filepath.Join(p0.dir, "conf.d", "role")); strings.TrimSpace(string(role)) != "bootstrap" {
			t.Fatalf("role %q; want bootstrap", role)
		}
		c.startServer(p0)
		ready := c.waitReady(p0, time.Minute)
		t.Logf("FIGURE bootstrap mysql-0: init containers %v (clone.sh %v), Ready %v after start",
			(ic.took + cl.took).Round(time.Millisecond), cl.took.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
		_ = ready
		if got := c.mustSQL(p0, "SELECT @@GLOBAL.read_only"); got != "0" {
			t.Errorf("bootstrapped primary read_only=%s", got)
		}
		if got := c.mustSQL(p0, "SELECT @@GLOBAL.rpl_semi_sync_master_enabled"); got != "1" {
			t.Errorf("primary without semi-sync: %s", got)
		}
		// Only our accounts exist, none of them without a password.
		users := c.mustSQL(p0, "SELECT CONCAT(User,'@',Host) FROM mysql.user WHERE User<>'mariadb.sys' ORDER BY 1")
		if want := "app@%\nbackup@localhost\nhealthcheck@localhost\nrepl@%\nroot@localhost"; users != want {
			t.Errorf("accounts:\n%s\nwant:\n%s", users, want)
		}
		if empty := c.mustSQL(p0, "SELECT COUNT(*) FROM mysql.user WHERE authentication_string='' AND User<>'mariadb.sys' AND plugin IN ('','mysql_native_password')"); empty != "0" {
			t.Errorf("%s accounts without a password", empty)
		}
	})

	step("clone mysql-1 from the primary", func(t *testing.T) {
		sub(t)
		start := time.Now()
		cl := c.startPod(p1)
		c.waitReady(p1, time.Minute)
		t.Logf("FIGURE clone mysql-1 from primary mysql-0: clone.sh %v, datadir %.1f MB, Ready %v after start",
			cl.took.Round(time.Millisecond), float64(dirSize(p1.datadir))/1e6, time.Since(start).Round(time.Millisecond))
		if got := c.mustSQL(p1, "SELECT @@GLOBAL.read_only"); got != "1" {
			t.Errorf("replica read_only=%s", got)
		}
		// The operator publishes the primary once a replica can acknowledge.
		if r := c.run(nil, time.Minute, nil, "failover.sh", "--init"); r.err != nil {
			t.Fatalf("failover.sh --init: %s", r)
		}
		if c.labelled() != "mysql-0" {
			t.Fatalf("label on %q after --init", c.labelled())
		}
		if r := c.run(nil, time.Minute, nil, "failover.sh", "--init"); r.err == nil {
			t.Error("a second --init succeeded")
		}
		c.mustSQL(p0, "CREATE TABLE app.t (id BIGINT PRIMARY KEY, writer VARCHAR(16) NOT NULL, v CHAR(64) NOT NULL)")
		w1 = c.startWriter("w1", 1)
		w1.waitAcks(100, time.Minute)
	})

	step("clone mysql-2 from a replica while writes run", func(t *testing.T) {
		sub(t)
		before := w1.ackCount()
		start := time.Now()
		cl := c.startPod(p2)
		c.waitReady(p2, time.Minute)
		t.Logf("FIGURE clone mysql-2 from replica mysql-1 under load: clone.sh %v, datadir %.1f MB, Ready %v after start, %d rows acknowledged meanwhile",
			cl.took.Round(time.Millisecond), float64(dirSize(p2.datadir))/1e6, time.Since(start).Round(time.Millisecond), w1.ackCount()-before)
		if !strings.Contains(cl.stderr, "cloning from mysql-1") {
			t.Errorf("mysql-2 did not clone from mysql-1:\n%s", cl.stderr)
		}
		if w1.ackCount() == before {
			t.Error("no row was acknowledged while mysql-2 cloned")
		}
	})

	step("replication catches up", func(t *testing.T) {
		sub(t)
		w1.waitAcks(50, time.Minute)
		w1.halt()
		s := c.waitConverged(p0, []*pod{p1, p2}, time.Minute)
		t.Logf("FIGURE converged: 3 pods at GTID %s, %s rows, checksum %s", s.gtid, s.rows, s.checksum)
		w1.checkNoLoss(p1)
		w1.checkNoLoss(p2)
	})

	step("readiness follows replication health", func(t *testing.T) {
		sub(t)
		c.mustSQL(p2, "STOP SLAVE")
		r := c.run(p2, 10*time.Second, nil, "probe-ready.sh")
		if r.err == nil {
			t.Error("a replica with stopped replication is Ready")
		}
		t.Logf("stopped replica: %s", lastLine(r.stderr))
		c.mustSQL(p2, "START SLAVE")
		c.waitReady(p2, 30*time.Second)
		if r := c.run(p0, 10*time.Second, nil, "probe-ready.sh"); r.err != nil {
			t.Errorf("primary not Ready: %s", r)
		}

		// The agent's probe sees its clone server go; a restarted agent
		// leaves running replication alone.
		p2.agent.kill()
		if r := c.run(p2, 10*time.Second, nil, "probe-agent.sh"); r.err == nil {
			t.Error("probe-agent.sh passes with the agent dead")
		}
		before := c.slaveField(p2, "Master_Host")
		c.startAgent(p2)
		time.Sleep(1500 * time.Millisecond) // one reconcile round at least
		c.waitReady(p2, 30*time.Second)
		if after := c.slaveField(p2, "Master_Host"); after != before {
			t.Errorf("agent restart changed the source from %s to %s", before, after)
		}
	})

	var newPrimary *pod
	step("kill -9 the primary, failover.sh", func(t *testing.T) {
		sub(t)
		w2 = c.startWriter("w2", 1_000_000)
		w2.waitAcks(200, time.Minute)
		// The zero-loss claim rests on semi-sync being on: both replicas
		// connected and no commit that fell back to asynchronous.
		semi := c.status(p0, "Rpl_semi_sync_master_status", "Rpl_semi_sync_master_clients", "Rpl_semi_sync_master_yes_tx", "Rpl_semi_sync_master_no_tx")
		t.Logf("FIGURE semi-sync on mysql-0 before the kill: %v", semi)
		if semi["Rpl_semi_sync_master_status"] != "ON" || semi["Rpl_semi_sync_master_clients"] != "2" || semi["Rpl_semi_sync_master_no_tx"] != "0" {
			t.Fatalf("semi-sync not in force: %v", semi)
		}
		killed := time.Now()
		c.crash(p0)
		ackedAtCrash := w2.ackCount()
		r := c.run(nil, 3*time.Minute, nil, "failover.sh")
		if r.err != nil {
			t.Fatalf("failover.sh: %s", r)
		}
		newName := c.labelled()
		if rec, _ := c.record(); rec != newName || (newName != "mysql-1" && newName != "mysql-2") {
			t.Fatalf("after failover: record %q, label %q", rec, newName)
		}
		newPrimary = c.pod(newName)
		w2.waitAcks(100, time.Minute)
		resumed := time.Now()
		w2.halt()
		t.Logf("FIGURE crash failover: failover.sh %v, promoted %s, write outage %v (kill to first acknowledged write), %d rows acknowledged before the kill",
			r.took.Round(time.Millisecond), newName, w2.maxGap(killed, resumed).Round(time.Millisecond), ackedAtCrash)
		for _, l := range strings.Split(strings.TrimSpace(r.stderr), "\n") {
			t.Logf("  failover.sh: %s", l)
		}
		w2.checkNoLoss(newPrimary)
		w1.checkNoLoss(newPrimary)
	})

	step("the old primary rejoins", func(t *testing.T) {
		sub(t)
		start := time.Now()
		ic, cl := c.initPod(p0)
		if ic.err != nil || cl.err != nil {
			t.Fatalf("init containers:\n%s\n%s", ic, cl)
		}
		if role, _ := os.ReadFile(filepath.Join(p0.dir, "conf.d", "role")); strings.TrimSpace(string(role)) != "replica" {
			t.Fatalf("restarted ex-primary got role %q; want replica", role)
		}
		c.startServer(p0)
		c.waitReady(p0, time.Minute)
		others := []*pod{p0, p1, p2}
		var replicas []*pod
		for _, p := range others {
			if p != newPrimary {
				replicas = append(replicas, p)
			}
		}
		s := c.waitConverged(newPrimary, replicas, time.Minute)
		errLog, _ := os.ReadFile(filepath.Join(p0.dir, "log", "error.log"))
		truncated := "no un-acknowledged tail"
		for _, l := range strings.Split(string(errLog), "\n") {
			if strings.Contains(l, "truncated binlog") {
				truncated = l[strings.Index(l, "truncated"):]
			}
		}
		t.Logf("FIGURE rejoin: mysql-0 Ready as a replica %v after restart (no re-clone); %s; all 3 at %s, %s rows", time.Since(start).Round(time.Millisecond), truncated, s.gtid, s.rows)
		if got := c.mustSQL(p0, "SELECT @@GLOBAL.read_only"); got != "1" {
			t.Errorf("ex-primary read_only=%s", got)
		}
		w2.checkNoLoss(p0)
	})

	step("planned switchover", func(t *testing.T) {
		sub(t)
		old := newPrimary
		w3 = c.startWriter("w3", 2_000_000)
		w3.waitAcks(100, time.Minute)
		start := time.Now()
		// To a named replica: the other path (the most advanced) ran in the failover.
		var to string
		for _, p := range []*pod{p2, p1, p0} {
			if p != old {
				to = p.name
				break
			}
		}
		r := c.run(nil, 3*time.Minute, nil, "switchover.sh", "--to", to)
		if r.err != nil {
			t.Fatalf("switchover.sh: %s", r)
		}
		w3.waitAcks(100, time.Minute)
		end := time.Now()
		w3.halt()
		newName := c.labelled()
		if newName != to {
			t.Fatalf("label on %q after switchover from %s", newName, old.name)
		}
		newPrimary = c.pod(newName)
		t.Logf("FIGURE switchover %s -> %s: switchover.sh %v, write outage %v", old.name, newName, r.took.Round(time.Millisecond), w3.maxGap(start, end).Round(time.Millisecond))
		c.waitReady(old, time.Minute)
		if got := c.mustSQL(old, "SELECT @@GLOBAL.read_only"); got != "1" {
			t.Errorf("old primary read_only=%s", got)
		}
		var replicas []*pod
		for _, p := range []*pod{p0, p1, p2} {
			if p != newPrimary {
				replicas = append(replicas, p)
			}
		}
		s := c.waitConverged(newPrimary, replicas, time.Minute)
		t.Logf("FIGURE after switchover: all 3 at %s, %s rows, checksum %s", s.gtid, s.rows, s.checksum)
		for _, w := range []*writer{w1, w2, w3} {
			w.checkNoLoss(old)
		}
	})

	step("semi-sync self-fencing", func(t *testing.T) {
		sub(t)
		// With no replica receiving, a commit on the primary must stall
		// (not be acknowledged, not be visible), and go through once a
		// replica is back.
		var replicas []*pod
		for _, p := range []*pod{p0, p1, p2} {
			if p != newPrimary {
				replicas = append(replicas, p)
				c.mustSQL(p, "STOP SLAVE IO_THREAD")
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "mariadb", "--no-defaults", "-h", newPrimary.ip, "-u", "app", "app", "-e",
			"INSERT INTO t (id, writer, v) VALUES (9000000, 'fence', 'x')")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "MYSQL_PWD=" + c.secrets["app-password"]}
		err := cmd.Run()
		if ctx.Err() == nil {
			t.Fatalf("the INSERT returned (%v) although no replica could acknowledge it", err)
		}
		if n := c.mustSQL(newPrimary, "SELECT COUNT(*) FROM app.t WHERE id=9000000"); n != "0" {
			t.Errorf("the unacknowledged row is visible on the primary (%s)", n)
		}
		for _, p := range replicas {
			c.mustSQL(p, "START SLAVE IO_THREAD")
		}
		deadline := time.Now().Add(30 * time.Second)
		for c.mustSQL(newPrimary, "SELECT COUNT(*) FROM app.t WHERE id=9000000") != "1" {
			if time.Now().After(deadline) {
				t.Fatal("the stalled commit did not complete after the replicas came back")
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("FIGURE self-fencing: with the replicas' IO threads stopped an INSERT stalled for 3 s unacknowledged and invisible, and committed once they reconnected")
	})

	step("interrupted clone is redone", func(t *testing.T) {
		sub(t)
		c.members = append(c.members, "mysql-3")
		p3 := c.pod("mysql-3")
		marker := filepath.Join(p3.datadir, ".k8s-initialized")
		w4 = c.startWriter("w4", 3_000_000)
		w4.waitAcks(50, time.Minute)
		// Its donors are mysql-2 (previous ordinal), then the recorded
		// primary; the proxy on 127.0.0.99 stands in for both.
		override := fmt.Sprintf("TEST_PEER_OVERRIDE=mysql-2=127.0.0.99 %s=127.0.0.99", newPrimary.name)
		upstream := c.ip("mysql-2") + ":3307"

		// 1. The stream is cut after 1 MB: clone.sh fails, nothing is marked.
		px := startProxy(t, "127.0.0.99:3307", upstream, "cut", 1<<20)
		ic, cl := c.initPod(p3, override)
		px.close()
		if ic.err != nil || cl.err == nil {
			t.Fatalf("clone through a cut stream: init-config %v, clone.sh %v:\n%s", ic.err, cl.err, cl)
		}
		if exists(marker) || exists(filepath.Join(p3.datadir, "mysql")) || exists(filepath.Join(p3.datadir, ".clone")) {
			t.Fatalf("half copy left behind: %v", listDir(t, p3.datadir))
		}
		t.Logf("FIGURE cut clone: every donor stream cut after 1 MB (%d bytes passed in all), clone.sh failed after %v: %s", px.bytes(), cl.took.Round(time.Millisecond), lastLine(cl.stderr))

		// 2. The pod dies mid-stream: a half copy stays in the staging dir.
		px = startProxy(t, "127.0.0.99:3307", upstream, "stall", 2<<20)
		run := c.start(p3, "clone-killed", []string{override}, "bash", filepath.Join(p3.dir, "configmap", "clone.sh"))
		select {
		case <-px.reached:
		case <-time.After(time.Minute):
			t.Fatal("the stalled clone never received 2 MB")
		}
		time.Sleep(300 * time.Millisecond)
		run.kill()
		px.close()
		left := listDir(t, p3.datadir)
		if exists(marker) || !exists(filepath.Join(p3.datadir, ".clone")) {
			t.Fatalf("after killing clone.sh mid-stream: %v", left)
		}
		t.Logf("FIGURE killed clone: left %v with %.1f MB in .clone, no marker", left, float64(dirSize(filepath.Join(p3.datadir, ".clone")))/1e6)

		// 3. The next start redoes the clone, this time from the primary
		// (under load), and never uses the half copy.
		px = startProxy(t, "127.0.0.99:3307", c.ip(newPrimary.name)+":3307", "pass", 0)
		start := time.Now()
		ic, cl = c.initPod(p3, override)
		px.close()
		if ic.err != nil || cl.err != nil {
			t.Fatalf("clone after interruption:\n%s\n%s", ic, cl)
		}
		if exists(filepath.Join(p3.datadir, ".clone")) || exists(filepath.Join(p3.datadir, ".k8s-in-progress")) || !exists(marker) {
			t.Fatalf("after the redone clone: %v", listDir(t, p3.datadir))
		}
		c.startServer(p3)
		c.waitReady(p3, time.Minute)
		t.Logf("FIGURE redone clone of mysql-3 from primary %s under load: %.1f MB streamed, clone.sh %v, Ready %v after start",
			newPrimary.name, float64(px.bytes())/1e6, cl.took.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
		w4.waitAcks(50, time.Minute)
		w4.halt()
		var replicas []*pod
		for _, p := range []*pod{p0, p1, p2, p3} {
			if p != newPrimary {
				replicas = append(replicas, p)
			}
		}
		s := c.waitConverged(newPrimary, replicas, time.Minute)
		t.Logf("FIGURE 4 pods converged at %s, %s rows, checksum %s", s.gtid, s.rows, s.checksum)
		for _, w := range []*writer{w1, w2, w3, w4} {
			w.checkNoLoss(p3)
		}

		// Negative control: the checker does see a lost acknowledged row.
		c.mustSQL(p3, "SET SESSION sql_log_bin=0; DELETE FROM app.t WHERE writer='w4' ORDER BY id LIMIT 1")
		r, err := w4.loss(p3)
		if err != nil {
			t.Fatal(err)
		}
		if len(r.missing) != 1 {
			t.Errorf("the loss checker found %d missing rows after deleting one", len(r.missing))
		}
	})

	step("switchover aborts when a replica does not answer", func(t *testing.T) {
		sub(t)
		// A replica that does not answer may hold the only copy of an
		// acknowledged commit: without --force nothing is promoted, and a
		// planned switchover gives the primary its role back.
		p3 := c.pod("mysql-3")
		c.crash(p3)
		w5 := c.startWriter("w5", 4_000_000)
		w5.waitAcks(20, time.Minute)
		r := c.run(nil, 3*time.Minute, nil, "switchover.sh")
		if r.err == nil {
			t.Fatalf("switchover.sh succeeded with mysql-3 down:\n%s", r)
		}
		if !strings.Contains(r.stderr, "mysql-3 does not answer") {
			t.Errorf("switchover.sh does not name the cause:\n%s", r.stderr)
		}
		if got, _ := c.record(); got != newPrimary.name || c.labelled() != newPrimary.name {
			t.Fatalf("after the aborted switchover: record %q, label %q; want %s", got, c.labelled(), newPrimary.name)
		}
		if ro := c.mustSQL(newPrimary, "SELECT @@GLOBAL.read_only"); ro != "0" {
			t.Errorf("primary left read-only (%s)", ro)
		}
		w5.waitAcks(20, time.Minute)
		w5.halt()
		var replicas []*pod
		for _, p := range []*pod{p0, p1, p2} {
			if p != newPrimary {
				replicas = append(replicas, p)
				if io := c.slaveField(p, "Slave_IO_Running"); io != "Yes" {
					t.Errorf("%s: IO thread %q after the rollback", p.name, io)
				}
			}
		}
		c.waitConverged(newPrimary, replicas, time.Minute)
		w5.checkNoLoss(replicas[0])
		t.Logf("FIGURE aborted switchover: %s (%v)", lastLine(r.stderr), r.took.Round(time.Millisecond))
	})

	t.Logf("FIGURE TestReplicatedStatefulSet took %v", time.Since(testStart).Round(time.Millisecond))
}
