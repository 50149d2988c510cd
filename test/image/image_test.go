//go:build image

package image

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nfs-provisioner/nfs-provisioner/test/framework"
	"github.com/nfs-provisioner/nfs-provisioner/test/nfsclient"
)

// stopBound is the longest a SIGTERM may take to stop the container: the
// shipped pod's terminationGracePeriodSeconds, after which the kubelet
// SIGKILLs. What it takes is measured and logged; README quotes it.
const stopBound = 30 * time.Second

// TestImageMetadata: what the Dockerfile promises about the image itself.
func TestImageMetadata(t *testing.T) {
	image := imageName(t)
	out, err := podman(t.Context(), "image", "inspect", image)
	if err != nil {
		t.Fatal(err)
	}
	var info []struct {
		Size   int64
		Config struct {
			Entrypoint []string
			Cmd        []string
			Labels     map[string]string
			StopSignal string
			Volumes    map[string]struct{}
		}
	}
	if err := json.Unmarshal([]byte(out), &info); err != nil || len(info) != 1 {
		t.Fatalf("podman image inspect: %v (%d images)", err, len(info))
	}
	cfg := info[0].Config
	// Exec form: the provisioner is PID 1 and receives SIGTERM itself.
	if !slices.Equal(cfg.Entrypoint, []string{"/usr/local/bin/nfs-provisioner"}) || len(cfg.Cmd) != 0 {
		t.Errorf("entrypoint %q cmd %q; want the binary alone, no shell", cfg.Entrypoint, cfg.Cmd)
	}
	for _, l := range []string{"title", "description", "source", "version", "revision", "base.name"} {
		if cfg.Labels["org.opencontainers.image."+l] == "" {
			t.Errorf("label org.opencontainers.image.%s missing", l)
		}
	}
	if _, ok := cfg.Volumes["/export"]; !ok {
		t.Errorf("volumes %v: want /export", cfg.Volumes)
	}
	// netbase: rpcbind needs the sunrpc entry.
	services, err := podman(t.Context(), "run", "--rm", "--network", "none", "--entrypoint", "/usr/bin/grep", image, "-E", "^sunrpc[[:space:]]+111/tcp", "/etc/services")
	if err != nil || services == "" {
		t.Errorf("sunrpc in the image's /etc/services: %q, %v", services, err)
	}
	t.Logf("image %s: %d MB, revision %s", image, info[0].Size/1e6, cfg.Labels["org.opencontainers.image.revision"])
}

