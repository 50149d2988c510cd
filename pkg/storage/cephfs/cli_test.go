package cephfs

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fakeBinary writes a shell script standing in for the ceph command: the
// real exec path (arguments, exit status, stderr, deadline) runs against it.
func fakeBinary(t *testing.T, script string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ceph")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+script+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCLIRun(t *testing.T) {
	c := &cli{binary: fakeBinary(t, `printf '%s\n' "$@"`), conf: "/c", user: "u", timeout: 5 * time.Second, sem: make(chan struct{}, 1)}
	out, err := c.run(context.Background(), "fs", "subvolume", "ls", "cephfs")
	if err != nil {
		t.Fatal(err)
	}
	want := "--conf\n/c\n--id\nu\n--connect-timeout\n5\n--format\njson\nfs\nsubvolume\nls\ncephfs\n"
	if string(out) != want {
		t.Fatalf("argv:\n%s\nwant:\n%s", out, want)
	}
}

func TestCLIErrors(t *testing.T) {
	for _, tc := range []struct {
		script string
		want   syscall.Errno
	}{
		{`echo "Error ENOENT: subvolume 'x' does not exist" >&2; exit 2`, syscall.ENOENT},
		{`echo "Error EAGAIN: clone in-progress -- please cancel the clone and retry" >&2; exit 11`, syscall.EAGAIN},
		{`exit 39`, syscall.ENOTEMPTY},
		{`echo 'Traceback (most recent call last):' >&2; exit 1`, 0},
	} {
		c := &cli{binary: fakeBinary(t, tc.script), conf: "/c", user: "u", timeout: 5 * time.Second, sem: make(chan struct{}, 1)}
		_, err := c.run(context.Background(), "fs", "subvolume", "info", "cephfs", "x")
		var ce *CommandError
		if !errors.As(err, &ce) || ce.Errno != tc.want {
			t.Errorf("%s: %v, want errno %v", tc.script, err, tc.want)
			continue
		}
		if tc.want != 0 && !errors.Is(err, tc.want) {
			t.Errorf("%s: errors.Is(%v) false", tc.script, tc.want)
		}
		if !strings.HasPrefix(err.Error(), "ceph fs subvolume info cephfs x: ") {
			t.Errorf("message %q", err)
		}
	}
}

// A command that hangs (a cluster that does not answer) is killed at the
// per-call deadline.
func TestCLITimeout(t *testing.T) {
	c := &cli{binary: fakeBinary(t, `exec sleep 60`), conf: "/c", user: "u", timeout: time.Second, sem: make(chan struct{}, 1)}
	start := time.Now()
	_, err := c.run(context.Background(), "df")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v", err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Fatalf("took %s", d)
	}
}

