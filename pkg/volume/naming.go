package volume

import (
	"strings"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/storage"
)

// DirectoryName is the name of a volume's directory under the export dir:
// <namespace>-<claim>-<pv>. The PV name (pvc-<claim UID>) makes it unique; the
// claim's namespace and name make it findable by a person. Characters other
// than [a-zA-Z0-9_.-] become '-', so the name is one safe path component, and
// the readable part is cut so the whole fits in 255 bytes.
func DirectoryName(namespace, claim, pvName string) string {
	pv := sanitize(pvName)
	prefix := sanitize(namespace + "-" + claim)
	if room := storage.MaxNameBytes - len(pv) - 1; len(prefix) > room {
		prefix = prefix[:max(room, 0)]
	}
	if prefix == "" {
		return pv
	}
	return prefix + "-" + pv
}

func sanitize(s string) string {
	b := []byte(s)
	for i, c := range b {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.'
		if !ok {
			b[i] = '-'
		}
	}
	// A leading dot would hide the directory or make it "." or "..".
	return strings.TrimLeft(string(b), ".")
}

// boundTo reports whether volume name was made for PV pv: DirectoryName
// always ends with the PV's name, and PV names are unique. A PV that names
// another PV's volume (made by hand, copied, or restored under a new name)
// fails this, or the ledger's check where the suffix happens to match.
func boundTo(name, pv string) bool {
	s := sanitize(pv)
	return name == s || strings.HasSuffix(name, "-"+s)
}

// PseudoPath is the NFS path clients mount, for NFSv4 and (with ganesha's
// mount_path_pseudo) NFSv3 alike.
func PseudoPath(dirName string) string { return "/" + dirName }