// TestImageAsStorageE2E runs the image as Kubernetes' storage e2e suite runs
// the upstream nfs-provisioner (test/e2e/storage/utils "StartExternalProvisioner"):
// the runtime's default capabilities plus DAC_READ_SEARCH, env POD_IP, its own
// network namespace, a host directory at /export and the suite's flags. The
// only addition is -kubeconfig: the test control plane is reached through a
// proxy on the bridge, not through a Service.
func TestImageAsStorageE2E(t *testing.T) {
	image := imageName(t)
	c := framework.Shared(t)
	ns := c.Namespace(t)
	gw, subnet := bridge(t)
	kubeconfig := apiKubeconfig(t, c, gw)
	export := t.TempDir()
	name := "example.com/nfs-" + ns
	ctr := runContainer(t, containerSpec{
		Image: image, IP: containerIP(t, subnet), ExportDir: export,
		Caps:  append(slices.Clone(runtimeDefaultCapabilities), "DAC_READ_SEARCH"),
		Extra: []string{"--volume", kubeconfig + ":/etc/nfs-provisioner/kubeconfig:ro"},
		Args:  []string{"-provisioner=" + name, "-grace-period=0", "-kubeconfig=/etc/nfs-provisioner/kubeconfig"},
	})

	// The suite's class: class-level mountOptions vers=4.1.
	class := createClass(t, c, ns, name, []string{"vers=4.1"})
	createClaim(t, c, ns, "data", class)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	pv, err := framework.WaitBound(ctx, c.Client, ns, "data")
	if err != nil {
		t.Fatal(err)
	}
	if pv.Spec.NFS == nil || pv.Spec.NFS.Server != ctr.ip.String() {
		t.Fatalf("PV %s NFS source %+v; want server POD_IP %s", pv.Name, pv.Spec.NFS, ctr.ip)
	}
	if !slices.Equal(pv.Spec.MountOptions, []string{"vers=4.1"}) {
		t.Errorf("PV mount options %v, want the class's [vers=4.1]", pv.Spec.MountOptions)
	}
	// Ready, as a probe sees it on the pod's address (default -http-address=:8080).
	if body, err := httpGet(t.Context(), fmt.Sprintf("http://%s:8080/readyz", ctr.ip)); err != nil || strings.TrimSpace(body) != "ok" {
		t.Errorf("/readyz on %s: %q, %v", ctr.ip, body, err)
	}

	// A host client through the container's address, default ports: bulk
	// data over NFSv3 (MOUNT on 20048), read back over NFSv4 (libnfs 4.0.0
	// speaks minor version 0; see README).
	v3 := nfsclient.Target{Host: ctr.ip.String(), NFSPort: 2049, MountPort: 20048, Pseudo: pv.Spec.NFS.Path, Version: 3}
	v4 := nfsclient.Target{Host: ctr.ip.String(), NFSPort: 2049, Pseudo: pv.Spec.NFS.Path, Version: 4}
	data := bytes.Repeat([]byte("written over NFSv3 into the container, read over NFSv4\n"), 4000)
	if err := nfsclient.WriteFile(t.Context(), v3, "v3.txt", data); err != nil {
		t.Fatalf("NFSv3 write to %s: %v", ctr.ip, err)
	}
	got, err := nfsclient.ReadFile(t.Context(), v4, "v3.txt")
	if err != nil {
		t.Fatalf("NFSv4 read from %s: %v", ctr.ip, err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes over NFSv4, want the %d written over NFSv3", len(got), len(data))
	}
	// And the bytes are in the host directory, as the store.
	matches, _ := filepath.Glob(filepath.Join(export, "*", "v3.txt"))
	if len(matches) != 1 {
		t.Fatalf("v3.txt in the host directory: %v", matches)
	}
	if onHost, err := os.ReadFile(matches[0]); err != nil || !bytes.Equal(onHost, data) {
		t.Fatalf("%s on the host: %d bytes, %v", matches[0], len(onHost), err)
	}

	// SIGTERM, as the kubelet sends it: the provisioner stops ganesha
	// through its admin D-Bus call and exits 0 well within the grace period.
	start := time.Now()
	if _, err := podman(t.Context(), "kill", "--signal", "TERM", ctr.name); err != nil {
		t.Fatal(err)
	}
	code, err := ctr.wait(t.Context(), stopBound+30*time.Second)
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	logs := ctr.logs(t)
	if code != 0 || took > stopBound {
		t.Errorf("after SIGTERM the container exited %d in %s; want 0 within %s", code, took, stopBound)
	}
	if !strings.Contains(logs, "NFS server stopped") || strings.Contains(logs, "sending SIGKILL") {
		t.Errorf("ganesha did not stop gracefully; log:\n%s", tail(logs, 30))
	}
	ganeshaLog, _ := os.ReadFile(filepath.Join(export, ".nfs-provisioner", "ganesha", "log", "ganesha.log"))
	t.Logf("SIGTERM to exit: %s (bound %s); ganesha's last words: %s", took.Round(time.Millisecond), stopBound, lastLine(string(ganeshaLog)))
}

// TestImageWithoutDACReadSearchFailsLoudly: the same run without the one
// added capability. Before the start-up check, this container reported
// ready and provisioned while every client got NFS4ERR_PERM; now it exits
// at once, naming the capability, and never serves.
func TestImageWithoutDACReadSearchFailsLoudly(t *testing.T) {
	image := imageName(t)
	c := framework.Shared(t)
	ns := c.Namespace(t)
	gw, subnet := bridge(t)
	kubeconfig := apiKubeconfig(t, c, gw)
	ctr := runContainer(t, containerSpec{
		Image: image, IP: containerIP(t, subnet), ExportDir: t.TempDir(),
		Caps:  runtimeDefaultCapabilities,
		Extra: []string{"--volume", kubeconfig + ":/etc/nfs-provisioner/kubeconfig:ro"},
		Args:  []string{"-provisioner=example.com/nfs-" + ns, "-grace-period=0", "-kubeconfig=/etc/nfs-provisioner/kubeconfig"},
	})
	code, err := ctr.wait(t.Context(), time.Minute)
	if err != nil {
		t.Fatalf("the container still runs without DAC_READ_SEARCH: %v", err)
	}
	logs := ctr.logs(t)
	if code == 0 || !strings.Contains(logs, "missing capability DAC_READ_SEARCH") {
		t.Fatalf("exit %d; want non-zero and a log naming DAC_READ_SEARCH:\n%s", code, tail(logs, 20))
	}
	if strings.Contains(logs, "Ready to provision") {
		t.Errorf("the provisioner reported ready without DAC_READ_SEARCH")
	}
	t.Logf("exit %d: %s", code, grep(logs, "DAC_READ_SEARCH"))
}

// TestImageWithoutNetbaseFailsLoudly hides /etc/services (what the image
// lacked before netbase was installed): with NFSv3 on, the default, start-up
// fails naming the package, instead of rpcbind dying with "Servname not
// supported"; with -nfs-versions=4 it is not needed.
func TestImageWithoutNetbaseFailsLoudly(t *testing.T) {
	image := imageName(t)
	empty := filepath.Join(t.TempDir(), "services")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, subnet := bridge(t)
	// No API server needed: the check runs before anything talks to it,
	// and -server-hostname spares the address lookup.
	ctr := runContainer(t, containerSpec{
		Image: image, IP: containerIP(t, subnet), ExportDir: t.TempDir(),
		Caps:  append(slices.Clone(runtimeDefaultCapabilities), "DAC_READ_SEARCH"),
		Extra: []string{"--volume", empty + ":/etc/services:ro"},
		Args:  []string{"-provisioner=example.com/nfs", "-master=https://127.0.0.1:1", "-server-hostname=nfs.invalid"},
	})
	code, err := ctr.wait(t.Context(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if logs := ctr.logs(t); code == 0 || !strings.Contains(logs, "install netbase") {
		t.Fatalf("exit %d; want non-zero and a log saying to install netbase:\n%s", code, tail(logs, 20))
	}
}

func createClass(t testing.TB, c *framework.Cluster, ns, provisioner string, mountOptions []string) string {
	t.Helper()
	reclaim := v1.PersistentVolumeReclaimDelete
	class, err := c.Client.StorageV1().StorageClasses().Create(t.Context(), &storagev1.StorageClass{
		ObjectMeta:    metav1.ObjectMeta{Name: ns + "-class"},
		Provisioner:   provisioner,
		ReclaimPolicy: &reclaim,
		MountOptions:  mountOptions,
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.Client.StorageV1().StorageClasses().Delete(context.Background(), class.Name, metav1.DeleteOptions{})
	})
	return class.Name
}

func createClaim(t testing.TB, c *framework.Cluster, ns, name, class string) {
	t.Helper()
	_, err := c.Client.CoreV1().PersistentVolumeClaims(ns).Create(t.Context(), framework.Claim(ns, name, class, "1Mi", v1.ReadWriteMany), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
}

func httpGet(ctx context.Context, url string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	client := &http.Client{Transport: &http.Transport{Proxy: nil, DialContext: (&net.Dialer{}).DialContext}}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return string(body), fmt.Errorf("%s: %s", url, resp.Status)
	}
	return string(body), err
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func lastLine(s string) string { return tail(s, 1) }

func grep(s, word string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, word) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
