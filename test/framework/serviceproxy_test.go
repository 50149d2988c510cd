package framework

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// echoBackend answers every line on host:port with name and the line, and
// serves its readiness from ready.
func echoBackend(t *testing.T, name, host string, port int) (*atomic.Bool, string) {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					fmt.Fprintf(c, "%s %s\n", name, sc.Text())
				}
			}()
		}
	}()
	var ready atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(srv.Close)
	return &ready, srv.URL + "/readyz"
}

func ask(c net.Conn, line string) (string, error) {
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := fmt.Fprintln(c, line); err != nil {
		return "", err
	}
	return bufio.NewReader(c).ReadString('\n')
}

// TestServiceProxy: new connections go to the ready backend and follow
// readiness; an established connection stays with its backend, as with
// kube-proxy; with no ready backend, connections are refused.
func TestServiceProxy(t *testing.T) {
	ports, err := FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	port := ports[0]
	readyA, urlA := echoBackend(t, "a", "127.0.0.2", port)
	readyB, urlB := echoBackend(t, "b", "127.0.0.3", port)
	p, err := StartServiceProxy("127.0.0.4", []int{port}, Backend{Host: "127.0.0.2", ReadyURL: urlA}, Backend{Host: "127.0.0.3", ReadyURL: urlB})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	addr := net.JoinHostPort("127.0.0.4", strconv.Itoa(port))
	through := func() (string, error) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return "", err
		}
		defer c.Close()
		return ask(c, "hi")
	}
	waitFor := func(want string) {
		t.Helper()
		Eventually(t, 5*time.Second, "the proxy forwarding to "+want, func() (bool, error) {
			got, _ := through()
			return got == want, nil
		})
	}
	if got, err := through(); err == nil {
		t.Fatalf("forwarded %q with no ready backend", got)
	}
	readyA.Store(true)
	waitFor("a hi\n")
	held, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if got, err := ask(held, "x"); err != nil || got != "a x\n" {
		t.Fatalf("held connection: %q %v", got, err)
	}
	readyA.Store(false)
	readyB.Store(true)
	waitFor("b hi\n")
	if p.Current() == nil || p.Current().Host != "127.0.0.3" {
		t.Errorf("Current %+v, want b", p.Current())
	}
	if got, err := ask(held, "y"); err != nil || got != "a y\n" {
		t.Errorf("the held connection left its backend: %q %v", got, err)
	}
}

// TestSignalTree: a process and its descendants are signalled, by PID.
func TestSignalTree(t *testing.T) {
	cmd := exec.Command("sh", "-c", "sleep 60 & sleep 60 & wait")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var tree []int
	Eventually(t, 5*time.Second, "the shell's two children", func() (bool, error) {
		var err error
		tree, err = ProcessTree(cmd.Process.Pid)
		return len(tree) == 3, err
	})
	if tree[0] != cmd.Process.Pid {
		t.Errorf("tree %v does not start with the root", tree)
	}
	if _, err := SignalTree(cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-done
	for _, pid := range tree[1:] {
		Eventually(t, 5*time.Second, fmt.Sprintf("child %d gone", pid), func() (bool, error) {
			// Reparented to init once the shell died; gone or a zombie.
			return !running(pid), nil
		})
	}
}

// running reports whether pid exists and is not a zombie.
func running(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(data), ')')
	return i >= 0 && i+2 < len(data) && data[i+2] != 'Z'
}
