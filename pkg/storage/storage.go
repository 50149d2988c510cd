// Package storage is the seam between pkg/volume, which decides what volumes
// exist, and the backends, which keep them: a directory in the store, a
// filesystem image on a loop device, or a CephFS subvolume.
//
// A backend is mechanical. It never decides that a volume should go: it
// creates, opens, closes, removes, archives, grows and clones exactly the
// volume it is asked for. Ownership, policy and reconciliation live in
// pkg/volume.
//
// Every method is idempotent, safe for concurrent calls on different names,
// and leaves nothing behind when it fails: a failed Create or Clone removes
// what that call made, never what an earlier call made. Calls for one name
// are serialised by the caller.
package storage

import (
	"context"
	"errors"
	"os"
	"time"
)

// Kind says how a volume is stored. It is recorded on the PV, so that a
// volume is always handled by the backend that made it.
type Kind string

const (
	// Directory volumes are directories of the store's filesystem: one trust
	// domain, no enforced size. The default, and what the first release made.
	Directory Kind = "directory"
	// XFS and Ext4 volumes are image files in the store, each attached to a
	// loop device and mounted: a filesystem of their own, with an enforced size.
	XFS  Kind = "xfs"
	Ext4 Kind = "ext4"
	// CephFS volumes are subvolumes of a CephFS the user already runs, each
	// with a quota and a cephx identity confined to it, served by ganesha's
	// FSAL_CEPH: nothing of them is on this node.
	CephFS Kind = "cephfs"
)

// Spec is what a new volume must be.
type Spec struct {
	// Name is the volume's name in the store: one path component, unique,
	// checked by pkg/volume. It is also the NFS pseudo path without the '/'.
	Name string
	Kind Kind
	// Size is the requested size in bytes. Backends that enforce sizes round
	// it up to what they can make (XFS: at least 300 MiB) and report the real
	// size in Volume.Size.
	Size int64
	// Owner and permission bits of the volume's root directory.
	UID, GID int
	Mode     os.FileMode
}

// Volume is a volume as the store has it, ready to be exported.
type Volume struct {
	Name string
	Kind Kind
	// Path is the absolute path ganesha exports: the volume's root directory
	// (for a filesystem volume, the root of its mounted filesystem; for a
	// CephFS volume, its path inside the CephFS named in FSAL).
	Path string
	// Size is the most the volume can hold, in bytes; 0 when not enforced.
	Size int64
	// FSAL says how ganesha reaches Path. The zero value is a local
	// directory (ganesha's FSAL_VFS).
	FSAL FSAL
}

// FSAL names the ganesha backend that serves a volume and what it needs to
// reach it. The zero value is FSAL_VFS: Path is a directory on this node.
type FSAL struct {
	// Name is "" (a local directory) or "CEPH".
	Name string
	// User is the cephx identity ganesha mounts the volume as, without the
	// "client." prefix; Secret is its key. The key is a credential: it is
	// written only to root-only files and never logged.
	User, Secret string
	// Filesystem is the CephFS the volume is in.
	Filesystem string
}

// FSALCeph is FSAL.Name of CephFS volumes.
const FSALCeph = "CEPH"

// String names the FSAL for logs, without the secret.
func (f FSAL) String() string {
	if f.Name == "" {
		return "VFS"
	}
	return f.Name + "(fs=" + f.Filesystem + ",user=" + f.User + ")"
}

// Usage is how much of the store volumes take or may take.
type Usage struct {
	Total int64 // bytes of the store's filesystem
	Free  int64 // bytes an unprivileged writer can still store there
	// Allocated is the sum of the sizes this backend has promised: for
	// filesystem volumes, the apparent size of every image in the store,
	// kept and archived ones included (they can still fill up). 0 for
	// backends that promise nothing.
	Allocated int64
}

// Progress is told how far a long copy has come, in bytes.
type Progress func(done, total int64)

// Backend keeps volumes of one or more kinds.
type Backend interface {
	// Kinds are the kinds this backend makes.
	Kinds() []Kind
	// Available is nil when this backend can make volumes here, or an error
	// that names what is missing (a capability, a device, a tool), so that a
	// claim for it gets a clear event and start-up can log what it can make.
	Available() error

	// Create makes the volume and leaves it ready to serve. When the volume
	// exists already (a repeated call), it is made ready and returned with
	// created false.
	Create(ctx context.Context, spec Spec) (v Volume, created bool, err error)
	// Open makes an existing volume ready to serve again, for instance after
	// a restart or a reboot (find or attach its loop device, check and mount
	// its filesystem), and returns it. It never creates or formats anything:
	// a volume the store does not hold gives an error wrapping ErrNotFound.
	// It is also called once a new volume (Create, Clone) is exported: a
	// backend may finish there what it put off for the volume's first reads.
	Open(ctx context.Context, name string) (Volume, error)
	// Close stops the volume being ready to serve (unmount, detach) and
	// keeps its data. Closing a closed or missing volume succeeds. The
	// caller has removed its export first.
	Close(ctx context.Context, name string) error
	// Remove deletes the volume's data for good, closing it first. A
	// missing volume is removed already.
	Remove(ctx context.Context, name string) error
	// Archive closes the volume and keeps its data under a new name that no
	// volume will ever have, which it returns ("" when there was nothing to
	// archive).
	Archive(ctx context.Context, name string, now time.Time) (string, error)
	// List names every volume the store holds, open or not, except archives.
	List(ctx context.Context) ([]string, error)
	// Usage reports the store's size and what this backend has promised.
	Usage(ctx context.Context) (Usage, error)

	// Expand grows the volume to at least size bytes and returns its new
	// size; a volume already that large is left alone, and a smaller size
	// is ErrUnsupported (no shrinking). In Online mode the volume keeps being
	// served while it grows; when that is impossible here (ext4 without
	// CAP_SYS_RESOURCE) Expand changes nothing and returns an error wrapping
	// ErrOfflineRequired, and the caller may unexport the volume and call
	// again in Offline mode, then Open and export it again.
	Expand(ctx context.Context, name string, size int64, mode ExpandMode) (int64, error)
	// Clone creates dst holding the data of volume src, as Create does, then
	// grows it to dst.Size if that is larger. The source stays served; for a
	// filesystem volume it is frozen for the moment of the copy, so the clone
	// is crash-consistent. progress, when not nil, is told how the copy goes.
	Clone(ctx context.Context, src string, dst Spec, progress Progress) (v Volume, created bool, err error)
}

// ExpandMode says whether Expand may take the volume offline.
type ExpandMode int

const (
	// Online grows a volume that is being served, or fails with
	// ErrOfflineRequired.
	Online ExpandMode = iota
	// Offline may unmount the volume to grow it; the caller has unexported it
	// and exports it again afterwards.
	Offline
)

var (
	// ErrNotFound: the store holds no volume of that name.
	ErrNotFound = errors.New("volume not found in the store")
	// ErrUnsupported: this backend cannot do that (e.g. shrink).
	ErrUnsupported = errors.New("not supported")
	// ErrOfflineRequired: growing needs the volume unexported and unmounted.
	ErrOfflineRequired = errors.New("the volume must be offline to grow")
	// ErrNoSpace: the store has no room for that.
	ErrNoSpace = errors.New("not enough room in the store")
	// ErrUnavailable: this backend cannot work on this node (a capability, a
	// device or a tool is missing); the error names what.
	ErrUnavailable = errors.New("volume kind unavailable here")
)
