package ganesha

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// AccessType is the access a client gets to an export.
type AccessType string

// Squash is the ganesha Squash mode of an export.
type Squash string

const (
	AccessRW AccessType = "RW"
	AccessRO AccessType = "RO"

	NoRootSquash Squash = "no_root_squash"
	RootSquash   Squash = "root_squash"
	AllSquash    Squash = "all_squash"
)

// ErrConflict is wrapped by errors about an export that clashes with an
// active one (same ID with other content, or same Pseudo path).
var ErrConflict = errors.New("export conflict")

// ErrUnsupported is wrapped by an Update that cannot be done in place (a
// new path or pseudo path); remove and add the export instead.
var ErrUnsupported = errors.New("export change not possible in place")

// ErrInvalid is wrapped by every validation error, so callers can tell bad
// input (never retried) from a failing server (retried).
var ErrInvalid = errors.New("invalid export")

// Export is one NFS export of a directory.
type Export struct {
	ID        uint16     // Export_Id, 1..65535
	Path      string     // absolute directory on the server, or in the CephFS of FSAL
	Pseudo    string     // NFSv4 pseudo path; also the NFSv3 mount path (mount_path_pseudo = true)
	Access    AccessType // AccessRW (default when empty) or AccessRO
	Squash    Squash     // default RootSquash when empty
	Clients   []string   // rendered as a CLIENT block; empty or ["*"] means everyone
	SecType   []string   // default ["sys"]
	Protocols []int      // empty: the server's protocols (EXPORT_DEFAULTS)
	FSAL      FSAL       // zero value: VFS, a directory on this node
}

// FSAL names ganesha's backend of an export. The zero value (or Name VFS)
// serves a directory on this node. CEPH serves a path inside a CephFS,
// mounted by ganesha's libcephfs as cephx user UserID with key Secret: the
// MDS then confines every request to what that user's caps allow, whatever
// file handle a client sends.
type FSAL struct {
	Name       string // "", FSALVFS or FSALCeph
	UserID     string // CEPH: cephx id without "client."
	Secret     string // CEPH: cephx key; in root-only files only, never logged
	Filesystem string // CEPH: name of the CephFS
}

// FSAL names.
const (
	FSALVFS  = "VFS"
	FSALCeph = "CEPH"
)

// Local reports whether the export serves a directory of this node, which
// must exist for ganesha to serve it.
func (e Export) Local() bool { return e.FSAL.Name == "" || e.FSAL.Name == FSALVFS }

// String names the FSAL for logs and errors; never the secret.
func (f FSAL) String() string {
	if f.Name == "" || f.Name == FSALVFS {
		return FSALVFS
	}
	return fmt.Sprintf("%s fs=%s user=%s", f.Name, f.Filesystem, f.UserID)
}

// filesystemIDMajor is the fixed major half of every Filesystem_Id we render.
// The minor half is the export ID, so the fsid is unique per export, the same
// on every node (never derived from a device number), and can never equal the
// automatic pseudo root's 152.152.
const filesystemIDMajor = 100

// FilesystemID is the Filesystem_Id rendered for this export.
func (e Export) FilesystemID() string {
	return fmt.Sprintf("%d.%d", filesystemIDMajor, e.ID)
}

// Normalized returns e with defaults filled in, the form that is rendered,
// stored and compared.
func (e Export) Normalized() Export {
	n := e
	if n.Access == "" {
		n.Access = AccessRW
	}
	if n.Squash == "" {
		n.Squash = RootSquash
	}
	if len(n.Clients) == 0 || (len(n.Clients) == 1 && n.Clients[0] == "*") {
		n.Clients = nil
	} else {
		n.Clients = slices.Clone(n.Clients)
	}
	if len(n.SecType) == 0 {
		n.SecType = []string{"sys"}
	} else {
		n.SecType = slices.Clone(n.SecType)
	}
	if len(n.Protocols) == 0 {
		n.Protocols = nil
	} else {
		n.Protocols = slices.Clone(n.Protocols)
	}
	if n.FSAL.Name == "" {
		n.FSAL.Name = FSALVFS
	}
	return n
}

