package cephbed

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nfs-provisioner/nfs-provisioner/test/framework"
)

// Client is a cephx identity: Name without the "client." prefix, the
// keyring file that holds it, and its secret (what ganesha's FSAL CEPH
// takes as Secret_Access_Key).
type Client struct {
	Name    string
	Keyring string
	Key     string
}

var clientName = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

// Authorize makes (or returns) client.<name> with read-write access to
// path of FSName only (`ceph fs authorize`: mds 'allow rw path=<path>',
// osd 'allow rw tag cephfs data=cephfs', mon 'allow r'), and writes its
// keyring into the bed's directory.
func (c *Cluster) Authorize(ctx context.Context, name, path string) (Client, error) {
	if !clientName.MatchString(name) {
		return Client{}, fmt.Errorf("cephbed: client name %q: want letters, digits, _ . -", name)
	}
	keyring, err := c.Ceph(ctx, "fs", "authorize", FSName, "client."+name, path, "rw")
	if err != nil {
		return Client{}, fmt.Errorf("cephbed: %w", err)
	}
	cl := Client{Name: name, Keyring: filepath.Join(c.Dir, "keys", name+".keyring")}
	for _, line := range strings.Split(string(keyring), "\n") {
		if k, ok := strings.CutPrefix(strings.TrimSpace(line), "key = "); ok {
			cl.Key = k
		}
	}
	if cl.Key == "" {
		return Client{}, fmt.Errorf("cephbed: fs authorize %s: no key in %q", name, keyring)
	}
	if err := os.WriteFile(cl.Keyring, keyring, 0o600); err != nil {
		return Client{}, fmt.Errorf("cephbed: %w", err)
	}
	return cl, nil
}

// fuseReadyTimeout bounds how long ceph-fuse may take to mount.
const fuseReadyTimeout = 60 * time.Second

// MountFuse mounts subpath of FSName ("/" for the root) as who with
// ceph-fuse, in a directory of its own, and returns the mount point. On
// cleanup it is unmounted and ceph-fuse stopped, even when the test failed.
// A zero who means client.admin.
func (c *Cluster) MountFuse(t testing.TB, subpath string, who Client) string {
	t.Helper()
	dir, err := c.mountFuse(t, subpath, who)
	if err != nil {
		t.Fatalf("cephbed: %v", err)
	}
	return dir
}

// mountFuse is MountFuse returning the error, for tests that expect a
// mount to be refused. Cleanup is registered whatever happens.
func (c *Cluster) mountFuse(t testing.TB, subpath string, who Client) (string, error) {
	if who.Name == "" {
		who = c.Admin()
	}
	dir, err := os.MkdirTemp(filepath.Join(c.Dir, "fuse"), "mnt-")
	if err != nil {
		return "", err
	}
	p, err := framework.Launch(framework.ProcessSpec{
		Name: "ceph-fuse " + subpath,
		Path: "ceph-fuse",
		// -f: in the foreground, so that the process we supervise is the
		// one holding the mount; --client_fs: the file system by name.
		Args:    []string{"-f", "-c", c.conf, "--id", who.Name, "--keyring", who.Keyring, "--client_fs", FSName, "-r", subpath, dir},
		Dir:     c.Dir,
		LogFile: dir + ".out",
	})
	if err != nil {
		_ = os.Remove(dir)
		return "", err
	}
	t.Cleanup(func() {
		// Unmounting ends ceph-fuse; a still-busy mount is detached.
		if isMountPoint(dir) {
			if err := unix.Unmount(dir, 0); err != nil {
				t.Logf("cephbed: unmount %s: %v; detaching it", dir, err)
				if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
					t.Errorf("cephbed: detach %s: %v", dir, err)
				}
			}
		}
		if err := p.Stop(10 * time.Second); err != nil {
			t.Errorf("cephbed: %v", err)
		}
		if t.Failed() {
			t.Logf("cephbed: last lines of %s:\n%s", p.LogFile, p.Tail(20))
		}
		if !isMountPoint(dir) {
			_ = os.Remove(dir)
			_ = os.Remove(p.LogFile)
		}
	})
	deadline := time.Now().Add(fuseReadyTimeout)
	for !isMountPoint(dir) {
		select {
		case <-p.Exited():
			return "", fmt.Errorf("ceph-fuse of %s as client.%s exited (%v) before mounting:\n%s", subpath, who.Name, p.ExitErr(), p.Tail(20))
		default:
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("ceph-fuse of %s as client.%s did not mount within %v:\n%s", subpath, who.Name, fuseReadyTimeout, p.Tail(20))
		}
		time.Sleep(50 * time.Millisecond)
	}
	return dir, nil
}

// isMountPoint reports whether dir is a mount point in our mount namespace.
func isMountPoint(dir string) bool {
	points, err := framework.MountsUnder(dir)
	if err != nil {
		return false
	}
	for _, p := range points {
		if p == dir {
			return true
		}
	}
	return false
}

// unmountAll detaches every mount below dir (the ceph-fuse mounts a dead
// test binary left; their ceph-fuse died with it).
func unmountAll(dir string) error {
	points, err := framework.MountsUnder(dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range points {
		errs = append(errs, unix.Unmount(p, unix.MNT_DETACH))
	}
	return errors.Join(errs...)
}

// Evict evicts, and so blocklists for an hour, the MDS sessions of FSName
// that match every filter, e.g. "auth_name=nfsvol1" (no "client."),
// "id=4152" or "client_metadata.uuid=ganesha-<nodeid>-0001". A ganesha
// 4.3 that exits, even cleanly, leaves its session open for 300 s, holding
// caps: a test that checks data through ceph-fuse after stopping one must
// evict it first, or block until the MDS closes the session.
func (c *Cluster) Evict(ctx context.Context, filters ...string) error {
	if len(filters) == 0 {
		return fmt.Errorf("cephbed: evict: no filter (that would evict every client)")
	}
	args := append([]string{"tell", "mds." + FSName + ":0", "client", "evict"}, filters...)
	if _, err := c.Ceph(ctx, args...); err != nil {
		return fmt.Errorf("cephbed: %w", err)
	}
	return nil
}
