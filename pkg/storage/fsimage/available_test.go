package fsimage

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/storage"
)

func TestAvailableHere(t *testing.T) {
	needRoot(t)
	b, _ := newTestBackend(t, "")
	if err := b.Available(); err != nil {
		t.Fatalf("Available as root with the tools installed: %v", err)
	}
}

// availableIn runs Available in a child process under wrap (setpriv) and
// returns what it printed.
func availableIn(t *testing.T, env []string, wrap ...string) string {
	t.Helper()
	args := append(wrap, os.Args[0], "-test.run=^$")
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(append(os.Environ(), childModeEnv+"=available"), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %v\n%s", args, err, out)
	}
	return string(out)
}

// TestAvailableWithoutCapSysAdmin: a provisioner started without
// CAP_SYS_ADMIN (as the least-privilege deployment runs it) says so.
func TestAvailableWithoutCapSysAdmin(t *testing.T) {
	needRoot(t)
	out := availableIn(t, nil, "setpriv", "--inh-caps=-sys_admin", "--bounding-set=-sys_admin", "--")
	if !strings.Contains(out, "AVAILABLE") || !strings.Contains(out, "CAP_SYS_ADMIN") {
		t.Errorf("Available without CAP_SYS_ADMIN: %q", out)
	}
	// With it (the same wrapper, nothing dropped): available.
	if out := availableIn(t, nil, "setpriv", "--inh-caps=-sys_resource", "--"); !strings.Contains(out, "AVAILABLE <nil>") {
		t.Errorf("Available with CAP_SYS_ADMIN: %q", out)
	}
}

// TestAvailableWithoutTools: a node without xfsprogs and e2fsprogs is told
// which packages are missing.
func TestAvailableWithoutTools(t *testing.T) {
	needRoot(t)
	out := availableIn(t, []string{"PATH=" + t.TempDir()})
	for _, want := range []string{"mkfs.xfs", "xfsprogs", "resize2fs", "e2fsprogs"} {
		if !strings.Contains(out, want) {
			t.Errorf("Available without tools: %q does not name %s", out, want)
		}
	}
	b := &Backend{opts: Options{Kinds: []storage.Kind{storage.XFS}}}
	t.Setenv("PATH", t.TempDir())
	if err := b.Available(); !errors.Is(err, storage.ErrUnavailable) || strings.Contains(err.Error(), "e2fsprogs") {
		t.Errorf("an XFS-only backend without tools: %v", err)
	}
}