// SentinelExportID is the export ganesha creates first, before any volume's:
// an empty directory that admits no client. ganesha 4.3 lets the first
// export it creates accept file handles of every other filesystem it knows
// (test/isolation pins this), so that export must be one nobody can use.
// Volumes get IDs 1 to 65534.
const SentinelExportID = 65535

// sentinelPseudo cannot clash with a volume's pseudo path: volume names
// never start with a dot.
const sentinelPseudo = "/.sentinel"

// sentinelExport is the sentinel of the directory at path. Its only client
// is an address of TEST-NET-1 (RFC 5737), which no host has.
func sentinelExport(path string) Export {
	return Export{ID: SentinelExportID, Path: path, Pseudo: sentinelPseudo, Access: AccessRO, Squash: AllSquash, Clients: []string{"192.0.2.1"}}
}

// Validate checks every field against what can be rendered safely. The
// error wraps ErrInvalid and names the export and the offending field.
func (e Export) Validate() error {
	n := e.Normalized()
	if n.ID == SentinelExportID {
		return fmt.Errorf("%w %d %q: Export_Id %d is the sentinel's; use 1..%d", ErrInvalid, e.ID, e.Path, SentinelExportID, SentinelExportID-1)
	}
	return n.validate()
}

// validate checks e, which is normalised, whatever its ID.
func (n Export) validate() error {
	e := n
	var errs []error
	if n.ID == 0 {
		errs = append(errs, errors.New("Export_Id 0 is the pseudo root; use 1..65534"))
	}
	if err := validateDir("path", n.Path); err != nil {
		errs = append(errs, err)
	}
	if err := validateDir("pseudo", n.Pseudo); err != nil {
		errs = append(errs, err)
	} else if n.Pseudo == "/" {
		errs = append(errs, errors.New(`pseudo "/" is the pseudo root`))
	}
	if n.Access != AccessRW && n.Access != AccessRO {
		errs = append(errs, fmt.Errorf("access %q: want RW or RO", n.Access))
	}
	switch n.Squash {
	case NoRootSquash, RootSquash, AllSquash:
	default:
		errs = append(errs, fmt.Errorf("squash %q: want %s, %s or %s", n.Squash, NoRootSquash, RootSquash, AllSquash))
	}
	for _, c := range n.Clients {
		if err := validateClient(c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := validateSecTypes(n.SecType); err != nil {
		errs = append(errs, err)
	}
	if err := validateProtocols(n.Protocols); err != nil {
		errs = append(errs, err)
	}
	if err := validateFSAL(n.FSAL); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w %d %q: %w", ErrInvalid, e.ID, e.Path, errors.Join(errs...))
	}
	return nil
}

// Equal reports whether a and b describe the same export once defaults are
// applied. Order of Clients/SecType/Protocols matters not.
func (e Export) Equal(o Export) bool {
	a, b := e.Normalized(), o.Normalized()
	return a.ID == b.ID && a.Path == b.Path && a.Pseudo == b.Pseudo &&
		a.Access == b.Access && a.Squash == b.Squash && a.FSAL == b.FSAL &&
		sameSet(a.Clients, b.Clients) && sameSet(a.SecType, b.SecType) && sameSet(a.Protocols, b.Protocols)
}

// String is short and meant for errors and logs.
func (e Export) String() string {
	n := e.Normalized()
	var b strings.Builder
	fmt.Fprintf(&b, "export %d %s as %s (%s, %s", n.ID, n.Path, n.Pseudo, n.Access, n.Squash)
	if len(n.Clients) > 0 {
		fmt.Fprintf(&b, ", clients %s", strings.Join(n.Clients, ","))
	}
	if len(n.Protocols) > 0 {
		fmt.Fprintf(&b, ", protocols %v", n.Protocols)
	}
	fmt.Fprintf(&b, ", sec %s", strings.Join(n.SecType, ","))
	if !n.Local() {
		fmt.Fprintf(&b, ", fsal %s", n.FSAL)
	}
	b.WriteString(")")
	return b.String()
}

func sameSet[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	for _, x := range b {
		if !slices.Contains(a, x) {
			return false
		}
	}
	return true
}
