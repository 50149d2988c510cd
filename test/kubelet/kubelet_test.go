//go:build kubelet

// Package kubelet runs the shipped manifests under a real kubelet (built from
// the control plane's Kubernetes module: hack/build-controlplane.sh kubelet)
// with containerd and runc from Debian, against the test control plane.
//
//	hack/build-controlplane.sh kubelet && make image
//	go test -tags kubelet -v ./test/kubelet/
//
// Not part of CI: on the CI VM the kubelet stops at start-up (README,
// "Under a real kubelet"). The test records how far it gets.
package kubelet

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nfs-provisioner/nfs-provisioner/test/framework"
)

func TestMain(m *testing.M) { os.Exit(framework.Main(m)) }

const nodeName = "nfs-provisioner-kubelet"

// TestKubeletNodeReady starts containerd (private root, state and socket) and
// the kubelet, registered against the test control plane, and waits for the
// node to be Ready. The kubelet is told to protect the kernel's defaults:
// left to itself it would set vm.overcommit_memory=1, kernel.panic=10 and
// kernel.panic_on_oops=1 machine-wide, which a shared test machine must not
// get from a test.
func TestKubeletNodeReady(t *testing.T) {
	c := framework.Shared(t)
	binDir, err := framework.BinDir()
	if err != nil {
		t.Fatal(err)
	}
	kubelet := filepath.Join(binDir, "kubelet")
	if _, err := os.Stat(kubelet); err != nil {
		t.Fatalf("kubelet not built (hack/build-controlplane.sh kubelet): %v", err)
	}
	// Short paths: unix socket names are limited to 108 bytes.
	dir, err := os.MkdirTemp("", "nfsk-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// The kubelet bind-mounts its root dir onto itself; undone after it stops.
	framework.UnmountUnderOnCleanup(t, dir)
	sock := filepath.Join(dir, "containerd.sock")
	for _, d := range []string{"cni", "kubelet", "containerd"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write(t, filepath.Join(dir, "cni", "10-nfsk.conflist"), fmt.Sprintf(`{"cniVersion":"1.0.0","name":"nfsk","plugins":[
 {"type":"bridge","bridge":"nfsk0","isGateway":true,"ipam":{"type":"host-local","ranges":[[{"subnet":"10.89.7.0/24"}]],"routes":[{"dst":"0.0.0.0/0"}],"dataDir":"%s/ipam"}},
 {"type":"loopback"}]}`, dir))
	write(t, filepath.Join(dir, "containerd.toml"), fmt.Sprintf(`version = 2
root = "%[1]s/containerd/root"
state = "%[1]s/containerd/state"
[grpc]
  address = "%[2]s"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/pause:local"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "%[1]s/cni"
`, dir, sock))
	ports, err := framework.FreePorts(2)
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "kubelet.yaml"), fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: %d
healthzBindAddress: 127.0.0.1
healthzPort: %d
readOnlyPort: 0
authentication: {anonymous: {enabled: true}, webhook: {enabled: false}}
authorization: {mode: AlwaysAllow}
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://%s
failSwapOn: false
protectKernelDefaults: true
enforceNodeAllocatable: []
evictionHard: {memory.available: "1Mi", nodefs.available: "1%%", imagefs.available: "1%%"}
resolvConf: /etc/resolv.conf
`, ports[0], ports[1], sock))

	containerd := framework.StartProcessSpec(t, framework.ProcessSpec{
		Name: "containerd", Path: "containerd", Args: []string{"--config", filepath.Join(dir, "containerd.toml")},
		LogFile: filepath.Join(dir, "containerd.log"),
	})
	framework.Eventually(t, 30*time.Second, "containerd answers", func() (bool, error) {
		return exec.Command("ctr", "--address", sock, "version").Run() == nil, nil
	})
	k := framework.StartProcessSpec(t, framework.ProcessSpec{
		Name: "kubelet", Path: kubelet, LogFile: filepath.Join(dir, "kubelet.log"),
		Args: []string{"--config", filepath.Join(dir, "kubelet.yaml"), "--kubeconfig", c.Kubeconfig,
			"--root-dir", filepath.Join(dir, "kubelet"), "--cert-dir", filepath.Join(dir, "kubelet", "pki"),
			"--hostname-override", nodeName, "--node-ip", "127.0.0.1", "--v", "2"},
	})
	t.Cleanup(func() {
		_ = c.Client.CoreV1().Nodes().Delete(context.Background(), nodeName, metav1.DeleteOptions{})
	})
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		select {
		case <-k.Exited():
			t.Fatalf("the kubelet exited (%v); its last words:\n%s\ncontainerd:\n%s", k.ExitErr(), errorLines(k.Tail(400)), errorLines(containerd.Tail(30)))
		default:
		}
		node, err := c.Client.CoreV1().Nodes().Get(t.Context(), nodeName, metav1.GetOptions{})
		if err == nil {
			for _, cond := range node.Status.Conditions {
				if cond.Type == v1.NodeReady && cond.Status == v1.ConditionTrue {
					t.Logf("node %s Ready: %s", nodeName, cond.Message)
					return
				}
			}
		}
		time.Sleep(time.Second)
	}
	t.Fatalf("node %s not Ready after 2 min; kubelet:\n%s", nodeName, errorLines(k.Tail(400)))
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// errorLines keeps klog's error and fatal lines (E..., F...) of a log.
func errorLines(log string) string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if strings.HasPrefix(l, "E") || strings.HasPrefix(l, "F") || strings.Contains(l, "failed") {
			out = append(out, l)
		}
	}
	if len(out) > 25 {
		out = out[len(out)-25:]
	}
	return strings.Join(out, "\n")
}
