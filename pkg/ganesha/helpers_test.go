package ganesha

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nfs-provisioner/nfs-provisioner/test/nfsclient"
)

// needGanesha skips under -short: everything else in CI runs for real.
func needGanesha(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs a real ganesha.nfsd; skipped under -short")
	}
}

// freePorts returns n distinct loopback TCP ports that were free a moment
// ago. Never 2049: other servers on this machine may use it.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ls []net.Listener
	var ports []int
	for len(ports) < n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		p := l.Addr().(*net.TCPAddr).Port
		if p == 2049 || p == 20048 {
			continue
		}
		ports = append(ports, p)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func testConfig(t testing.TB, stateDir string, nfsv3 bool) Config {
	p := freePorts(t, 2)
	return Config{StateDir: stateDir, BindAddress: "127.0.0.1", NFSPort: p[0], MountdPort: p[1], NFSv3: nfsv3}
}

// startServer starts a server and stops it when the test ends.
func startServer(t testing.TB, cfg Config) *Server {
	t.Helper()
	needGanesha(t)
	s, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(testContext(t)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(context.Background()); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	return s
}

// exportDir makes a world-writable directory to export, so that squashed
// users can create files in it.
func exportDir(t testing.TB, root, name string) string {
	t.Helper()
	d := filepath.Join(root, name)
	if err := os.MkdirAll(d, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(d, 0o777); err != nil {
		t.Fatal(err)
	}
	return d
}

func target(s *Server, pseudo string, version int) nfsclient.Target {
	return nfsclient.Target{Host: "127.0.0.1", NFSPort: s.cfg.NFSPort, MountPort: s.cfg.MountdPort, Pseudo: pseudo, Version: version}
}

// eventually retries fn until it succeeds or the timeout passes.
func eventually(t testing.TB, timeout time.Duration, fn func() error) time.Duration {
	t.Helper()
	t0 := time.Now()
	var err error
	for time.Since(t0) < timeout {
		if err = fn(); err == nil {
			return time.Since(t0)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("still failing after %s: %v", timeout, err)
	return 0
}
