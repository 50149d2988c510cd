package ganesha

import (
	"fmt"
	"path/filepath"
)

// vfsPluginGlobs are where distribution packages put ganesha's FSAL VFS
// plugin (Debian: nfs-ganesha-vfs, multiarch; Fedora: lib64).
var vfsPluginGlobs = []string{
	"/usr/lib/*/ganesha/libfsalvfs.so",
	"/usr/lib64/ganesha/libfsalvfs.so",
	"/usr/lib/ganesha/libfsalvfs.so",
}

// findVFSPlugin returns the first FSAL VFS plugin matching globs. Without
// it ganesha starts but drops every export block ("Failed to load FSAL
// (VFS)"), which is far harder to read than a missing package.
func findVFSPlugin(globs []string) (string, error) {
	return findPlugin(globs, "libfsalvfs.so", "nfs-ganesha-vfs")
}

// cephPluginGlobs are where packages put FSAL CEPH, which CephFS exports
// need (Debian: nfs-ganesha-ceph).
var cephPluginGlobs = []string{
	"/usr/lib/*/ganesha/libfsalceph.so",
	"/usr/lib64/ganesha/libfsalceph.so",
	"/usr/lib/ganesha/libfsalceph.so",
}

// findPlugin returns the first of globs that matches, or an error naming
// the package to install.
func findPlugin(globs []string, file, pkg string) (string, error) {
	for _, g := range globs {
		if m, _ := filepath.Glob(g); len(m) > 0 {
			return m[0], nil
		}
	}
	return "", fmt.Errorf("ganesha's plugin %s not found in %v: install %s", file, globs, pkg)
}
