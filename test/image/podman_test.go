//go:build image

package image

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"github.com/nfs-provisioner/nfs-provisioner/test/framework"
)

// runtimeDefaultCapabilities is what containerd and Docker give a container
// that asks for nothing more (podman's own default set is smaller, so the
// tests name every one).
var runtimeDefaultCapabilities = []string{
	"CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID",
	"SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE",
}

// podmanNetwork is podman's default bridge: each container gets its own
// network namespace on it, as a pod does on a node.
const podmanNetwork = "podman"

// imageName is the image `make image` built; IMAGE overrides it. A missing
// image fails the test: test-image builds it first.
func imageName(t testing.TB) string {
	t.Helper()
	name := os.Getenv("IMAGE")
	if name == "" {
		name = "localhost/nfs-provisioner:dev"
	}
	if _, err := podman(t.Context(), "image", "exists", name); err != nil {
		t.Fatalf("image %s is not there (build it with `make image`): %v", name, err)
	}
	return name
}

// podman runs podman and returns its standard output; the error carries
// standard error.
func podman(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "podman", args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("podman %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(string(out)), nil
}

// bridge returns the default network's gateway (the host's address on the
// bridge) and its subnet.
func bridge(t testing.TB) (net.IP, *net.IPNet) {
	t.Helper()
	out, err := podman(t.Context(), "network", "inspect", podmanNetwork, "--format", "{{range .Subnets}}{{.Gateway}} {{.Subnet}}{{end}}")
	if err != nil {
		t.Fatal(err)
	}
	gw, subnet, ok := strings.Cut(out, " ")
	_, ipnet, err := net.ParseCIDR(subnet)
	if !ok || net.ParseIP(gw) == nil || err != nil {
		t.Fatalf("podman network %s: gateway and subnet %q", podmanNetwork, out)
	}
	return net.ParseIP(gw).To4(), ipnet
}

// containerIP picks an address in the upper half of the bridge's subnet,
// where podman's allocator (which starts at the bottom) rarely is. POD_IP
// must be known before the container starts, as the downward API knows it.
func containerIP(t testing.TB, subnet *net.IPNet) net.IP {
	t.Helper()
	ones, bits := subnet.Mask.Size()
	if bits != 32 || ones > 24 {
		t.Fatalf("subnet %s: want an IPv4 /24 or larger", subnet)
	}
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	size := uint32(1) << (32 - ones)
	off := size/2 + binary.BigEndian.Uint32(b[:])%(size/2-2) + 1
	ip := make(net.IP, 4)
	binary.BigEndian.PutUint32(ip, binary.BigEndian.Uint32(subnet.IP.To4())+off)
	return ip
}

// apiKubeconfig writes a kubeconfig with which a container on the bridge
// reaches the test control plane: the apiserver listens on loopback only, so
// a proxy on the host's bridge address forwards to it, and the TLS server
// name stays "localhost", which the serving certificate names. The proxy
// stops with the test.
func apiKubeconfig(t testing.TB, c *framework.Cluster, gateway net.IP) string {
	t.Helper()
	u, err := url.Parse(c.RESTConfig.Host)
	if err != nil {
		t.Fatal(err)
	}
	// IP_FREEBIND: CNI creates the bridge (and the gateway address) only when
	// the first container attaches, possibly after this listener.
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_IP, syscall.IP_FREEBIND, 1)
		})
		return errors.Join(err, serr)
	}}
	ln, err := lc.Listen(t.Context(), "tcp4", net.JoinHostPort(gateway.String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	done := make(chan struct{})
	t.Cleanup(func() {
		close(done)
		ln.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				forward(in, u.Host, done)
			}()
		}
	}()
	cfg := rest.CopyConfig(c.RESTConfig)
	cfg.Host = "https://" + ln.Addr().String()
	cfg.ServerName = "localhost"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := c.WriteKubeconfig(cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

func forward(in net.Conn, target string, done <-chan struct{}) {
	defer in.Close()
	out, err := net.DialTimeout("tcp", target, 5*time.Second)
	if err != nil {
		return
	}
	defer out.Close()
	copied := make(chan struct{}, 2)
	go func() { io.Copy(out, in); copied <- struct{}{} }()
	go func() { io.Copy(in, out); copied <- struct{}{} }()
	select {
	case <-copied:
	case <-done:
	}
}

// containerSpec is one `podman run` of the image.
type containerSpec struct {
	Image     string
	IP        net.IP
	ExportDir string   // host directory at /export
	Caps      []string // exactly these; every other is dropped
	Args      []string // after the image's entrypoint
	Extra     []string // more podman run options
}

type container struct {
	name string
	ip   net.IP
}

// runContainer starts the image detached and removes it when the test ends,
// whatever happened. It stops only the container it named.
func runContainer(t testing.TB, spec containerSpec) *container {
	t.Helper()
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("nfsprov-test-%x", b)
	args := []string{"run", "--detach", "--name", name,
		"--network", podmanNetwork, "--ip", spec.IP.String(),
		"--cap-drop", "ALL", "--cap-add", strings.Join(spec.Caps, ","),
		"--env", "POD_IP=" + spec.IP.String(),
		"--volume", spec.ExportDir + ":/export",
	}
	args = append(append(args, spec.Extra...), spec.Image)
	args = append(args, spec.Args...)
	if _, err := podman(t.Context(), args...); err != nil {
		t.Fatal(err)
	}
	ctr := &container{name: name, ip: spec.IP}
	t.Cleanup(func() {
		if t.Failed() {
			logs, _ := podman(context.Background(), "logs", "--tail", "60", name)
			t.Logf("last log lines of %s:\n%s", name, logs)
		}
		if _, err := podman(context.Background(), "rm", "--force", "--time", "0", name); err != nil {
			t.Errorf("remove container: %v", err)
		}
	})
	return ctr
}

// logs returns the container's whole log (stdout and stderr).
func (c *container) logs(t testing.TB) string {
	t.Helper()
	cmd := exec.Command("podman", "logs", c.name)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("podman logs %s: %v\n%s", c.name, err, out)
	}
	return string(out)
}

// wait returns the container's exit code once it has exited, or an error
// after timeout.
func (c *container) wait(ctx context.Context, timeout time.Duration) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "podman", "wait", c.name).Output()
	if err != nil {
		return 0, fmt.Errorf("podman wait %s: %w", c.name, err)
	}
	return strconv.Atoi(strings.TrimSpace(string(out)))
}

// running reports whether the container still runs.
func (c *container) running(ctx context.Context) bool {
	out, err := podman(ctx, "inspect", "--format", "{{.State.Running}}", c.name)
	return err == nil && out == "true"
}
