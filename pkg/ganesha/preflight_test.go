package ganesha

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestPreflightPassesWithTheDataPathsNeeds(t *testing.T) {
	// The tests run as root, as the container does.
	if err := preflight(t.TempDir(), true); err != nil {
		t.Fatalf("preflight on a plain directory with netbase installed: %v", err)
	}
}

// TestPreflightNamesMissingDACReadSearch drops CAP_DAC_READ_SEARCH from the
// effective set of one OS thread and runs the check there: the kernel then
// refuses open_by_handle_at exactly as it does in a container without the
// capability.
func TestPreflightNamesMissingDACReadSearch(t *testing.T) {
	dir := t.TempDir()
	done := make(chan error, 1)
	go func() {
		// Never unlocked: the thread, with its reduced capabilities, ends
		// with this goroutine instead of going back to the scheduler.
		runtime.LockOSThread()
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var data [2]unix.CapUserData
		if err := unix.Capget(&hdr, &data[0]); err != nil {
			done <- err
			return
		}
		if data[0].Effective&(1<<unix.CAP_DAC_READ_SEARCH) == 0 {
			done <- os.ErrPermission // the test needs root's capabilities
			return
		}
		data[0].Effective &^= 1 << unix.CAP_DAC_READ_SEARCH
		if err := unix.Capset(&hdr, &data[0]); err != nil {
			done <- err
			return
		}
		done <- preflight(dir, false)
	}()
	err := <-done
	if err == nil || !strings.Contains(err.Error(), "missing capability DAC_READ_SEARCH") {
		t.Fatalf("preflight without CAP_DAC_READ_SEARCH: %v; want an error naming the capability", err)
	}
	t.Log(err)
}

func TestPreflightNamesNetbase(t *testing.T) {
	dir := t.TempDir()
	noSunrpc := filepath.Join(dir, "services")
	if err := os.WriteFile(noSunrpc, []byte("# sunrpc 111/tcp\nssh 22/tcp\nportmap 111/tcp\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	withSunrpc := filepath.Join(dir, "services.ok")
	if err := os.WriteFile(withSunrpc, []byte("ssh\t\t22/tcp\nsunrpc\t\t111/tcp\t\tportmapper\t# RPC 4.0 portmapper\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		want string // "" = no error
	}{
		{filepath.Join(dir, "absent"), "install netbase"},
		{noSunrpc, "install netbase"},
		{withSunrpc, ""},
		{servicesFile, ""}, // the host's: the tests need netbase too
	} {
		err := checkServices(tc.path)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.path, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v; want an error saying %q", tc.path, err, tc.want)
		}
	}
}

func TestPreflightNotADirectory(t *testing.T) {
	if err := preflight(filepath.Join(t.TempDir(), "missing"), false); err == nil {
		t.Fatal("preflight of a missing store passed")
	}
}