func TestParse(t *testing.T) {
	info, err := parseInfo([]byte(`{"atime":"x","bytes_pcent":"undefined","bytes_quota":"infinite","bytes_used":12,"data_pool":"p","features":["snapshot-clone"],"gid":0,"mode":16877,"path":"/volumes/g/a/u","pool_namespace":"","state":"complete","type":"subvolume","uid":0}`))
	if err != nil || info.Quota != 0 || info.Used != 12 || info.Path != "/volumes/g/a/u" || info.State != "complete" {
		t.Fatalf("info %+v %v", info, err)
	}
	for _, bad := range []string{`{"path":"rel","bytes_quota":1}`, `{"path":"/a","bytes_quota":"lots"}`, `not json`} {
		if _, err := parseInfo([]byte(bad)); err == nil {
			t.Errorf("info %s accepted", bad)
		}
	}
	if names, err := parseNames([]byte(`[{"name":"a"},{"name":"b"}]`)); err != nil || strings.Join(names, ",") != "a,b" {
		t.Fatalf("names %v %v", names, err)
	}
	if names, err := parseNames([]byte("\n")); err != nil || names != nil {
		t.Fatalf("empty list %v %v", names, err)
	}
	if _, err := parseNames([]byte(`[{"nom":"a"}]`)); err == nil {
		t.Error("nameless entry accepted")
	}
	key, caps, err := parseAuth([]byte(`[{"entity":"client.x","key":"AQA==","caps":{"mds":"allow rw path=/a","mon":"allow r"}}]`), "client.x")
	if err != nil || key != "AQA==" || caps["mds"] != "allow rw path=/a" {
		t.Fatalf("auth %q %v %v", key, caps, err)
	}
	if key, caps, err := parseAuth([]byte(`{"entity":"client.x","key":"AQB=="}`), "client.x"); err != nil || key != "AQB==" || caps != nil {
		t.Fatalf("auth object %q %v %v", key, caps, err)
	}
	if _, _, err := parseAuth([]byte(`[{"entity":"client.y","key":"AQA=="}]`), "client.x"); err == nil {
		t.Error("another entity's key accepted")
	}
	st, err := parseCloneStatus([]byte(`{"status":{"state":"failed","source":{"volume":"cephfs"},"failure":{"errno":"122","error_msg":"Disk quota exceeded"}}}`))
	if err != nil || st.State != cloneFailed || !strings.Contains(st.Failure, "Disk quota exceeded") {
		t.Fatalf("clone status %+v %v", st, err)
	}
	if _, err := parseCloneStatus([]byte(`{"status":{"state":"weird"}}`)); err == nil {
		t.Error("unknown clone state accepted")
	}
	pool, err := parseDataPool([]byte(`[{"name":"other","data_pools":["x"]},{"name":"cephfs","metadata_pool":"m","data_pools":["cephfs.cephfs.data","second"]}]`), "cephfs")
	if err != nil || pool != "cephfs.cephfs.data" {
		t.Fatalf("data pool %q %v", pool, err)
	}
	if _, err := parseDataPool([]byte(`[]`), "cephfs"); err == nil {
		t.Error("a missing filesystem accepted")
	}
	space, err := parseDF([]byte(`{"pools":[{"name":"cephfs.cephfs.data","id":3,"stats":{"stored":123,"objects":1,"kb_used":1,"bytes_used":369,"percent_used":0.01,"max_avail":28991029248}}]}`), "cephfs.cephfs.data")
	if err != nil || space.Stored != 123 || space.MaxAvail != 28991029248 {
		t.Fatalf("df %+v %v", space, err)
	}
}

func TestNames(t *testing.T) {
	long := strings.Repeat("x", 255)
	for _, ok := range []string{"a", "ns-claim-pvc-0a1b", "A_b.c-d", long} {
		if err := checkName(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "-x", "a b", "a/b", ".a", "archived-a", "a;b", "ü", long + "x"} {
		if checkName(bad) == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if a, b := cloneSnap("x"), cloneSnap("y"); a == b || a != cloneSnap("x") || len(a) > 64 {
		t.Errorf("clone snapshots %q %q", a, b)
	}
	snap := archiveSnap(time.Date(2026, 12, 1, 3, 4, 5, 6, time.UTC))
	if got := archiveTarget(long, snap); len(got) != 255 || !strings.HasSuffix(got, "-20261201T030405.000000006") || checkName(got) == nil {
		t.Errorf("archive name %q (%d bytes)", got, len(got))
	}
	if err := checkCephName("archive", archiveTarget(long, snap)); err != nil {
		t.Errorf("archive name not accepted by the mgr: %v", err)
	}
	for m, want := range map[os.FileMode]string{0o777: "777", 0o770 | os.ModeSetgid: "2770", 0o1777 | os.ModeSticky: "1777", 0o755 | os.ModeSetuid: "4755"} {
		if got := modeString(m); got != want {
			t.Errorf("mode %v: %s, want %s", m, got, want)
		}
	}
}

func TestParseActiveMDS(t *testing.T) {
	dump := func(state string) []byte {
		return []byte(`{"epoch":5,"filesystems":[{"mdsmap":{"fs_name":"other","info":{"gid_1":{"state":"up:active"}}}},{"mdsmap":{"fs_name":"cephfs","info":{"gid_4107":{"state":"` + state + `"}}}}]}`)
	}
	if err := parseActiveMDS(dump("up:active"), "cephfs"); err != nil {
		t.Fatal(err)
	}
	if err := parseActiveMDS(dump("up:clientreplay"), "cephfs"); err != nil {
		t.Fatalf("an MDS waiting for sessions to be reclaimed: %v", err)
	}
	for _, state := range []string{"up:replay", "up:reconnect", "up:rejoin"} {
		if err := parseActiveMDS(dump(state), "cephfs"); err == nil {
			t.Errorf("MDS %s counted as serving", state)
		}
	}
	if err := parseActiveMDS(dump("up:active"), "nope"); err == nil {
		t.Error("a missing filesystem counted as serving")
	}
}
