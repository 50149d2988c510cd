package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/storage"
	"github.com/nfs-provisioner/nfs-provisioner/pkg/storage/fsimage"
	"github.com/nfs-provisioner/nfs-provisioner/pkg/volume"
	"github.com/nfs-provisioner/nfs-provisioner/test/framework"
	"github.com/nfs-provisioner/nfs-provisioner/test/nfsclient"
)

// fsPaths are where a filesystem volume lives in the store.
func fsPaths(p *testProvisioner, name string) (image, mountPoint string) {
	state := filepath.Join(p.cfg.ExportDir, volume.StateDirName)
	return filepath.Join(state, "images", name), filepath.Join(state, "mounts", name)
}

// mountsAt counts the mounts at mountPoint in this mount namespace.
func mountsAt(t testing.TB, mountPoint string) int {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == mountPoint {
			n++
		}
	}
	return n
}

// fsUUID reads the filesystem UUID from the superblock in image.
func fsUUID(t testing.TB, image string, kind storage.Kind) []byte {
	t.Helper()
	f, err := os.Open(image)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	off := int64(32) // XFS: sb_uuid
	if kind == storage.Ext4 {
		off = 1024 + 0x68 // ext4: s_uuid
	}
	uuid := make([]byte, 16)
	if _, err := f.ReadAt(uuid, off); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(uuid, make([]byte, 16)) {
		t.Fatalf("no UUID in the superblock of %s", image)
	}
	return uuid
}

// assertDirectIO checks that the loop device of image does direct I/O
// whenever the store lets the image be opened with O_DIRECT.
func assertDirectIO(t testing.TB, image string) {
	t.Helper()
	files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	for _, f := range files {
		if data, err := os.ReadFile(f); err != nil || strings.TrimSpace(string(data)) != image {
			continue
		}
		dio, err := os.ReadFile(filepath.Join(filepath.Dir(f), "dio"))
		if err != nil {
			t.Fatal(err)
		}
		want := false
		if img, err := os.OpenFile(image, os.O_RDONLY|unix.O_DIRECT, 0); err == nil {
			img.Close()
			want = true
		}
		if got := strings.TrimSpace(string(dio)) == "1"; got != want {
			t.Fatalf("%s: direct I/O %v; the store accepts O_DIRECT: %v", f, got, want)
		}
		return
	}
	t.Fatalf("no loop device backs %s", image)
}

// loopsOf counts the loop devices whose backing file is image.
func loopsOf(t testing.TB, image string) int {
	t.Helper()
	files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	n := 0
	for _, f := range files {
		if data, err := os.ReadFile(f); err == nil && strings.TrimSpace(string(data)) == image {
			n++
		}
	}
	return n
}

