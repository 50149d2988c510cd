package isolation

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/ganesha"
	"github.com/nfs-provisioner/nfs-provisioner/pkg/storage"
	"github.com/nfs-provisioner/nfs-provisioner/test/nfsclient"
)

// vfsHandle is an NFSv3 file handle of ganesha 4.3's FSAL_VFS, as read
// from real handles (see TestForgedHandles):
//
//	0x43 | flags | export ID (2 bytes) | opaque length
//	opaque: VFS flags | fsid (16 bytes: the filesystem UUID; 8 bytes when
//	        ganesha found no UUID, as for the host's disk here) |
//	        kernel handle type (1 byte) | kernel handle (name_to_handle_at)
//	zeros to a multiple of 4 bytes
type vfsHandle struct {
	Header []byte // version, flags, export ID
	Flags  byte   // VFS flags: which fsid type follows
	FSID   []byte
	Type   byte
	KH     []byte
}

func parseHandle(t *testing.T, fh []byte, khLen int) vfsHandle {
	t.Helper()
	if len(fh) < 5 || fh[0] != 0x43 || len(fh) != (5+int(fh[4])+3)/4*4 || int(fh[4]) < khLen+2 {
		t.Fatalf("not a ganesha 4.3 VFS handle: %x", fh)
	}
	op := fh[5 : 5+int(fh[4])]
	ti := len(op) - 1 - khLen
	return vfsHandle{Header: slices.Clone(fh[:4]), Flags: op[0], FSID: slices.Clone(op[1:ti]), Type: op[ti], KH: slices.Clone(op[ti+1:])}
}

func (h vfsHandle) bytes() []byte {
	out := append(slices.Clone(h.Header), byte(1+len(h.FSID)+1+len(h.KH)), h.Flags)
	out = append(out, h.FSID...)
	out = append(append(out, h.Type), h.KH...)
	// Padded with zeros to a multiple of 4 bytes, as ganesha sends them.
	for len(out)%4 != 0 {
		out = append(out, 0)
	}
	return out
}

// superblockUUID reads a filesystem image's UUID.
func superblockUUID(t *testing.T, image string, kind storage.Kind) []byte {
	t.Helper()
	f, err := os.Open(image)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	off := int64(1024 + 0x68) // ext4 s_uuid
	if kind == storage.XFS {
		off = 32 // sb_uuid
	}
	buf := make([]byte, 16)
	if _, err := f.ReadAt(buf, off); err != nil {
		t.Fatal(err)
	}
	return buf
}

// place is somewhere a forged handle might lead: its kernel handle, the
// fsid ganesha would give its filesystem, and a name that only it holds.
type place struct {
	name   string
	path   string
	fsid   []byte
	flags  byte
	marker string
}

// forgery is the outcome of one run of the attack: for each export the
// client mounted, the places some forged handle reached.
type forgery struct {
	reached map[string]map[string]bool // from export -> place -> reached
	// sentinelRefused: forged handles naming the sentinel export's ID got
	// no answer but an error.
	sentinelRefused bool
}

