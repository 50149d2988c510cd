package ganesha

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFindVFSPlugin(t *testing.T) {
	dir := t.TempDir()
	globs := []string{filepath.Join(dir, "*", "ganesha", "libfsalvfs.so")}
	if _, err := findVFSPlugin(globs); err == nil || !strings.Contains(err.Error(), "install nfs-ganesha-vfs") {
		t.Fatalf("missing plugin: %v", err)
	}
	plugin := filepath.Join(dir, "x86_64-linux-gnu", "ganesha", "libfsalvfs.so")
	if err := os.MkdirAll(filepath.Dir(plugin), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(plugin, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := findVFSPlugin(globs); err != nil || got != plugin {
		t.Fatalf("found %q, %v; want %q", got, err, plugin)
	}
}
