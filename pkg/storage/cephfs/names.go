package cephfs

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/storage"
)

// Snapshots this backend makes start with snapPrefix; Remove takes away
// only those, and refuses a subvolume with anyone else's.
const (
	snapPrefix        = "nfs-provisioner-"
	cloneSnapPrefix   = snapPrefix + "clone-"
	archiveSnapPrefix = snapPrefix + "archive-"
	// archiveStampLayout names an archive; it sorts in time order.
	archiveStampLayout = "20060102T150405.000000000"
)

// checkName rejects what is not a volume name this backend may touch: a
// name storage.CheckName rejects, an archive's name, a name that the ceph
// command would read as an option, or one with characters the mgr volumes
// module refuses ([A-Za-z0-9_.-] only). Names come from PV annotations:
// checked before every use.
func checkName(name string) error {
	if err := storage.CheckName(name); err != nil {
		return err
	}
	if strings.HasPrefix(name, storage.ArchivePrefix) {
		return fmt.Errorf("volume name %q starts with %q, kept for archives", name, storage.ArchivePrefix)
	}
	return checkCephName("volume name", name)
}

// checkCephName holds a name to what the mgr volumes module accepts for
// subvolume and group names, and keeps it from looking like an option.
func checkCephName(what, name string) error {
	if name == "" {
		return fmt.Errorf("%s is empty", what)
	}
	if strings.HasPrefix(name, "-") {
		return fmt.Errorf("%s %q starts with '-'", what, name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("%s %q: character %q at %d is not one of [A-Za-z0-9_.-]", what, name, c, i)
		}
	}
	return nil
}

// userID is the cephx id (without "client.") of volume name's identity:
// the subvolume group, then the subvolume's name, so `ceph auth ls` shows
// whose it is.
func (b *Backend) userID(name string) string { return b.opts.Group + "." + b.sub(name) }

// maxSub is the longest subvolume name of the group: the mgr volumes module
// keeps a file /volumes/_<group>:<subvolume>.meta, whose name must fit in
// 255 bytes.
func (b *Backend) maxSub() int { return storage.MaxNameBytes - len("_:.meta") - len(b.opts.Group) }

// sub is the subvolume of volume name: the name itself when it fits, else
// its head, '_' and a hash of the whole (volume names made from claims
// never hold '_'). The full name is then kept in the subvolume's metadata
// (nameKey), for List. sub(sub(x)) == sub(x).
func (b *Backend) sub(name string) string {
	limit := b.maxSub()
	if len(name) <= limit {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	return name[:limit-17] + "_" + hex.EncodeToString(sum[:8])
}

// shortened reports whether subvolume s may be a name sub shortened.
func (b *Backend) shortened(s string) bool {
	n := len(s)
	if n != b.maxSub() || s[n-17] != '_' {
		return false
	}
	_, err := hex.DecodeString(s[n-16:])
	return err == nil
}

// nameKey is the subvolume metadata key that holds the full name of a
// volume whose subvolume name is shortened.
const nameKey = "nfs-provisioner-volume"

// entity is the cephx entity of volume name.
func (b *Backend) entity(name string) string { return "client." + b.userID(name) }

// cloneSnap is the snapshot of the source that clone dst is made from: one
// per destination, so a repeated Clone finds its own.
func cloneSnap(dst string) string {
	sum := sha256.Sum256([]byte(dst))
	return cloneSnapPrefix + hex.EncodeToString(sum[:8])
}

// archiveSnap is the snapshot an archive made at t is cloned from; the
// archive's name follows from it, so a repeated Archive finds its target.
func archiveSnap(t time.Time) string {
	return archiveSnapPrefix + t.UTC().Format(archiveStampLayout)
}

// archiveTarget is the name of the archive of volume name that snapshot
// snap (an archiveSnap) is cloned to: archived-<name>-<time>, cut to fit.
func archiveTarget(name, snap string) string {
	return storage.ArchiveName(name, "-"+strings.TrimPrefix(snap, archiveSnapPrefix))
}

// modeString is the octal mode the mgr volumes module takes, with the
// setuid, setgid and sticky bits.
func modeString(m os.FileMode) string {
	bits := uint32(m.Perm())
	if m&os.ModeSetuid != 0 {
		bits |= 0o4000
	}
	if m&os.ModeSetgid != 0 {
		bits |= 0o2000
	}
	if m&os.ModeSticky != 0 {
		bits |= 0o1000
	}
	return strconv.FormatUint(uint64(bits), 8)
}
