package mysql

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestCloneRefusesBadDonors: the original design's clone pipeline reported
// success when the donor was unreachable or sent nothing, and an empty
// replica started. Ours must fail the init container and leave no datadir
// marked initialized. No mariadbd is needed: the donors are absent or fake.
func TestCloneRefusesBadDonors(t *testing.T) {
	c := newCluster(t, 40, "mysql-0", "mysql-1")
	p := c.pod("mysql-1")
	marker := filepath.Join(p.datadir, ".k8s-initialized")

	t.Run("no record: a replica waits and says so", func(t *testing.T) {
		// The bootstrap guard: before the record exists no pod clones, so
		// data never sits on two pods without a record saying where.
		ic, cl := c.initPod(p, "RECORD_WAIT=2")
		if ic.err != nil || cl.err == nil || !strings.Contains(cl.stderr, "run failover.sh --init") {
			t.Fatalf("clone.sh without a record:\n%s\n%s", ic, cl)
		}
		if exists(marker) {
			t.Fatal("marked initialized without a record")
		}
		t.Logf("without a record: %s", lastLine(cl.stderr))
	})
	c.setRecord("mysql-0", "0")

	check := func(t *testing.T, what, why string) {
		t.Helper()
		ic, cl := c.initPod(p)
		if ic.err != nil {
			t.Fatalf("init-config failed: %s", ic)
		}
		if cl.err == nil {
			t.Fatalf("clone.sh succeeded with %s:\n%s", what, cl)
		}
		if exists(marker) {
			t.Fatalf("datadir marked initialized after a failed clone (%s)", what)
		}
		for _, n := range listDir(t, p.datadir) {
			if n != ".k8s-in-progress" {
				t.Errorf("left %s in the datadir after a failed clone", n)
			}
		}
		if !strings.Contains(cl.stderr, "not starting an empty replica") || !strings.Contains(cl.stderr, why) {
			t.Errorf("clone.sh's error does not say why:\n%s", cl.stderr)
		}
		t.Logf("%s: clone.sh exited with %v after %v; last line: %s", what, cl.err, cl.took.Round(time.Millisecond),
			lastLine(cl.stderr))
	}

	t.Run("unreachable donor", func(t *testing.T) {
		// Nothing listens on mysql-0's clone port.
		check(t, "an unreachable donor", "stream from mysql-0 failed")
	})

	t.Run("empty stream", func(t *testing.T) {
		// The donor accepts and closes at once, as a crashing backup would.
		closeAll(t, c.ip("mysql-0")+":3307", nil)
		check(t, "an empty stream", "mysql-0")
	})

	t.Run("garbage stream", func(t *testing.T) {
		closeAll(t, c.ip("mysql-0")+":3307", []byte(strings.Repeat("not an xbstream ", 4096)))
		check(t, "a garbage stream", "mysql-0")
	})

	t.Run("record names an empty pod primary", func(t *testing.T) {
		// A lost primary PVC must never become an empty new primary.
		q := c.pod("mysql-0")
		ic := c.run(q, time.Minute, nil, "init-config.sh")
		if ic.err == nil || !strings.Contains(ic.stderr, "refusing to start an empty primary") {
			t.Fatalf("init-config.sh accepted an empty datadir as recorded primary:\n%s", ic)
		}
	})

	t.Run("foreign leftovers", func(t *testing.T) {
		// Data we did not write (say, from the old tutorial) is not deleted.
		q := c.pod("mysql-2")
		mustWrite(t, filepath.Join(q.datadir, "ibdata1"), "precious", 0o644)
		ic, cl := c.initPod(q)
		if ic.err != nil || cl.err == nil || !exists(filepath.Join(q.datadir, "ibdata1")) {
			t.Fatalf("clone.sh deleted or used foreign data:\n%s\n%s", ic, cl)
		}
	})

	t.Run("empty or missing passwords", func(t *testing.T) {
		q := c.pod("mysql-0")
		for _, v := range []string{"", "has space", "quo'te"} {
			mustWrite(t, filepath.Join(q.dir, "secret", "app-password"), v, 0o440)
			r := c.run(q, time.Minute, nil, "users.sh")
			if r.err == nil || strings.Contains(r.stdout, "IDENTIFIED BY ''") {
				t.Errorf("users.sh accepted app-password %q:\n%s", v, r)
			}
		}
		if err := os.Remove(filepath.Join(q.dir, "secret", "app-password")); err != nil {
			t.Fatal(err)
		}
		if r := c.run(q, time.Minute, nil, "users.sh"); r.err == nil || !strings.Contains(r.stderr, "create the Secret") {
			t.Errorf("users.sh ran without the Secret key:\n%s", r)
		}
	})
}

// closeAll listens on addr, sends payload to every connection and closes it.
func closeAll(t *testing.T, addr string, payload []byte) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = conn.Write(payload)
			_ = conn.Close()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
	})
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	return s[strings.LastIndexByte(s, '\n')+1:]
}
