package e2e

import (
	"bytes"
	"encoding/binary"
	"os"
	"path"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/volume"
	"github.com/nfs-provisioner/nfs-provisioner/test/framework"
	"github.com/nfs-provisioner/nfs-provisioner/test/framework/cephbed"
	"github.com/nfs-provisioner/nfs-provisioner/test/nfsclient"
)

// cephHandle is an NFSv3 file handle of ganesha 4.3's FSAL_CEPH, as read
// from real handles (checked below against the inode numbers CephFS gives):
//
//	0x43 | flags | export ID (2 bytes) | opaque length (24)
//	opaque: inode number | snapshot ID (head: CEPH_NOSNAP) | filesystem ID,
//	        each 8 bytes, little-endian
//	zeros to a multiple of 4 bytes
type cephHandle struct {
	Header           []byte
	Ino, Snap, FSCID uint64
}

func parseCephHandle(t testing.TB, fh []byte) cephHandle {
	t.Helper()
	if len(fh) < 5+24 || fh[0] != 0x43 || fh[4] != 24 {
		t.Fatalf("not a ganesha 4.3 CEPH handle: %x", fh)
	}
	op := fh[5 : 5+24]
	return cephHandle{Header: slices.Clone(fh[:4]), Ino: binary.LittleEndian.Uint64(op[0:]),
		Snap: binary.LittleEndian.Uint64(op[8:]), FSCID: binary.LittleEndian.Uint64(op[16:])}
}

func (h cephHandle) bytes() []byte {
	out := append(slices.Clone(h.Header), 24)
	out = binary.LittleEndian.AppendUint64(out, h.Ino)
	out = binary.LittleEndian.AppendUint64(out, h.Snap)
	out = binary.LittleEndian.AppendUint64(out, h.FSCID)
	for len(out)%4 != 0 {
		out = append(out, 0)
	}
	return out
}

func inode(t testing.TB, p string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// TestCephFSForgedHandles: a client of one CephFS volume forges file
// handles for every other place in the filesystem (inode numbers in CephFS
// are small and easy to guess): another volume's root and files, the
// subvolume directories around both volumes (which hold the mgr's .meta),
// the group, /volumes and the filesystem root. Sent under its own export,
// none of them reaches anything: ganesha mounts each volume as its own
// cephx identity, confined to the volume's path, and the MDS refuses every
// other inode. Climbing out by name ("..") stays in the volume too.
func TestCephFSForgedHandles(t *testing.T) {
	e := newCephTestEnv(t)
	c, ns, p := e.c, e.ns, e.p
	class := cephClass(t, e, ns+"-ceph", map[string]string{"uid": "0", "gid": "0", "mode": "0777"})
	mnt := e.bed.MountFuse(t, "/", cephbed.Client{})
	paths := map[string]string{}
	pvs := map[string]string{}
	for _, n := range []string{"a", "b"} {
		e.cephClaim(t, framework.Claim(ns, n, class, "8Mi"))
		pv := waitBound(t, c, ns, n)
		pvs[n] = pv.Spec.NFS.Path
		paths[n] = e.subvolumePath(t, pv.Annotations[volume.AnnDirectory])
		if err := os.WriteFile(filepath.Join(mnt, paths[n], "marker-"+n), []byte(n), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	target := nfsclient.Target{Host: "127.0.0.1", NFSPort: p.NFSPort, MountPort: p.MountPort, Pseudo: pvs["a"], Version: 3}
	r, err := nfsclient.DialRaw(t.Context(), target)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	own := parseCephHandle(t, r.Root)
	t.Logf("root handle of %s: %x (ino %#x, snap %#x, fscid %d)", pvs["a"], r.Root, own.Ino, own.Snap, own.FSCID)
	if own.Ino != inode(t, filepath.Join(mnt, paths["a"])) {
		t.Fatalf("handle %x does not carry the volume root's inode %#x", r.Root, inode(t, filepath.Join(mnt, paths["a"])))
	}
	if !bytes.Equal(own.bytes(), r.Root) {
		t.Fatalf("re-encoding gives %x, not %x", own.bytes(), r.Root)
	}
	// A forged handle of a place the volume holds does work: the attack
	// below forges handles the server reads.
	if st, _, err := r.GetAttr(cephHandle{Header: own.Header, Ino: inode(t, filepath.Join(mnt, paths["a"], "marker-a")), Snap: own.Snap, FSCID: own.FSCID}.bytes()); err != nil || st != 0 {
		t.Fatalf("a handle made for a file of the volume itself: %s %v", nfsclient.StatusName(st), err)
	}

	baseA, baseB := path.Dir(paths["a"]), path.Dir(paths["b"])
	places := []struct{ name, path, marker string }{
		{"volume b's root", paths["b"], "marker-b"},
		{"volume b's file", path.Join(paths["b"], "marker-b"), ""},
		{"volume b's subvolume directory", baseB, ".meta"},
		{"volume a's own subvolume directory", baseA, ".meta"},
		{"the subvolume group", path.Dir(baseA), path.Base(baseB)},
		{"/volumes", path.Dir(path.Dir(baseA)), path.Base(path.Dir(baseA))},
		{"the filesystem root", "/", "volumes"},
	}
	for _, pl := range places {
		fh := cephHandle{Header: own.Header, Ino: inode(t, filepath.Join(mnt, pl.path)), Snap: own.Snap, FSCID: own.FSCID}.bytes()
		ga, _, err := r.GetAttr(fh)
		if err != nil {
			t.Fatal(err)
		}
		lk, rd := uint32(0), uint32(0)
		var names []string
		if pl.marker != "" {
			if lk, _, err = r.Lookup(fh, pl.marker); err != nil {
				t.Fatal(err)
			}
			if rd, names, err = r.ReadDirPlus(fh); err != nil {
				t.Fatal(err)
			}
		}
		if pl.marker == "" {
			t.Logf("forged handle %x for %s: GETATTR %s", fh, pl.name, nfsclient.StatusName(ga))
		} else {
			t.Logf("forged handle %x for %s: GETATTR %s, LOOKUP %q %s, READDIRPLUS %s %v", fh, pl.name,
				nfsclient.StatusName(ga), pl.marker, nfsclient.StatusName(lk), nfsclient.StatusName(rd), names)
		}
		if ga == 0 || (pl.marker != "" && (lk == 0 || rd == 0)) {
			t.Errorf("a forged handle under volume a's export reached %s", pl.name)
		}
	}
	// By name: ".." of the volume's root is the root itself.
	st, up, err := r.Lookup(r.Root, "..")
	if err != nil {
		t.Fatal(err)
	}
	if st == 0 {
		_, names, err := r.ReadDirPlus(up)
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(names, ".meta") || !slices.Contains(names, "marker-a") {
			t.Errorf(`".." of volume a's root lists %v`, names)
		}
	}
}
