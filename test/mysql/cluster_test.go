package mysql

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
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
		// Alone, nothing could acknowledge a commit: it stays read-only
		// (Ready: its role is the record's) until a replica connects.
		if got := c.mustSQL(p0, "SELECT @@GLOBAL.read_only"); got != "1" {
			t.Errorf("lone bootstrapped primary read_only=%s; want 1", got)
		}
		// The record is published as soon as mysql-0 is up: no replica
		// clones before it exists (the bootstrap guard).
		if r := c.run(nil, time.Minute, nil, "failover.sh", "--init"); r.err != nil {
			t.Fatalf("failover.sh --init: %s", r)
		}
		if c.labelled() != "mysql-0" {
			t.Fatalf("label on %q after --init", c.labelled())
		}
		if rec, _ := c.record(); rec != "mysql-0" || c.epoch() != "0" {
			t.Fatalf("record %q at epoch %q after --init", rec, c.epoch())
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
		if r := c.run(nil, time.Minute, nil, "failover.sh", "--init"); r.err == nil {
			t.Error("a second --init succeeded")
		}
		// Now a replica acknowledges: the agent opens writes.
		opened := c.waitRO(p0, "0", 30*time.Second)
		t.Logf("FIGURE mysql-0 opened writes %v after mysql-1 was Ready", opened.Round(time.Millisecond))
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

	step("clone channel", func(t *testing.T) {
		sub(t)
		checkCloneChannel(t, c, p1)
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
		// With no replica receiving, a commit on the primary stalls; the
		// agent fences the primary and closes the session before the
		// bounded semi-sync timeout (30 s) could acknowledge it: the client
		// gets an error, never an OK. Once a replica is back, writes reopen.
		var replicas []*pod
		for _, p := range []*pod{p0, p1, p2} {
			if p != newPrimary {
				replicas = append(replicas, p)
				c.mustSQL(p, "STOP SLAVE IO_THREAD")
			}
		}
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "mariadb", "--no-defaults", "-h", newPrimary.ip, "-u", "app", "app", "-e",
			"INSERT INTO t (id, writer, v) VALUES (9000000, 'fence', 'x')")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "MYSQL_PWD=" + c.secrets["app-password"]}
		out, err := cmd.CombinedOutput()
		answered := time.Since(start)
		if err == nil {
			t.Fatalf("the INSERT was acknowledged after %v although no replica could have it", answered)
		}
		if ctx.Err() != nil {
			t.Fatalf("the INSERT hung for %v: nothing fenced the isolated primary", answered)
		}
		if answered >= 30*time.Second {
			t.Errorf("the client waited %v, beyond the 30 s semi-sync timeout", answered)
		}
		if ro := c.mustSQL(newPrimary, "SELECT @@GLOBAL.read_only"); ro != "1" {
			t.Errorf("isolated primary read_only=%s", ro)
		}
		if r := c.run(newPrimary, 10*time.Second, nil, "probe-ready.sh"); r.err != nil {
			t.Errorf("the fenced primary is still the record's primary but not Ready: %s", r)
		}
		for _, p := range replicas {
			c.mustSQL(p, "START SLAVE IO_THREAD")
		}
		reopened := c.waitRO(newPrimary, "0", 30*time.Second)
		t.Logf("FIGURE self-fencing: with no replica receiving, the INSERT got an error after %v (%s), never an OK; writes reopened %v after the replicas reconnected",
			answered.Round(time.Millisecond), lastLine(string(out)), reopened.Round(time.Millisecond))
		// The fenced commit was in the binlog: its outcome was unknown to
		// the client, and it reaches every pod.
		c.waitConverged(newPrimary, replicas, time.Minute)
	})

	step("partition and heal", func(t *testing.T) {
		sub(t)
		a := newPrimary
		var replicas []*pod
		for _, p := range []*pod{p0, p1, p2} {
			if p != a {
				replicas = append(replicas, p)
			}
		}
		epochBefore := c.epoch()
		w6 := c.startWriter("w6", 5_000_000)             // follows the label
		w6a := c.startWriterTo(a.name, "w6a", 6_000_000) // a client on a's side of the partition
		w6.waitAcks(100, time.Minute)
		w6a.waitAcks(50, time.Minute)

		// The partition: the replicas lose a (their IO threads stop), a's
		// view of the record freezes (its kubelet cannot reach the API
		// server), and neither the network nor kubectl exec reaches a.
		view := filepath.Join(a.dir, "topology")
		frozen := filepath.Join(a.dir, "topology.frozen")
		if err := os.MkdirAll(frozen, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"primary", "epoch", "owner"} {
			b, _ := os.ReadFile(filepath.Join(c.topology, k))
			mustWrite(t, filepath.Join(frozen, k), string(b), 0o644)
		}
		if err := os.Remove(view); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(frozen, view); err != nil {
			t.Fatal(err)
		}
		for _, p := range replicas {
			c.mustSQL(p, "STOP SLAVE IO_THREAD")
		}
		cut := time.Now()
		ackedBefore := w6a.ackCount()

		r := c.run(nil, 3*time.Minute, []string{"TEST_UNREACHABLE=" + a.name}, "failover.sh")
		if r.err != nil {
			t.Fatalf("failover.sh with %s partitioned: %s", a.name, r)
		}
		b := c.pod(c.labelled())
		if b == a {
			t.Fatalf("failover kept %s", a.name)
		}
		if c.epoch() == epochBefore {
			t.Errorf("the epoch did not move (%s)", c.epoch())
		}
		if !strings.Contains(r.stderr, "does not answer") {
			t.Errorf("failover.sh did not notice the partition:\n%s", r.stderr)
		}
		// a still believes it is primary (its view is frozen), but nothing
		// acknowledges its commits: it fences itself.
		c.waitRO(a, "1", 30*time.Second)
		fencedAfter := time.Since(cut)
		w6.waitAcks(50, time.Minute)
		duringPartition := w6a.ackCount() - ackedBefore
		t.Logf("FIGURE partition: failover.sh %v promoted %s at epoch %s; isolated %s fenced itself %v after the cut; its own clients got %d acknowledgements during the partition",
			r.took.Round(time.Millisecond), b.name, c.epoch(), a.name, fencedAfter.Round(time.Millisecond), duringPartition)
		if duringPartition != 0 {
			t.Errorf("%d commits were acknowledged by the partitioned old primary", duringPartition)
		}
		w6a.halt()

		// Heal: a sees the record again.
		if err := os.Remove(view); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(c.topology, view); err != nil {
			t.Fatal(err)
		}
		healed := time.Now()
		wasReady, diverged := false, false
		for time.Since(healed) < 8*time.Second {
			if ro := c.mustSQL(a, "SELECT @@GLOBAL.read_only"); ro != "1" {
				t.Fatalf("healed old primary read_only=%s", ro)
			}
			if c.run(a, 10*time.Second, nil, "probe-ready.sh").err == nil {
				wasReady = true
				break
			}
			if c.slaveField(a, "Last_IO_Errno") == "1236" {
				diverged = true
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		how := "rejoined by itself"
		if !wasReady {
			if r := c.run(a, 10*time.Second, nil, "probe-ready.sh"); r.err == nil {
				t.Fatal("inconsistent readiness")
			} else {
				t.Logf("healed old primary not Ready: %s", lastLine(r.stderr))
			}
			// Its binlog holds the commits it could not get acknowledged
			// (they committed locally once the fence closed their sessions):
			// it has diverged. The agent says so; the operator asks for a
			// re-clone, which keeps those binlogs for salvage.
			if !diverged {
				t.Fatalf("healed old primary neither Ready nor diverged")
			}
			deadline := time.Now().Add(10 * time.Second)
			for {
				agentLog, _ := os.ReadFile(filepath.Join(a.dir, "log", "agent.log"))
				if strings.Contains(string(agentLog), "diverged from "+b.name) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the agent does not say that %s diverged:\n%s", a.name, tail(string(agentLog), 2000))
				}
				time.Sleep(200 * time.Millisecond)
			}
			mustWrite(t, filepath.Join(a.datadir, ".k8s-reclone"), "", 0o644)
			c.crash(a)
			ic, cl := c.initPod(a)
			if ic.err != nil || cl.err != nil {
				t.Fatalf("re-cloning %s:\n%s\n%s", a.name, ic, cl)
			}
			kept, _ := filepath.Glob(filepath.Join(a.datadir, ".k8s-diverged-*.tar"))
			if len(kept) != 1 {
				t.Errorf("the diverged binlogs were not kept: %v", listDir(t, a.datadir))
			}
			how = fmt.Sprintf("read-only, not Ready (diverged: error 1236), re-cloned on request in %v keeping its binlogs", cl.took.Round(time.Millisecond))
			c.startServer(a)
		}
		c.waitReady(a, time.Minute)
		w6.halt()
		var rest []*pod
		for _, p := range []*pod{p0, p1, p2} {
			if p != b {
				rest = append(rest, p)
			}
		}
		s := c.waitConverged(b, rest, time.Minute)
		t.Logf("FIGURE heal: %s %s, %v after the heal; all 3 at %s, %s rows", a.name, how, time.Since(healed).Round(time.Millisecond), s.gtid, s.rows)
		for _, w := range []*writer{w1, w2, w3, w6, w6a} {
			w.checkNoLoss(b)
		}
		w6a.checkNoLoss(a)
		newPrimary = b
	})

	step("concurrent failovers", func(t *testing.T) {
		sub(t)
		old := newPrimary
		epochBefore := c.epoch()
		w7 := c.startWriter("w7", 7_000_000)
		w7.waitAcks(50, time.Minute)
		c.crash(old)
		results := make([]result, 2)
		var wg sync.WaitGroup
		for i := range results {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i] = c.run(nil, 3*time.Minute, nil, "failover.sh")
			}()
		}
		wg.Wait()
		ok := 0
		for i, r := range results {
			if r.err == nil {
				ok++
			} else {
				t.Logf("failover run %d refused: %s", i, lastLine(r.stderr))
				if !strings.Contains(r.stderr, "nothing was done") && !strings.Contains(r.stderr, "is held by") {
					t.Errorf("failover run %d failed for another reason:\n%s", i, r.stderr)
				}
			}
		}
		if ok != 1 {
			t.Fatalf("%d of 2 concurrent failovers succeeded; want exactly 1:\n%s\n%s", ok, results[0], results[1])
		}
		var writable []string
		for _, p := range []*pod{p0, p1, p2} {
			if p != old && c.mustSQL(p, "SELECT @@GLOBAL.read_only") == "0" {
				writable = append(writable, p.name)
			}
		}
		rec, _ := c.record()
		if len(writable) != 1 || writable[0] != rec || c.labelled() != rec {
			t.Fatalf("after two concurrent failovers: writable %v, record %q, label %q", writable, rec, c.labelled())
		}
		if want := fmt.Sprint(atoi(t, epochBefore) + 1); c.epoch() != want {
			t.Errorf("epoch %s after one failover from %s", c.epoch(), epochBefore)
		}
		newPrimary = c.pod(rec)
		w7.waitAcks(50, time.Minute)
		w7.halt()
		w7.checkNoLoss(newPrimary)
		t.Logf("FIGURE concurrent failovers: exactly one of 2 promoted %s (epoch %s); writable pods %v", rec, c.epoch(), writable)
		// The crashed primary comes back as a replica.
		ic, cl := c.initPod(old)
		if ic.err != nil || cl.err != nil {
			t.Fatalf("restarting %s:\n%s\n%s", old.name, ic, cl)
		}
		c.startServer(old)
		c.waitReady(old, time.Minute)
		if ro := c.mustSQL(old, "SELECT @@GLOBAL.read_only"); ro != "1" {
			t.Errorf("restarted old primary read_only=%s", ro)
		}
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

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("not a number: %q", s)
	}
	return n
}
