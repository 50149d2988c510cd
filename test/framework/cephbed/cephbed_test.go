package cephbed

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// TestBootstrap checks what the bed promises: a healthy cluster with
// cephx on, an active MDS, the ganesha pool, everything on loopback and
// in the bed's directory.
func TestBootstrap(t *testing.T) {
	c := Shared(t)
	ctx := testContext(t)

	var health struct {
		Status string                     `json:"status"`
		Checks map[string]json.RawMessage `json:"checks"`
	}
	if err := c.CephJSON(ctx, &health, "health", "detail"); err != nil {
		t.Fatal(err)
	}
	// Only what a loaded CI machine causes by itself may be reported.
	transient := map[string]bool{"SLOW_OPS": true, "MDS_SLOW_METADATA_IO": true, "MDS_SLOW_REQUEST": true}
	for check := range health.Checks {
		if !transient[check] {
			out, _ := c.Ceph(ctx, "health", "detail")
			t.Errorf("health %s reports %s; want HEALTH_OK:\n%s", health.Status, check, out)
		}
	}
	if ok, _ := c.mdsActive(ctx); !ok {
		t.Errorf("rank 0 of %s is not up:active", FSName)
	}

	var apps map[string]map[string]string
	if err := c.CephJSON(ctx, &apps, "osd", "pool", "application", "get", GaneshaPool); err != nil {
		t.Fatal(err)
	}
	if _, ok := apps["nfs"]; !ok || len(apps) != 1 {
		t.Errorf("pool %s applications %v, want only nfs", GaneshaPool, apps)
	}

	// cephx is on: a key the cluster does not know is refused.
	bogus := Client{Name: "admin", Keyring: filepath.Join(t.TempDir(), "bogus.keyring")}
	key, err := newCephxKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := writeKeyring(bogus.Keyring, entity{name: "client.admin", key: key}); err != nil {
		t.Fatal(err)
	}
	shortCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if _, err := c.CephAs(shortCtx, bogus, "--connect-timeout", "5", "health"); err == nil {
		t.Error("ceph with an unknown key for client.admin succeeded; cephx is not enforced")
	}

	// Every daemon listens on 127.0.0.1 only.
	for _, cmd := range [][]string{{"mon", "dump"}, {"osd", "dump"}, {"fs", "dump"}, {"mgr", "dump"}} {
		out, err := c.Ceph(ctx, append(cmd, "--format=json")...)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range regexp.MustCompile(`"addr":"([^"]+)"`).FindAllSubmatch(out, -1) {
			if a := string(m[1]); !strings.HasPrefix(a, "127.0.0.1:") && a != "0.0.0.0:0" && a != "-" {
				t.Errorf("%s: address %s is not on loopback", strings.Join(cmd, " "), a)
			}
		}
	}
	// Admin sockets and logs are in the bed's directory.
	for name := range c.PIDs() {
		for _, f := range []string{filepath.Join(c.Dir, "run", name+".asok"), filepath.Join(c.Dir, "log", name+".log")} {
			if _, err := os.Stat(f); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}
	}
	t.Logf("bootstrap took %v; %s", c.StartupTime.Round(100*time.Millisecond), c.memory())
}

