package isolation

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/ganesha"
	"github.com/nfs-provisioner/nfs-provisioner/pkg/storage"
	"github.com/nfs-provisioner/nfs-provisioner/test/nfsclient"
)

// TestServedVolumeIsBounded: over NFS, FSSTAT reports a filesystem
// volume's own size, and a client that writes past it gets NFS3ERR_NOSPC.
func TestServedVolumeIsBounded(t *testing.T) {
	needRoot(t)
	b, store := newBackend(t)
	s, cfg := startGanesha(t)
	ctx := testContext(t)
	for i, kind := range []storage.Kind{storage.XFS, storage.Ext4} {
		v, _, err := b.Create(ctx, storage.Spec{Name: string(kind), Kind: kind, Size: 1, Mode: 0o777})
		if err != nil {
			t.Fatal(err)
		}
		// A sentinel first: see TestForgedHandles.
		if i == 0 {
			sentinel := filepath.Join(store, "sentinel")
			os.Mkdir(sentinel, 0o700)
			if err := s.Exports().Add(ctx, ganesha.Export{ID: 100, Path: sentinel, Pseudo: "/sentinel", Clients: []string{"192.0.2.1"}}); err != nil {
				t.Fatal(err)
			}
		}
		e := ganesha.Export{ID: uint16(i + 1), Path: v.Path, Pseudo: "/" + v.Name, Squash: ganesha.NoRootSquash}
		if err := s.Exports().Add(ctx, e); err != nil {
			t.Fatal(err)
		}
		tg := target(cfg, e.Pseudo)
		r, err := nfsclient.DialRaw(ctx, tg)
		if err != nil {
			t.Fatal(err)
		}
		st, fs, err := r.FSStat(r.Root)
		r.Close()
		if err != nil || st != 0 {
			t.Fatalf("FSSTAT: %s %v", nfsclient.StatusName(st), err)
		}
		if int64(fs.TotalBytes) > v.Size || int64(fs.TotalBytes) < v.Size*3/4 || fs.AvailBytes > fs.TotalBytes {
			t.Errorf("%s: FSSTAT says %d bytes (%d free); the volume is %d", kind, fs.TotalBytes, fs.AvailBytes, v.Size)
		}
		// More than the volume holds.
		big := bytes.Repeat([]byte{0xa5}, int(v.Size)+(16<<20))
		err = nfsclient.WriteFile(ctx, tg, "big", big)
		if err == nil || !strings.Contains(err.Error(), "NOSPC") {
			t.Errorf("%s: writing %d bytes into %d: %v, want NFS3ERR_NOSPC", kind, len(big), v.Size, err)
		}
		// A write that fits still works after the removal of the big file.
		os.Remove(filepath.Join(v.Path, "big"))
		if err := nfsclient.WriteFile(ctx, tg, "small", []byte("fits")); err != nil {
			t.Errorf("%s: small write after the full one: %v", kind, err)
		}
	}
}
