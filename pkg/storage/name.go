package storage

import (
	"fmt"
	"strings"
)

// MaxNameBytes is the longest file name Linux filesystems accept, and so the
// longest volume name.
const MaxNameBytes = 255

// ArchivePrefix starts the name of every archived volume. No volume name
// starts with it, so an archive is never reused, listed or removed.
const ArchivePrefix = "archived-"

// CheckName rejects a volume name that is not a single, visible path
// component, or that could be mistaken for an archive. Names come back from
// PV annotations, which anyone allowed to edit PVs can change, so every
// backend checks them before every use.
func CheckName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("empty volume name")
	case len(name) > MaxNameBytes:
		return fmt.Errorf("volume name %q is longer than %d bytes", name, MaxNameBytes)
	case strings.HasPrefix(name, "."):
		return fmt.Errorf("volume name %q starts with a dot", name)
	case strings.ContainsAny(name, "/\x00"):
		return fmt.Errorf("volume name %q is not a single path component", name)
	}
	return nil
}

// ArchiveName is the name an archive of volume name gets: archived-<name>,
// cut to fit, with suffix (a time stamp, when the plain name is taken)
// appended.
func ArchiveName(name, suffix string) string {
	target := ArchivePrefix + name
	return target[:min(len(target), MaxNameBytes-len(suffix))] + suffix
}
