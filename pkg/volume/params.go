package volume

import (
	"fmt"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/storage"
	"os"
	"sort"
	"strconv"
	"strings"
)

// Class parameters a StorageClass of this provisioner may set. Any other
// parameter is an error, so that a typo never silently falls back to a
// default.
const (
	ParamUID          = "uid"          // owner of the volume's directory (default 0)
	ParamGID          = "gid"          // group of the directory; also the PV's supplemental group
	ParamMode         = "mode"         // permission bits of the directory, octal (default 0777)
	ParamRootSquash   = "rootSquash"   // "true": map client root to nobody (default false)
	ParamOnDelete     = "onDelete"     // delete | retain | archive (default delete)
	ParamMountOptions = "mountOptions" // legacy comma list, added to the class's mountOptions
	ParamFSType       = "fsType"       // xfs or ext4: a filesystem of its own per volume; cephfs: a CephFS subvolume; absent: a directory
)

// OnDelete says what happens to a volume's data when its PV is deleted.
type OnDelete string

const (
	OnDeleteDelete  OnDelete = "delete"  // remove the directory
	OnDeleteRetain  OnDelete = "retain"  // keep the directory where it is
	OnDeleteArchive OnDelete = "archive" // rename it to archived-<name>
)

// Params are the parsed parameters of a StorageClass.
type Params struct {
	UID, GID     int
	GIDSet       bool
	Mode         os.FileMode
	RootSquash   bool
	OnDelete     OnDelete
	MountOptions []string
	// Kind is how volumes of the class are stored.
	Kind storage.Kind
}

// defaultMode is the upstream provisioner's: any pod user can write. README
// documents the least-privilege alternative (uid/gid of the workload, 0770).
const defaultMode os.FileMode = 0o777

// ParseParams validates StorageClass parameters. Keys match case-insensitively,
// as upstream's do, so classes written for it keep working.
func ParseParams(raw map[string]string) (Params, error) {
	p := Params{Mode: defaultMode, OnDelete: OnDeleteDelete, Kind: storage.Directory}
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Strings(keys) // the first error reported does not depend on map order
	for _, key := range keys {
		value := raw[key]
		var err error
		switch strings.ToLower(key) {
		case strings.ToLower(ParamUID):
			p.UID, err = parseID(value)
		case strings.ToLower(ParamGID):
			// "none" is upstream's spelling of the default.
			if value != "none" {
				p.GID, err = parseID(value)
				p.GIDSet = err == nil
			}
		case strings.ToLower(ParamMode):
			p.Mode, err = parseMode(value)
		case strings.ToLower(ParamRootSquash):
			p.RootSquash, err = strconv.ParseBool(value)
			if err != nil {
				err = fmt.Errorf("want true or false")
			}
		case strings.ToLower(ParamOnDelete):
			p.OnDelete, err = parseOnDelete(value)
		case strings.ToLower(ParamMountOptions):
			p.MountOptions, err = parseMountOptions(value)
		case strings.ToLower(ParamFSType):
			p.Kind, err = parseFSType(value)
		default:
			return Params{}, fmt.Errorf("unknown StorageClass parameter %q (known: %s)", key,
				strings.Join([]string{ParamUID, ParamGID, ParamMode, ParamRootSquash, ParamOnDelete, ParamMountOptions, ParamFSType}, ", "))
		}
		if err != nil {
			return Params{}, fmt.Errorf("StorageClass parameter %s=%q: %w", key, value, err)
		}
	}
	return p, nil
}

func parseID(s string) (int, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	// 2^32-1 is (uid_t)-1, which chown reads as "leave unchanged".
	if err != nil || n >= 1<<32-1 {
		return 0, fmt.Errorf("want a number from 0 to 4294967294")
	}
	return int(n), nil
}

func parseMode(s string) (os.FileMode, error) {
	n, err := strconv.ParseUint(s, 8, 32)
	if err != nil || n > 0o7777 {
		return 0, fmt.Errorf("want octal permission bits such as 0770 (at most 07777)")
	}
	// os.FileMode keeps setuid/setgid/sticky in high bits of its own.
	mode := os.FileMode(n & 0o777)
	if n&0o4000 != 0 {
		mode |= os.ModeSetuid
	}
	if n&0o2000 != 0 {
		mode |= os.ModeSetgid
	}
	if n&0o1000 != 0 {
		mode |= os.ModeSticky
	}
	return mode, nil
}

func parseOnDelete(s string) (OnDelete, error) {
	switch OnDelete(s) {
	case OnDeleteDelete, OnDeleteRetain, OnDeleteArchive:
		return OnDelete(s), nil
	}
	return "", fmt.Errorf("want %s, %s or %s", OnDeleteDelete, OnDeleteRetain, OnDeleteArchive)
}

func parseFSType(s string) (storage.Kind, error) {
	switch k := storage.Kind(strings.ToLower(s)); k {
	case storage.XFS, storage.Ext4, storage.CephFS:
		return k, nil
	}
	return "", fmt.Errorf("want %s, %s or %s (leave fsType out for a directory volume)", storage.XFS, storage.Ext4, storage.CephFS)
}

func parseMountOptions(s string) ([]string, error) {
	var opts []string
	for _, o := range strings.Split(s, ",") {
		o = strings.TrimSpace(o)
		if o == "" {
			continue
		}
		if strings.ContainsAny(o, " \t\n\"'") {
			return nil, fmt.Errorf("mount option %q has a space or quote", o)
		}
		opts = append(opts, o)
	}
	return opts, nil
}
