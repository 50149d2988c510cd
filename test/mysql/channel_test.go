package mysql

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// cloneClient fetches one clone stream from addr with socat, with the given
// socat TLS options ("" = plain TCP), and returns what arrived.
func cloneClient(t *testing.T, addr, tlsOpts string) []byte {
	t.Helper()
	remote := "TCP:" + addr + ",connect-timeout=5"
	if tlsOpts != "" {
		remote = "OPENSSL:" + addr + ",connect-timeout=5," + tlsOpts
	}
	cmd := execCommand("socat", "-u", "-T", "20", remote, "STDOUT")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, io.Discard
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		_ = cmd.Process.Kill()
		<-done
		t.Errorf("clone client to %s did not finish", addr)
	}
	return out.Bytes()
}

// extract unpacks an xbstream and reports whether it is a complete backup.
func extract(t *testing.T, stream []byte) bool {
	t.Helper()
	dir := t.TempDir()
	cmd := execCommand("mbstream", "-x", "-C", dir)
	cmd.Stdin = bytes.NewReader(stream)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Logf("mbstream: %v: %s", err, out)
		return false
	}
	for _, f := range []string{"mariadb_backup_checkpoints", "xtrabackup_checkpoints"} {
		if b, err := os.ReadFile(filepath.Join(dir, f)); err == nil && strings.Contains(string(b), "full-backuped") {
			return true
		}
	}
	return false
}

func tlsOpts(crt, key, ca string) string {
	o := "cafile=" + ca + ",verify=1,commonname=mysql-clone"
	if crt != "" {
		o += ",cert=" + crt + ",key=" + key
	}
	return o
}

// checkCloneChannel attacks donor's clone port as a pod without the
// credential would, then checks that real clones still get through.
func checkCloneChannel(t *testing.T, c *cluster, donor *pod) {
	addr := donor.ip + ":3307"
	good := filepath.Join(c.root, "clone-cert")
	crt, key, ca := filepath.Join(good, "clone.crt"), filepath.Join(good, "clone.key"), filepath.Join(good, "clone.crt")
	// A certificate with the same name, not the Secret's.
	other := filepath.Join(t.TempDir(), "other")
	makeCloneCert(t, other)
	before := c.scan.backupCount(donor.name)
	streamed := func() int {
		b, _ := os.ReadFile(filepath.Join(donor.dir, "log", "agent.log"))
		return bytes.Count(b, []byte("streaming a backup"))
	}
	streamedBefore := streamed()

	t.Run("strangers get nothing and start no backup", func(t *testing.T) {
		cases := []struct{ name, opts string }{
			{"plain TCP", ""},
			{"TLS without a client certificate", tlsOpts("", "", ca)},
			{"TLS without a certificate, not verifying the donor", "verify=0"},
			{"TLS with a certificate the Secret did not issue", tlsOpts(filepath.Join(other, "clone.crt"), filepath.Join(other, "clone.key"), ca)},
			{"TLS with the right CA but a self-made key", tlsOpts(filepath.Join(other, "clone.crt"), filepath.Join(other, "clone.key"), filepath.Join(other, "clone.crt"))},
		}
		for _, tc := range cases {
			got := cloneClient(t, addr, tc.opts)
			t.Logf("%s: %d bytes", tc.name, len(got))
			if len(got) != 0 {
				t.Errorf("%s: received %d bytes from the clone port", tc.name, len(got))
			}
		}
		// A plain client that speaks first (as an HTTP probe would).
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = conn.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, _ := io.Copy(io.Discard, conn)
		_ = conn.Close()
		if n > 40 { // a TLS alert is a few bytes; a backup is megabytes
			t.Errorf("plain client that spoke first got %d bytes", n)
		}
		time.Sleep(500 * time.Millisecond)
		if n := c.scan.backupCount(donor.name) - before; n != 0 {
			t.Errorf("%d mariadb-backup processes started on %s for clients without the credential", n, donor.name)
		}
		if n := streamed() - streamedBefore; n != 0 {
			agentLog, _ := os.ReadFile(filepath.Join(donor.dir, "log", "agent.log"))
			t.Errorf("the donor streamed %d backups to strangers:\n%s", n, tail(string(agentLog), 2000))
		}
	})

	t.Run("bound to the pod address", func(t *testing.T) {
		for _, other := range []string{"127.0.0.1:3307", fmt.Sprintf("127.0.0.%d:3307", c.ipBase+9)} {
			if conn, err := net.DialTimeout("tcp", other, 2*time.Second); err == nil {
				_ = conn.Close()
				t.Errorf("the clone port answers on %s, not only on the pod address", other)
			}
		}
	})

	t.Run("idle connections do not block a real clone", func(t *testing.T) {
		var idle []net.Conn
		for i := 0; i < 3; i++ {
			conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			idle = append(idle, conn)
		}
		start := time.Now()
		stream := cloneClient(t, addr, tlsOpts(crt, key, ca))
		took := time.Since(start)
		if !extract(t, stream) {
			t.Fatalf("the real clone behind 3 idle connections got an incomplete stream (%d bytes)", len(stream))
		}
		// The donor drops the idle ones after its handshake timeout (2 s here).
		var dropped []string
		for _, conn := range idle {
			_ = conn.SetReadDeadline(time.Now().Add(15 * time.Second))
			_, err := conn.Read(make([]byte, 1))
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Error("an idle connection was still open 15 s later")
			}
			dropped = append(dropped, fmt.Sprint(err))
			_ = conn.Close()
		}
		t.Logf("FIGURE clone channel: a real clone behind 3 idle connections took %v (%.1f MB); idle connections dropped: %v",
			took.Round(time.Millisecond), float64(len(stream))/1e6, dropped)
	})

	t.Run("one stream at a time", func(t *testing.T) {
		n0 := c.scan.backupCount(donor.name)
		var wg sync.WaitGroup
		streams := make([][]byte, 2)
		for i := range streams {
			wg.Add(1)
			go func() {
				defer wg.Done()
				streams[i] = cloneClient(t, addr, tlsOpts(crt, key, ca))
			}()
		}
		wg.Wait()
		complete := 0
		for _, s := range streams {
			if extract(t, s) {
				complete++
			} else if len(s) != 0 {
				t.Errorf("a refused second client got %d bytes", len(s))
			}
		}
		if complete != 1 {
			t.Errorf("%d complete streams from two simultaneous clients; want exactly 1", complete)
		}
		if n := c.scan.backupCount(donor.name) - n0; n != 1 {
			t.Errorf("%d backups ran for two simultaneous clients; want 1", n)
		}
	})
	if n := c.scan.backupCount(donor.name) - before; n < 2 {
		t.Errorf("the process scan saw %d backups for the real clones: it would not see a stranger's either", n)
	}
}
