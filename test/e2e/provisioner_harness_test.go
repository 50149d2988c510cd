package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/ganesha"
	"github.com/nfs-provisioner/nfs-provisioner/pkg/volume"
	"github.com/nfs-provisioner/nfs-provisioner/test/framework"
)

// provisionerConfig says how to run one provisioner in a test.
type provisionerConfig struct {
	Name        string            // -provisioner; default example.com/nfs-<namespace>
	Namespace   string            // POD_NAMESPACE
	ExportDir   string            // default a fresh temp dir
	Kubeconfig  string            // default the cluster's admin kubeconfig
	ExtraArgs   []string          // more flags
	Env         map[string]string // more environment
	NFSVersions string            // default 3,4
	Wrap        []string          // a command the binary runs under, e.g. setpriv
	Binary      string            // default the binary built from this checkout
}

// testProvisioner is one running provisioner with its embedded ganesha, on
// loopback ports of its own.
type testProvisioner struct {
	t          testing.TB
	cfg        provisionerConfig
	NFSPort    int
	MountPort  int
	httpPort   int
	proc       *framework.Process
	logFile    string
	generation int
}

func startProvisioner(t testing.TB, c *framework.Cluster, cfg provisionerConfig) *testProvisioner {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = "example.com/nfs-" + cfg.Namespace
	}
	if cfg.ExportDir == "" {
		cfg.ExportDir = shortTempDir(t)
	}
	if cfg.Kubeconfig == "" {
		cfg.Kubeconfig = c.Kubeconfig
	}
	ports, err := framework.FreePorts(3)
	if err != nil {
		t.Fatal(err)
	}
	p := &testProvisioner{t: t, cfg: cfg, NFSPort: ports[0], MountPort: ports[1], httpPort: ports[2]}
	framework.UnmountUnderOnCleanup(t, cfg.ExportDir) // runs after the stop below
	p.start()
	t.Cleanup(func() { p.stop() })
	return p
}

// shortTempDir is a temporary directory with a short path: the store holds
// ganesha's D-Bus socket, whose path must fit in 108 bytes, which a
// t.TempDir() named after a long test name does not.
func shortTempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

// start runs the binary and waits until /readyz answers.
func (p *testProvisioner) start() {
	p.t.Helper()
	if err := p.tryStart(); err != nil {
		p.t.Fatal(err)
	}
}

// tryStart is start for tests that expect start-up to fail: the error says
// why, with the tail of the log.
func (p *testProvisioner) tryStart() error {
	t := p.t
	t.Helper()
	var env []string
	for k, v := range p.cfg.Env {
		env = append(env, k+"="+v)
	}
	p.generation++
	p.logFile = filepath.Join(t.TempDir(), fmt.Sprintf("provisioner-%d.log", p.generation))
	spec := &framework.ProvisionerSpec{
		Binary: p.cfg.Binary, Name: p.cfg.Name, Namespace: p.cfg.Namespace, ExportDir: p.cfg.ExportDir, Kubeconfig: p.cfg.Kubeconfig,
		NFSPort: p.NFSPort, MountdPort: p.MountPort, HTTPPort: p.httpPort,
		NFSVersions: p.cfg.NFSVersions, Args: p.cfg.ExtraArgs, Env: env, Wrap: p.cfg.Wrap, LogFile: p.logFile,
	}
	proc, err := framework.StartProvisioner(t.Context(), spec)
	if err != nil {
		return err
	}
	p.proc = proc
	return nil
}

// kill9 kills the provisioner with SIGKILL, as a crashed node would. Its
// ganesha and dbus-daemon die with it (Pdeathsig) or are found stale and
// replaced at the next start.
func (p *testProvisioner) kill9() {
	_ = syscall.Kill(p.proc.PID(), syscall.SIGKILL)
	<-p.proc.Exited()
}

func (p *testProvisioner) restart() {
	p.t.Helper()
	p.start()
}

func (p *testProvisioner) stop() {
	if p.proc == nil {
		return
	}
	select {
	case <-p.proc.Exited():
	default:
		if err := p.proc.Stop(framework.DefaultStopGrace); err != nil {
			p.t.Errorf("stop provisioner: %v", err)
		}
	}
	if p.t.Failed() {
		p.t.Logf("last lines of %s:\n%s", p.logFile, p.proc.Tail(60))
	}
}

func (p *testProvisioner) log() string {
	data, _ := os.ReadFile(p.logFile)
	return string(data)
}