// TestSubvolume creates a subvolume with a quota and finds it where
// getpath says, with that quota.
func TestSubvolume(t *testing.T) {
	c := Shared(t)
	ctx := testContext(t)
	const size = 10 << 20
	path, err := c.CreateSubvolume(ctx, "sv-quota", size)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^/volumes/_nogroup/sv-quota/[0-9a-f-]{36}$`).MatchString(path) {
		t.Errorf("getpath %q, want /volumes/_nogroup/sv-quota/<uuid>", path)
	}
	var info struct {
		BytesQuota any    `json:"bytes_quota"`
		Path       string `json:"path"`
		State      string `json:"state"`
	}
	if err := c.CephJSON(ctx, &info, "fs", "subvolume", "info", FSName, "sv-quota"); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(info.BytesQuota) != fmt.Sprint(float64(size)) || info.Path != path || info.State != "complete" {
		t.Errorf("subvolume info = %+v, want bytes_quota %d, path %s, state complete", info, size, path)
	}
	// The quota is on the directory, where every CephFS client sees it.
	mnt := c.MountFuse(t, "/", Client{})
	q, err := getxattr(filepath.Join(mnt, path), "ceph.quota.max_bytes")
	if err != nil || q != fmt.Sprint(size) {
		t.Errorf("ceph.quota.max_bytes of %s = %q (%v), want %d", path, q, err, size)
	}
}

// TestFuse writes through ceph-fuse as a client confined to a subvolume,
// reads it back as admin, and checks the confinement and the quota.
func TestFuse(t *testing.T) {
	c := Shared(t)
	ctx := testContext(t)
	path, err := c.CreateSubvolume(ctx, "sv-fuse", 4<<20)
	if err != nil {
		t.Fatal(err)
	}
	user, err := c.Authorize(ctx, "fuse-user", path)
	if err != nil {
		t.Fatal(err)
	}

	var mnt string
	t.Run("confined client writes", func(t *testing.T) {
		mnt = c.MountFuse(t, path, user)
		if err := os.WriteFile(filepath.Join(mnt, "hello.txt"), []byte("hello ceph\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		// Beyond the 4 MiB quota: the client stops the writer (lazily, so
		// only somewhere past the limit).
		err := writeBig(filepath.Join(mnt, "big"), 16<<20)
		if !errors.Is(err, syscall.EDQUOT) {
			t.Errorf("writing 16 MiB into a 4 MiB subvolume: %v, want EDQUOT", err)
		}
	})
	if isMountPoint(mnt) {
		t.Errorf("%s is still mounted after its test ended", mnt)
	}

	root := c.MountFuse(t, "/", Client{})
	got, err := os.ReadFile(filepath.Join(root, path, "hello.txt"))
	if err != nil || string(got) != "hello ceph\n" {
		t.Errorf("admin reads %q, %v; want the confined client's write", got, err)
	}
	// Evicting the confined client's sessions fences its mount.
	t.Run("evict", func(t *testing.T) {
		mnt := c.MountFuse(t, path, user)
		if err := c.Evict(ctx, "auth_name="+user.Name); err != nil {
			t.Fatal(err)
		}
		err := os.WriteFile(filepath.Join(mnt, "after-evict"), []byte("x"), 0o644)
		if !errors.Is(err, syscall.ESHUTDOWN) && !errors.Is(err, syscall.ENOENT) {
			t.Errorf("write after evicting client.%s: %v, want ESHUTDOWN (or ENOENT for the fenced root)", user.Name, err)
		}
	})
	if _, err := os.Stat(filepath.Join(root, path, "after-evict")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the evicted client's write landed (stat: %v)", err)
	}
	if err := c.Evict(ctx); err == nil {
		t.Error("Evict with no filter succeeded; it must refuse to evict everyone")
	}
	// The MDS enforces the path: the confined client cannot mount the root.
	if dir, err := c.mountFuse(t, "/", user); err == nil {
		t.Errorf("client.%s mounted / at %s; want refused", user.Name, dir)
	} else if !strings.Contains(err.Error(), "exited") {
		t.Errorf("mount of / as client.%s: %v, want ceph-fuse to exit", user.Name, err)
	}
}

// TestRestart stops and starts every daemon: data, subvolumes and clients
// survive, and the daemons are new processes.
func TestRestart(t *testing.T) {
	c := Shared(t)
	ctx := testContext(t)
	path, err := c.CreateSubvolume(ctx, "sv-restart", 0)
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("restart "), 64<<10) // 512 KiB
	t.Run("write", func(t *testing.T) {
		mnt := c.MountFuse(t, path, Client{})
		if err := os.WriteFile(filepath.Join(mnt, "data"), data, 0o644); err != nil {
			t.Fatal(err)
		}
	})
	// A client that stays mounted through the restart reconnects.
	live := c.MountFuse(t, path, Client{})
	before := c.PIDs()
	if err := c.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(live, "after-restart"), []byte("live"), 0o644); err != nil {
		t.Errorf("the mount kept through the restart: %v", err)
	}
	after := c.PIDs()
	if len(after) != 4 {
		t.Fatalf("daemons after restart: %v", after)
	}
	for name, pid := range after {
		if before[name] == pid {
			t.Errorf("%s has the same pid %d after restart", name, pid)
		}
	}
	out, err := c.Ceph(ctx, "fs", "subvolume", "getpath", FSName, "sv-restart")
	if err != nil || strings.TrimSpace(string(out)) != path {
		t.Errorf("getpath after restart: %q, %v; want %s", out, err, path)
	}
	mnt := c.MountFuse(t, path, Client{})
	got, err := os.ReadFile(filepath.Join(mnt, "data"))
	if err != nil || !bytes.Equal(got, data) {
		t.Errorf("after restart read %d bytes (%v), want the %d written", len(got), err, len(data))
	}
	if got, err := os.ReadFile(filepath.Join(mnt, "after-restart")); err != nil || string(got) != "live" {
		t.Errorf("a new mount reads %q (%v) of what the kept mount wrote after the restart", got, err)
	}
}

// TestStartCleansUp checks Start's cleanup: the daemons and ceph-fuse it
// started are gone, by PID, and so is its directory and mount.
func TestStartCleansUp(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a Ceph cluster")
	}
	var (
		dir  string
		mnt  string
		pids map[string]int
	)
	t.Run("cluster", func(t *testing.T) {
		c := Start(t, Options{})
		dir, pids = c.Dir, c.PIDs()
		mnt = c.MountFuse(t, "/", Client{})
		if err := os.WriteFile(filepath.Join(mnt, "f"), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	})
	if len(pids) != 4 {
		t.Fatalf("daemons: %v, want mon, mgr, osd, mds", pids)
	}
	for name, pid := range pids {
		// Reaped children leave no /proc entry (barring PID reuse).
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && bytes.Contains(b, []byte(dir)) {
			t.Errorf("%s (pid %d) still runs after cleanup", name, pid)
		}
	}
	if isMountPoint(mnt) {
		t.Errorf("%s still mounted after cleanup", mnt)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s still exists after cleanup (%v)", dir, err)
	}
}

func writeBig(path string, n int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	chunk := bytes.Repeat([]byte{0xab}, 1<<20)
	for written := 0; written < n; written += len(chunk) {
		if _, err := f.Write(chunk); err != nil {
			f.Close()
			return err
		}
		// The client learns of the quota's use from the MDS; syncing
		// makes it account what was written.
		if err := f.Sync(); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}

func getxattr(path, name string) (string, error) {
	buf := make([]byte, 256)
	n, err := syscall.Getxattr(path, name, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}
