package chaos

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/ganesha"
	"github.com/nfs-provisioner/nfs-provisioner/test/framework"
)

// node is the provisioner as a kubelet runs it: when it dies, it is started
// again on the same store and ports.
type node struct {
	t    testing.TB
	spec framework.ProvisionerSpec
	logs string

	mu     sync.Mutex
	proc   *framework.Process
	starts int
}

func newNode(t testing.TB, c *framework.Cluster, exportDir string, args ...string) *node {
	t.Helper()
	ports, err := framework.FreePorts(3)
	if err != nil {
		t.Fatal(err)
	}
	n := &node{t: t, logs: t.TempDir(), spec: framework.ProvisionerSpec{
		Name: "example.com/nfs-chaos", Namespace: "default", ExportDir: exportDir, Kubeconfig: c.Kubeconfig,
		NFSPort: ports[0], MountdPort: ports[1], HTTPPort: ports[2], Args: args,
	}}
	if err := n.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.stop(); err != nil {
			t.Errorf("stop provisioner: %v", err)
		}
	})
	return n
}

// start launches the binary and waits for /readyz.
func (n *node) start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.starts++
	spec := n.spec
	spec.LogFile = filepath.Join(n.logs, fmt.Sprintf("provisioner-%d.log", n.starts))
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	p, err := framework.StartProvisioner(ctx, &spec)
	if err != nil {
		return err
	}
	n.proc = p
	return nil
}

func (n *node) stop() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc == nil {
		return nil
	}
	return n.proc.Stop(framework.DefaultStopGrace)
}

// killProvisioner SIGKILLs the provisioner (its ganesha goes with it) and
// starts it again, as a kubelet would.
func (n *node) killProvisioner() error {
	n.mu.Lock()
	p := n.proc
	n.mu.Unlock()
	if err := syscall.Kill(p.PID(), syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill provisioner %d: %w", p.PID(), err)
	}
	<-p.Exited()
	return n.start()
}

// killGanesha SIGKILLs the ganesha.nfsd the provisioner supervises; the
// provisioner has to notice and start it again.
func (n *node) killGanesha() error {
	n.mu.Lock()
	parent := n.proc.PID()
	n.mu.Unlock()
	pid, err := descendant(parent, "ganesha.nfsd")
	if err != nil {
		return err
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill ganesha.nfsd %d: %w", pid, err)
	}
	return nil
}

// alive reports whether the provisioner process is still running.
func (n *node) alive() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	select {
	case <-n.proc.Exited():
		return false
	default:
		return true
	}
}

func (n *node) tail() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.proc.Tail(80)
}

func (n *node) exports(ctx context.Context) ([]ganesha.Export, error) {
	return framework.ProvisionerExports(ctx, n.spec.ExportDir)
}

// descendant finds the process named comm among parent's descendants, by
// walking /proc: the test signals only processes it started, by PID.
func descendant(parent int, comm string) (int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	parents := map[int]int{}
	comms := map[int]string{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may hold spaces and parentheses.
		s := string(stat)
		open, close := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || close < open {
			continue
		}
		f := strings.Fields(s[close+1:])
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		parents[pid], comms[pid] = ppid, s[open+1:close]
	}
	for pid, name := range comms {
		if name != comm {
			continue
		}
		for p := parents[pid]; p > 1; p = parents[p] {
			if p == parent {
				return pid, nil
			}
		}
	}
	return 0, fmt.Errorf("no %s below pid %d", comm, parent)
}