// TestFilesystemVolumeLifecycle: a claim of an fsType class is a filesystem
// of its own: its size is enforced (a write past it fails over NFS), NFS
// FSSTAT reports its own size (less the filesystem's own metadata), a kill -9 and restart leaves it mounted and
// attached exactly once and served with its data, and deleting the claim
// leaves no export, mount or loop device, and the image as onDelete says.
func TestFilesystemVolumeLifecycle(t *testing.T) {
	env := newTestEnv(t)
	c, ns, p := env.c, env.ns, env.p
	for _, tc := range []struct {
		kind     storage.Kind
		onDelete volume.OnDelete
		request  int64
	}{
		{storage.XFS, volume.OnDeleteDelete, 10 << 20},
		{storage.Ext4, volume.OnDeleteArchive, 40 << 20},
		{storage.XFS, volume.OnDeleteRetain, 301 << 20},
	} {
		size := fsimage.RoundSize(tc.kind, tc.request)
		t.Run(string(tc.kind)+"-"+string(tc.onDelete), func(t *testing.T) {
			class := ns + "-" + string(tc.kind) + "-" + string(tc.onDelete)
			storageClass(t, c, class, p.cfg.Name, map[string]string{"fsType": string(tc.kind), "onDelete": string(tc.onDelete), "uid": "999", "gid": "999", "mode": "0770"}, v1.PersistentVolumeReclaimDelete)
			name := "fs-" + string(tc.kind) + "-" + string(tc.onDelete)
			createClaim(t, c, framework.Claim(ns, name, class, resource.NewQuantity(tc.request, resource.BinarySI).String()))
			pv := waitBound(t, c, ns, name)
			if got := pv.Spec.Capacity[v1.ResourceStorage]; got.Value() != size || pv.Annotations[volume.AnnKind] != string(tc.kind) {
				t.Fatalf("PV capacity %s kind %q, want %d bytes of %s", got.String(), pv.Annotations[volume.AnnKind], size, tc.kind)
			}
			vol := pv.Annotations[volume.AnnDirectory]
			image, mp := fsPaths(p, vol)
			if mountsAt(t, mp) != 1 || loopsOf(t, image) != 1 {
				t.Fatalf("volume mounted %d times, attached %d times; want 1 and 1", mountsAt(t, mp), loopsOf(t, image))
			}
			// Its data is cached once, by the filesystem on the loop device.
			assertDirectIO(t, image)

			// The volume's own size over NFS, and the root owned as the class says.
			target := p.target(pv, 3)
			target.UID, target.GID = 999, 999
			raw, err := nfsclient.DialRaw(t.Context(), target)
			if err != nil {
				t.Fatal(err)
			}
			status, st, err := raw.FSStat(raw.Root)
			raw.Close()
			if err != nil || status != 0 || st.TotalBytes > uint64(size) || st.TotalBytes < uint64(size)/2 {
				t.Fatalf("FSSTAT %s %+v %v: want about %d bytes in all", nfsclient.StatusName(status), st, err, size)
			}
			// ganesha tells the volume's filesystem from the others by its
			// UUID, which every file handle carries: not by the loop
			// device's number, which another attach may change.
			root := raw.Root
			if uuid := fsUUID(t, image, tc.kind); !bytes.Contains(root, uuid) {
				t.Fatalf("root file handle %x does not carry the filesystem UUID %x", root, uuid)
			}
			data := []byte(strings.Repeat("filesystem volume\n", 60000)) // about 1 MB
			if err := nfsclient.WriteFile(t.Context(), target, "data", data); err != nil {
				t.Fatalf("write as uid 999: %v", err)
			}

			// Full: fill the volume where it lives, then a client's write fails.
			fill(t, mp)
			if err := nfsclient.WriteFile(t.Context(), target, "past-the-end", bytes.Repeat(data, 4)); err == nil {
				t.Fatal("a write past the volume's size succeeded")
			}
			for _, f := range []string{"filler-0", "filler-1"} {
				if err := os.Remove(filepath.Join(mp, f)); err != nil {
					t.Fatal(err)
				}
			}

			// kill -9 and restart: mounted and attached once, served, data intact.
			p.kill9()
			p.restart()
			if got := nfsRead(t, p, pv, "data", 3); string(got) != string(data) {
				t.Fatalf("after kill -9 and restart read %d bytes, want %d", len(got), len(data))
			}
			if mountsAt(t, mp) != 1 || loopsOf(t, image) != 1 {
				t.Fatalf("after restart mounted %d times, attached %d times; want 1 and 1", mountsAt(t, mp), loopsOf(t, image))
			}
			// Clients keep their file handles.
			raw, err = nfsclient.DialRaw(t.Context(), target)
			if err != nil {
				t.Fatal(err)
			}
			raw.Close()
			if !bytes.Equal(raw.Root, root) {
				t.Fatalf("after restart the root file handle is %x, was %x", raw.Root, root)
			}

			if err := c.Client.CoreV1().PersistentVolumeClaims(ns).Delete(t.Context(), name, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			waitPVGone(t, c, pv.Name)
			nfsRefused(t, p, pv)
			if mountsAt(t, mp) != 0 || loopsOf(t, image) != 0 {
				t.Fatalf("after delete still mounted %d times, attached %d times", mountsAt(t, mp), loopsOf(t, image))
			}
			_, errImage := os.Stat(image)
			_, errArchive := os.Stat(filepath.Join(filepath.Dir(image), "archived-"+vol))
			switch tc.onDelete {
			case volume.OnDeleteDelete:
				if !errors.Is(errImage, os.ErrNotExist) || errArchive == nil {
					t.Errorf("onDelete=delete left the image: %v %v", errImage, errArchive)
				}
			case volume.OnDeleteRetain:
				if errImage != nil {
					t.Errorf("onDelete=retain lost the image: %v", errImage)
				}
			case volume.OnDeleteArchive:
				if !errors.Is(errImage, os.ErrNotExist) || errArchive != nil {
					t.Errorf("onDelete=archive: image %v, archive %v", errImage, errArchive)
				}
			}
		})
	}
}

// fill writes into the filesystem at dir until it is full, and syncs, so
// that what XFS holds back for speculative preallocation is given up too.
func fill(t testing.TB, dir string) {
	t.Helper()
	chunk := make([]byte, 1<<20)
	for i := range 2 {
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("filler-%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		for {
			if _, err := f.Write(chunk); err != nil {
				break
			}
		}
		_ = f.Sync()
		f.Close()
		chunk = chunk[:4096]
	}
}

// TestFilesystemVolumeCapacity: filesystem volumes never promise more than
// the store holds (times -overcommit): a claim that does not fit gets an
// event and leaves nothing behind.
func TestFilesystemVolumeCapacity(t *testing.T) {
	env := newTestEnv(t)
	c, ns, p := env.c, env.ns, env.p
	class := ns + "-xfs"
	storageClass(t, c, class, p.cfg.Name, map[string]string{"fsType": "xfs"}, v1.PersistentVolumeReclaimDelete)
	var st unix.Statfs_t
	if err := unix.Statfs(p.cfg.ExportDir, &st); err != nil {
		t.Fatal(err)
	}
	huge := resource.NewQuantity(int64(st.Blocks)*st.Bsize+(1<<30), resource.BinarySI)
	createClaim(t, c, framework.Claim(ns, "too-big", class, huge.String()))
	warningEvent(t, c, ns, "too-big", "times -overcommit")
	assertNothingProvisioned(t, c, p, ns, "too-big")
	images, _ := os.ReadDir(filepath.Join(p.cfg.ExportDir, volume.StateDirName, "images"))
	if len(images) != 0 {
		t.Fatalf("images left behind: %v", images)
	}
}