// attack sets up a store with XFS volumes a and b, ext4 volumes e and f,
// directory volumes d1 and d2 and a sentinel directory s, exports those
// named in order (in that order, into a freshly started ganesha), and then
// forges handles from every export this client is admitted to (a, e, d1)
// towards every place. a, e and d1 admit this client; b, f, d2 and s admit
// only an address that is not ours. All without root squash: the worst
// case.
func attack(t *testing.T, order []string) forgery {
	b, store := newBackend(t)
	s, cfg := startGanesha(t)
	ctx := testContext(t)

	fsVols := map[string]storage.Kind{"a": storage.XFS, "b": storage.XFS, "e": storage.Ext4, "f": storage.Ext4}
	paths := map[string]string{}
	for _, n := range []string{"a", "b", "e", "f"} {
		v, _, err := b.Create(ctx, storage.Spec{Name: n, Kind: fsVols[n], Size: 1, Mode: 0o777})
		if err != nil {
			t.Fatal(err)
		}
		paths[n] = v.Path
	}
	for _, n := range []string{"d1", "d2", "s"} {
		paths[n] = filepath.Join(store, n)
		if err := os.Mkdir(paths[n], 0o777); err != nil {
			t.Fatal(err)
		}
	}
	for n, p := range paths {
		if err := os.WriteFile(filepath.Join(p, "marker-"+n), []byte(n), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(store, "marker-store"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	ids := map[string]uint16{"a": 1, "b": 2, "e": 3, "f": 4, "d1": 5, "d2": 6, "s": 7}
	for _, n := range order {
		e := ganesha.Export{ID: ids[n], Path: paths[n], Pseudo: "/" + n, Squash: ganesha.NoRootSquash}
		if n == "b" || n == "f" || n == "d2" || n == "s" {
			e.Clients = []string{"192.0.2.1"}
		}
		if err := s.Exports().Add(ctx, e); err != nil {
			t.Fatal(err)
		}
		if len(e.Clients) > 0 {
			_, err := nfsclient.DialRaw(ctx, target(cfg, e.Pseudo))
			var me *nfsclient.MountError
			if !errors.As(err, &me) {
				t.Fatalf("MOUNT %s by a client its export does not admit: %v", e.Pseudo, err)
			}
		}
	}

	sessions := map[string]*nfsclient.Raw{}
	handles := map[string]vfsHandle{}
	var froms []string
	for _, n := range []string{"a", "e", "d1"} {
		if !slices.Contains(order, n) {
			continue
		}
		froms = append(froms, n)
		r, err := nfsclient.DialRaw(ctx, target(cfg, "/"+n))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(r.Close)
		sessions[n] = r
		kh := kernelHandle(t, paths[n])
		h := parseHandle(t, r.Root, len(kh.Bytes()))
		t.Logf("root handle of /%s: %x (kernel handle type %d: %x)", n, r.Root, kh.Type(), kh.Bytes())
		// The handle is what this test forges: the kernel's handle verbatim,
		// and for a filesystem volume its UUID.
		if !bytes.Equal(h.KH, kh.Bytes()) || int(h.Type) != int(kh.Type()) {
			t.Fatalf("/%s: handle %x does not end in kernel handle %d:%x", n, r.Root, kh.Type(), kh.Bytes())
		}
		// This also catches a stale UUID: libblkid's cache, where ganesha
		// gets it, once gave a reused loop device its previous image's.
		if k, ok := fsVols[n]; ok {
			if uuid := superblockUUID(t, filepath.Join(store, ".nfs-provisioner", "images", n), k); !bytes.Equal(h.FSID, uuid) {
				t.Fatalf("/%s: fsid %x in its handle is not its filesystem UUID %x", n, h.FSID, uuid)
			}
		}
		if !bytes.Equal(h.bytes(), r.Root) {
			t.Fatalf("re-encoding /%s's handle gives %x, not %x", n, h.bytes(), r.Root)
		}
		handles[n] = h
	}
	// The host disk's fsid as ganesha writes it (no UUID found: statfs's
	// f_fsid, two little-endian words); checked against d1's real handle.
	var st unix.Statfs_t
	if err := unix.Statfs(store, &st); err != nil {
		t.Fatal(err)
	}
	disk := vfsHandle{Flags: 0x44, FSID: binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(nil, uint32(st.Fsid.Val[0])), uint32(st.Fsid.Val[1]))}
	if d1, ok := handles["d1"]; ok && (d1.Flags != disk.Flags || !bytes.Equal(d1.FSID, disk.FSID)) {
		t.Fatalf("the disk's fsid in d1's handle is %02x %x, not %02x %x", d1.Flags, d1.FSID, disk.Flags, disk.FSID)
	}
	images := filepath.Join(store, ".nfs-provisioner", "images")
	places := []place{
		{"volume b", paths["b"], superblockUUID(t, filepath.Join(images, "b"), storage.XFS), 0x43, "marker-b"},
		{"volume f", paths["f"], superblockUUID(t, filepath.Join(images, "f"), storage.Ext4), 0x43, "marker-f"},
		{"directory volume d2", paths["d2"], disk.FSID, disk.Flags, "marker-d2"},
		{"the store root", store, disk.FSID, disk.Flags, "marker-store"},
		{"the image directory", images, disk.FSID, disk.Flags, "b"},
		{"/", "/", disk.FSID, disk.Flags, "etc"},
	}

	out := forgery{reached: map[string]map[string]bool{}}
	for _, from := range froms {
		r, own := sessions[from], handles[from]
		out.reached[from] = map[string]bool{}
		for _, p := range places {
			kh := kernelHandle(t, p.path)
			variants := []struct {
				name string
				h    vfsHandle
			}{
				{"kernel handle", vfsHandle{Header: own.Header, Flags: own.Flags, FSID: own.FSID, Type: byte(kh.Type()), KH: kh.Bytes()}},
				{"fsid+kernel handle", vfsHandle{Header: own.Header, Flags: p.flags, FSID: p.fsid, Type: byte(kh.Type()), KH: kh.Bytes()}},
				{"fsid", vfsHandle{Header: own.Header, Flags: p.flags, FSID: p.fsid, Type: own.Type, KH: own.KH}},
			}
			for _, v := range variants {
				fh := v.h.bytes()
				ga, _, err := r.GetAttr(fh)
				if err != nil {
					t.Fatal(err)
				}
				lk, _, err := r.Lookup(fh, p.marker)
				if err != nil {
					t.Fatal(err)
				}
				rd, names, err := r.ReadDirPlus(fh)
				if err != nil {
					t.Fatal(err)
				}
				reached := lk == 0 || (rd == 0 && slices.Contains(names, p.marker))
				if reached {
					out.reached[from][p.name] = true
				}
				t.Logf("from /%s to %s, forged %s %x: GETATTR %s, LOOKUP %s %s, READDIRPLUS %s %s",
					from, p.name, v.name, fh, nfsclient.StatusName(ga), p.marker, nfsclient.StatusName(lk), nfsclient.StatusName(rd), summary(names))
				// From a filesystem volume, nothing but its own
				// directories ever lists.
				if _, fsVol := fsVols[from]; fsVol && rd == 0 && !slices.Contains(names, "marker-"+from) && !reached {
					t.Errorf("a forged handle (%s) from /%s listed a directory that is not its own: %v", v.name, from, names)
				}
			}
		}
	}
	// The sentinel's export reaches everything, but admits no client: a
	// handle forged under its export ID is refused before any FSAL sees it.
	if slices.Contains(order, "s") {
		kh := kernelHandle(t, store)
		hdr := slices.Clone(handles[froms[0]].Header)
		binary.BigEndian.PutUint16(hdr[2:], ids["s"])
		fh := vfsHandle{Header: hdr, Flags: disk.Flags, FSID: disk.FSID, Type: byte(kh.Type()), KH: kh.Bytes()}.bytes()
		ga, _, gerr := sessions[froms[0]].GetAttr(fh)
		rd, names, rerr := sessions[froms[0]].ReadDirPlus(fh)
		t.Logf("under the sentinel's export ID: GETATTR %s %v, READDIRPLUS %s %v %v", nfsclient.StatusName(ga), gerr, nfsclient.StatusName(rd), names, rerr)
		out.sentinelRefused = (ga != 0 || gerr != nil) && (rd != 0 || rerr != nil)
	}
	return out
}

// TestForgedHandles is the attack of the security audit (a client forges
// NFSv3 handles from the root handle of an export it may mount), run
// against filesystem volumes and directory volumes on a real ganesha 4.3.
// A forged handle keeps the mounted export's ID and carries another
// place's kernel handle (name_to_handle_at), its filesystem's fsid, or
// both; the test sends GETATTR, LOOKUP of a name only that place holds,
// and READDIRPLUS.
func TestForgedHandles(t *testing.T) {
	needRoot(t)
	fsOnly := []string{"volume b", "volume f", "the store root", "the image directory", "/", "directory volume d2"}

	// The provisioner's layout: the first export ganesha makes is a
	// sentinel that admits no client (see the first-export case below).
	// No forged handle from a filesystem volume (XFS a, ext4 e) reaches
	// another volume, the store, its images or "/". From a directory
	// volume, forging reaches every directory of the store's filesystem:
	// the store root, the other directory volumes, the image directory
	// (and through it the raw images of filesystem volumes), and "/"
	// (this store is not a filesystem of its own), but never the inside of
	// a filesystem volume.
	t.Run("sentinel-first-mixed-store", func(t *testing.T) {
		got := attack(t, []string{"s", "a", "b", "e", "f", "d1", "d2"})
		for _, from := range []string{"a", "e"} {
			for _, p := range fsOnly {
				if got.reached[from][p] {
					t.Errorf("ESCAPE: a forged handle from filesystem volume /%s reached %s", from, p)
				}
			}
		}
		want := map[string]bool{"directory volume d2": true, "the store root": true, "the image directory": true, "/": true}
		if !maps.Equal(got.reached["d1"], want) {
			t.Errorf("from directory volume /d1 forged handles reached %v; the documented answer is %v", got.reached["d1"], want)
		}
		if !got.sentinelRefused {
			t.Error("a handle forged under the sentinel's export ID was answered")
		}
	})
	t.Run("sentinel-first-filesystem-volumes-only", func(t *testing.T) {
		got := attack(t, []string{"s", "a", "b", "e", "f"})
		for _, from := range []string{"a", "e"} {
			if len(got.reached[from]) > 0 {
				t.Errorf("ESCAPE: forged handles from filesystem volume /%s reached %v", from, got.reached[from])
			}
		}
		if !got.sentinelRefused {
			t.Error("a handle forged under the sentinel's export ID was answered")
		}
	})
	// ganesha 4.3 lets the first export it creates accept handles of every
	// other filesystem it knows (the host's disk, holding the store and
	// "/"), whatever its own filesystem; an export made later does not.
	// Seen here before pkg/ganesha rendered its sentinel export first in
	// ganesha.conf: then /a, the first volume exported, reached the store
	// root, the image directory, / and d2. Now the sentinel is always
	// ganesha's first export, so the first volume's reaches nothing.
	t.Run("filesystem-volume-first", func(t *testing.T) {
		got := attack(t, []string{"a", "b", "e", "f"})
		for _, from := range []string{"a", "e"} {
			if len(got.reached[from]) > 0 {
				t.Errorf("ESCAPE: forged handles from filesystem volume /%s reached %v", from, got.reached[from])
			}
		}
	})
}

func summary(names []string) string {
	if len(names) > 6 {
		return fmt.Sprintf("%v… (%d names)", names[:6], len(names))
	}
	return fmt.Sprint(names)
}