// exports lists what ganesha serves now, over its private D-Bus.
func (p *testProvisioner) exports(ctx context.Context) []ganesha.Export {
	p.t.Helper()
	list, err := framework.ProvisionerExports(ctx, p.cfg.ExportDir)
	if err != nil {
		p.t.Fatal(err)
	}
	return list
}

// volumeDirs lists the store's entries other than the state directory.
func (p *testProvisioner) volumeDirs() []string {
	p.t.Helper()
	entries, err := os.ReadDir(p.cfg.ExportDir)
	if err != nil {
		p.t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if e.Name() != volume.StateDirName {
			names = append(names, e.Name())
		}
	}
	return names
}

// testEnv is what most tests start from: the shared cluster, a fresh
// namespace, a provisioner of their own, and a StorageClass for it (reclaim
// policy Delete, no parameters) named after the namespace.
type testEnv struct {
	c     *framework.Cluster
	ns    string
	p     *testProvisioner
	class string
}

func newTestEnv(t testing.TB, extraArgs ...string) testEnv {
	t.Helper()
	c := framework.Shared(t)
	ns := c.Namespace(t)
	p := startProvisioner(t, c, provisionerConfig{Namespace: ns, ExtraArgs: extraArgs})
	class := ns + "-class"
	storageClass(t, c, class, p.cfg.Name, nil, v1.PersistentVolumeReclaimDelete)
	return testEnv{c: c, ns: ns, p: p, class: class}
}

// storageClass creates a StorageClass for provisioner name, deleted on cleanup.
func storageClass(t testing.TB, c *framework.Cluster, name, provisioner string, params map[string]string, reclaim v1.PersistentVolumeReclaimPolicy) *storagev1.StorageClass {
	t.Helper()
	immediate := storagev1.VolumeBindingImmediate
	sc := &storagev1.StorageClass{
		ObjectMeta:        metav1.ObjectMeta{Name: name},
		Provisioner:       provisioner,
		Parameters:        params,
		ReclaimPolicy:     &reclaim,
		VolumeBindingMode: &immediate,
		MountOptions:      []string{"vers=4.1"},
	}
	sc, err := c.Client.StorageV1().StorageClasses().Create(t.Context(), sc, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.Client.StorageV1().StorageClasses().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	return sc
}

func createClaim(t testing.TB, c *framework.Cluster, pvc *v1.PersistentVolumeClaim) *v1.PersistentVolumeClaim {
	t.Helper()
	pvc, err := c.Client.CoreV1().PersistentVolumeClaims(pvc.Namespace).Create(t.Context(), pvc, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return pvc
}

// waitBound waits until the claim is Bound and returns its PV.
func waitBound(t testing.TB, c *framework.Cluster, ns, name string) *v1.PersistentVolume {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	pv, err := framework.WaitBound(ctx, c.Client, ns, name)
	if err != nil {
		t.Fatal(err)
	}
	return pv
}

// waitPVGone waits until PV name no longer exists.
func waitPVGone(t testing.TB, c *framework.Cluster, name string) {
	t.Helper()
	framework.Eventually(t, 60*time.Second, "PV "+name+" deleted", func() (bool, error) {
		_, err := c.Client.CoreV1().PersistentVolumes().Get(t.Context(), name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return false, err
	})
}

// warningEvent waits for a Warning event on the claim whose message
// contains want, and returns it.
func warningEvent(t testing.TB, c *framework.Cluster, ns, claimName, want string) string {
	t.Helper()
	var msg string
	framework.Eventually(t, 60*time.Second, fmt.Sprintf("a Warning event on %s/%s containing %q", ns, claimName, want), func() (bool, error) {
		events, err := c.Client.CoreV1().Events(ns).List(t.Context(), metav1.ListOptions{FieldSelector: "involvedObject.name=" + claimName})
		if err != nil {
			return false, err
		}
		for _, e := range events.Items {
			if e.Type == v1.EventTypeWarning && strings.Contains(e.Message, want) {
				msg = e.Message
				return true, nil
			}
		}
		return false, nil
	})
	return msg
}

// metricSamples reads the provisioner's /metrics: every sample whose name
// starts with prefix, keyed by the rest of the name with its labels.
func metricSamples(t testing.TB, p *testProvisioner, prefix string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", p.httpPort))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for line := range strings.SplitSeq(string(body), "\n") {
		i := strings.LastIndexByte(line, ' ')
		if i < 0 || strings.HasPrefix(line, "#") {
			continue
		}
		if rest, ok := strings.CutPrefix(line[:i], prefix); ok {
			if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
				out[rest] = v
			}
		}
	}
	return out
}
