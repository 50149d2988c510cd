package volume

import (
	"fmt"
	"strings"
)

// maxNameBytes is the longest file name Linux filesystems accept.
const maxNameBytes = 255

// archivePrefix marks directories kept by onDelete=archive (and orphans that
// reconciliation found holding data). Nothing named so is ever reused or
// removed by the provisioner.
const archivePrefix = "archived-"

// DirectoryName is the name of a volume's directory under the export dir:
// <namespace>-<claim>-<pv>. The PV name (pvc-<claim UID>) makes it unique; the
// claim's namespace and name make it findable by a person. Characters other
// than [a-zA-Z0-9_.-] become '-', so the name is one safe path component, and
// the readable part is cut so the whole fits in 255 bytes.
func DirectoryName(namespace, claim, pvName string) string {
	pv := sanitize(pvName)
	prefix := sanitize(namespace + "-" + claim)
	if room := maxNameBytes - len(pv) - 1; len(prefix) > room {
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

// checkDirectoryName rejects a name that is not a single, visible path
// component. Names come back from PV annotations, which anyone allowed to
// edit PVs can change, so they are checked before every use.
func checkDirectoryName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("empty directory name")
	case len(name) > maxNameBytes:
		return fmt.Errorf("directory name %q is longer than %d bytes", name, maxNameBytes)
	case strings.HasPrefix(name, "."):
		return fmt.Errorf("directory name %q starts with a dot", name)
	case strings.ContainsAny(name, "/\x00"):
		return fmt.Errorf("directory name %q is not a single path component", name)
	}
	return nil
}

// PseudoPath is the NFS path clients mount, for NFSv4 and (with ganesha's
// mount_path_pseudo) NFSv3 alike.
func PseudoPath(dirName string) string { return "/" + dirName }
