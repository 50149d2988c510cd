package nfsclient_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/ganesha"
	"github.com/nfs-provisioner/nfs-provisioner/test/nfsclient"
)

func TestURL(t *testing.T) {
	tg := nfsclient.Target{Host: "127.0.0.1", NFSPort: 12049, MountPort: 12050, Pseudo: "/pv1", Version: 3, UID: 1000, GID: 100}
	if got, want := tg.URL("a/b.txt"), "nfs://127.0.0.1/pv1/a/b.txt?version=3&nfsport=12049&mountport=12050&uid=1000&gid=100"; got != want {
		t.Errorf("URL = %s, want %s", got, want)
	}
	tg.Version, tg.UID, tg.GID = 4, 0, 0
	if got, want := tg.URL(""), "nfs://127.0.0.1/pv1/?version=4&nfsport=12049"; got != want {
		t.Errorf("URL = %s, want %s", got, want)
	}
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestAgainstGanesha exercises every client path against a real server.
func TestAgainstGanesha(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a real ganesha.nfsd; skipped under -short")
	}
	root := t.TempDir()
	data := filepath.Join(root, "data")
	for _, d := range []string{data, filepath.Join(data, "sub dir")} {
		if err := os.MkdirAll(d, 0o777); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, 0o777); err != nil { // past the umask
			t.Fatal(err)
		}
	}
	nfsPort, mntPort := freePort(t), freePort(t)
	if nfsPort == mntPort {
		mntPort = freePort(t)
	}
	s, err := ganesha.NewServer(ganesha.Config{StateDir: filepath.Join(root, "state"), BindAddress: "127.0.0.1", NFSPort: nfsPort, MountdPort: mntPort, NFSv3: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Stop(context.Background())
	if err := s.Exports().Add(ctx, ganesha.Export{ID: 1, Path: data, Pseudo: "/data", Squash: ganesha.NoRootSquash}); err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 3<<20)
	rand.Read(big)
	base := nfsclient.Target{Host: "127.0.0.1", NFSPort: nfsPort, MountPort: mntPort, Pseudo: "/data"}
	for _, c := range []struct {
		name    string
		version int
		tool    string
		data    []byte
	}{
		{"go-v3", 3, "", big},
		{"libnfs-v3", 3, "libnfs", big[:1<<20]},
		{"libnfs-v4", 4, "", big[:nfsclient.MaxV4Write]},
	} {
		t.Run(c.name, func(t *testing.T) {
			tg := base
			tg.Version, tg.Tool, tg.UID, tg.GID = c.version, c.tool, 1000, 1000
			name := "sub dir/" + c.name
			if err := nfsclient.WriteFile(ctx, tg, name, c.data); err != nil {
				t.Fatal(err)
			}
			if c.tool == "" && c.version == 3 {
				// The Go client truncates on overwrite.
				if err := nfsclient.WriteFile(ctx, tg, name, c.data[:10]); err != nil {
					t.Fatal(err)
				}
				if err := nfsclient.WriteFile(ctx, tg, name, c.data); err != nil {
					t.Fatal(err)
				}
			} else if err := nfsclient.WriteFile(ctx, tg, name, c.data[:10]); err == nil {
				t.Error("libnfs overwrote an existing file; nfs-cp creates exclusively")
			}
			got, err := nfsclient.ReadFile(ctx, tg, name)
			if err != nil || !bytes.Equal(got, c.data) {
				t.Fatalf("read back %d bytes (want %d): %v", len(got), len(c.data), err)
			}
			onDisk, err := os.ReadFile(filepath.Join(data, name))
			if err != nil || !bytes.Equal(onDisk, c.data) {
				t.Fatalf("on disk %d bytes: %v", len(onDisk), err)
			}
			ent, err := nfsclient.Stat(ctx, tg, name)
			if err != nil {
				t.Fatal(err)
			}
			if ent.UID != 1000 || ent.GID != 1000 || ent.Size != int64(len(c.data)) || ent.IsDir {
				t.Errorf("Stat: %+v", ent)
			}
			entries, err := nfsclient.List(ctx, tg, "")
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != 1 || entries[0].Name != "sub dir" || !entries[0].IsDir {
				t.Errorf("List of the export root: %+v", entries)
			}
		})
	}
	v4 := base
	v4.Version = 4
	if err := nfsclient.WriteFile(ctx, v4, "big", big); err == nil || !strings.Contains(err.Error(), "NFSv3") {
		t.Errorf("oversized v4 write: %v", err)
	}
	if _, err := nfsclient.ReadFile(ctx, base, "x"); err == nil {
		t.Error("v3 target without version accepted")
	}
	missing := base
	missing.Version, missing.Pseudo = 3, "/missing"
	if _, err := nfsclient.ReadFile(ctx, missing, "x"); err == nil {
		t.Error("read from a missing export succeeded")
	}
}
