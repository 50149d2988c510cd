package ganesha

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/nfs-provisioner/nfs-provisioner/test/nfsclient"
)

func TestServerExportsReadWrite(t *testing.T) {
	root := t.TempDir()
	s := startServer(t, testConfig(t, filepath.Join(root, "state"), true))
	ctx := testContext(t)
	var exports []Export
	for i := 1; i <= 3; i++ {
		e := Export{ID: uint16(i), Path: exportDir(t, root, fmt.Sprintf("data/pv%d", i)), Pseudo: fmt.Sprintf("/pv%d", i), Squash: NoRootSquash}
		if err := s.Exports().Add(ctx, e); err != nil {
			t.Fatal(err)
		}
		exports = append(exports, e)
	}
	list, err := s.Exports().List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 3 {
		t.Fatalf("List: got %d exports, want 3: %v", len(list), list)
	}
	for i, e := range exports {
		if !list[i].Equal(e) {
			t.Errorf("List[%d] = %s, want %s", i, list[i], e)
		}
		big := make([]byte, 1<<20)
		rand.Read(big)
		small := []byte(fmt.Sprintf("hello v4 from export %d\n", e.ID))
		v3, v4 := target(s, e.Pseudo, 3), target(s, e.Pseudo, 4)
		v3lib := v3
		v3lib.Tool = "libnfs"
		if err := nfsclient.WriteFile(ctx, v3, "big.bin", big); err != nil {
			t.Fatal(err)
		}
		if err := nfsclient.WriteFile(ctx, v4, "small.txt", small); err != nil {
			t.Fatal(err)
		}
		if err := nfsclient.WriteFile(ctx, v3lib, "lib.bin", big[:200000]); err != nil {
			t.Fatal(err)
		}
		// Each file read back over the other protocol and from disk.
		got, err := nfsclient.ReadFile(ctx, v4, "big.bin")
		if err != nil || !bytes.Equal(got, big) {
			t.Fatalf("v4 read of v3 write: %d bytes, err %v", len(got), err)
		}
		got, err = nfsclient.ReadFile(ctx, v3, "small.txt")
		if err != nil || !bytes.Equal(got, small) {
			t.Fatalf("v3 read of v4 write: %q, err %v", got, err)
		}
		got, err = nfsclient.ReadFile(ctx, v3lib, "lib.bin")
		if err != nil || !bytes.Equal(got, big[:200000]) {
			t.Fatalf("libnfs v3 read: %d bytes, err %v", len(got), err)
		}
		onDisk, err := os.ReadFile(filepath.Join(e.Path, "big.bin"))
		if err != nil || !bytes.Equal(onDisk, big) {
			t.Fatalf("file on disk differs: %d bytes, err %v", len(onDisk), err)
		}
		for _, tg := range []nfsclient.Target{v3, v4} {
			entries, err := nfsclient.List(ctx, tg, "")
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != 3 {
				t.Errorf("%s: listed %v, want big.bin, small.txt, lib.bin", tg, entries)
			}
		}
	}
	if err := s.Healthy(); err != nil {
		t.Fatal(err)
	}
}
