package exepages

import (
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// rssFile is RssFile of this process, in bytes.
func rssFile(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "RssFile:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no RssFile in /proc/self/status")
	return 0
}

// The test binary is a Go executable like the provisioner: Release drops
// its read-only pages, and the program goes on running the code whose
// pages were dropped (garbage collection, stack growth, reflection).
func TestReleaseDropsReadOnlyPagesAndTheProgramRunsOn(t *testing.T) {
	before := rssFile(t)
	released, err := Release()
	if err != nil {
		t.Fatal(err)
	}
	after := rssFile(t)
	t.Logf("RssFile %d KiB before, %d KiB after; released %d KiB", before>>10, after>>10, released>>10)
	if released <= 0 {
		t.Fatalf("released %d bytes", released)
	}
	if after >= before {
		t.Errorf("RssFile did not fall: %d KiB before, %d KiB after", before>>10, after>>10)
	}
	// Code and read-only data come back on use.
	runtime.GC()
	var sb strings.Builder
	for i := range 1000 {
		sb.WriteString(strconv.Itoa(i))
	}
	if n := len(sb.String()); n != 2890 {
		t.Errorf("built a string of %d bytes, want 2890", n)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	maps, err := readMappings("/proc/self/smaps", exe)
	if err != nil {
		t.Fatal(err)
	}
	var writable int
	for _, m := range maps {
		if strings.Contains(m.perms, "w") {
			writable++
		}
	}
	if writable == 0 {
		t.Errorf("no writable mapping of %s in smaps (%d mappings): the parser misses some", exe, len(maps))
	}
}

func TestReadMappings(t *testing.T) {
	smaps := `00400000-00c00000 r-xp 00000000 fe:01 123 /usr/bin/nfs provisioner
Size:               8192 kB
Rss:                4096 kB
Anonymous:             0 kB
VmFlags: rd ex mr mw me
00c00000-01000000 r--p 00800000 fe:01 123 /usr/bin/nfs provisioner
Rss:                2048 kB
Anonymous:             8 kB
01000000-01100000 rw-p 00c00000 fe:01 123 /usr/bin/nfs provisioner
Rss:                 512 kB
Anonymous:           256 kB
7f0000000000-7f0000100000 r-xp 00000000 fe:01 456 /usr/lib/other
Rss:                 100 kB
7f0000200000-7f0000300000 rw-p 00000000 00:00 0
Rss:                 100 kB
`
	p := filepath.Join(t.TempDir(), "smaps")
	if err := os.WriteFile(p, []byte(smaps), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := readMappings(p, "/usr/bin/nfs provisioner")
	if err != nil {
		t.Fatal(err)
	}
	want := []mapping{
		{start: 0x400000, end: 0xc00000, perms: "r-xp", rss: 4096 << 10},
		{start: 0xc00000, end: 0x1000000, perms: "r--p", rss: 2048 << 10, anon: 8 << 10},
		{start: 0x1000000, end: 0x1100000, perms: "rw-p", rss: 512 << 10, anon: 256 << 10},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d mappings, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("mapping %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
	// Only the code mapping is dropped: the read-only one holds a copied
	// page, the last one is writable.
	for i, wantDrop := range []bool{true, false, false} {
		if d := dropsSafely(got[i]); d != wantDrop {
			t.Errorf("dropsSafely(%+v) = %v, want %v", got[i], d, wantDrop)
		}
	}
}

func TestCheckFixedAddress(t *testing.T) {
	dir := t.TempDir()
	header := func(typ byte) []byte {
		h := make([]byte, 64)
		copy(h, "\x7fELF")
		h[4], h[5], h[16] = 2, 1, typ // 64-bit, little-endian, e_type
		return h
	}
	for name, tc := range map[string]struct {
		data []byte
		ok   bool
	}{
		"fixed-address executable":   {header(2), true},
		"position-independent (DYN)": {header(3), false},
		"not ELF":                    {[]byte("#!/bin/sh\necho hello world\n"), false},
		"short":                      {[]byte("\x7fELF"), false},
	} {
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "-"))
		if err := os.WriteFile(p, tc.data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := checkFixedAddress(p); (err == nil) != tc.ok {
			t.Errorf("%s: checkFixedAddress = %v, want ok=%v", name, err, tc.ok)
		}
	}
	if err := checkFixedAddress("/proc/self/exe"); err != nil {
		t.Errorf("this test binary: %v", err)
	}
}
