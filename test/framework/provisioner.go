package framework

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/ganesha"
	"github.com/nfs-provisioner/nfs-provisioner/pkg/volume"
)

// ProvisionerSpec describes one run of the provisioner binary on loopback,
// with its embedded ganesha, as the e2e tests, the MySQL tests and the demo
// run it.
type ProvisionerSpec struct {
	Binary     string // default: ProvisionerBinary()
	Name       string // -provisioner
	Namespace  string // POD_NAMESPACE
	ExportDir  string // -export-dir; required
	Kubeconfig string // -kubeconfig; required
	// NFSPort, MountdPort and HTTPPort are chosen free when 0 and filled in.
	NFSPort, MountdPort, HTTPPort int
	NFSVersions                   string   // default 3,4
	Args                          []string // more flags; later ones win
	Env                           []string // more KEY=value
	Wrap                          []string // a command to run the binary under, e.g. setpriv ...
	LogFile                       string   // required
	// NoWait returns as soon as the process runs, without waiting for
	// /readyz: a passive failover replica is not ready until it takes over.
	NoWait bool
}

// provisionerBuild builds ./cmd/provisioner once per process, so tests run
// exactly what ships. $PROVISIONER_BINARY names a binary to run instead, so
// that benchmarks can compare builds in one checkout.
var provisionerBuild = sync.OnceValues(func() (string, error) {
	if bin := os.Getenv("PROVISIONER_BINARY"); bin != "" {
		if _, err := os.Stat(bin); err != nil {
			return "", fmt.Errorf("$PROVISIONER_BINARY: %w", err)
		}
		return bin, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	root, err := repoRoot(wd)
	if err != nil {
		return "", err
	}
	out := filepath.Join(root, "bin", "nfs-provisioner.test-build")
	cmd := exec.Command("go", "build", "-o", out, "./cmd/provisioner")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build provisioner: %v\n%s", err, msg)
	}
	return out, nil
})

// ProvisionerBinary returns the path of the provisioner built from this
// checkout, building it on first use.
func ProvisionerBinary() (string, error) { return provisionerBuild() }

// StartProvisioner launches the provisioner and returns once its /readyz
// answers, that is once ganesha serves and start-up reconciliation is done.
// The caller stops the returned process.
func StartProvisioner(ctx context.Context, spec *ProvisionerSpec) (*Process, error) {
	if spec.ExportDir == "" || spec.Kubeconfig == "" || spec.LogFile == "" {
		return nil, fmt.Errorf("start provisioner: ExportDir, Kubeconfig and LogFile are required")
	}
	if spec.Binary == "" {
		bin, err := ProvisionerBinary()
		if err != nil {
			return nil, err
		}
		spec.Binary = bin
	}
	if spec.NFSPort == 0 || spec.MountdPort == 0 || spec.HTTPPort == 0 {
		ports, err := FreePorts(3)
		if err != nil {
			return nil, err
		}
		spec.NFSPort, spec.MountdPort, spec.HTTPPort = ports[0], ports[1], ports[2]
	}
	if spec.NFSVersions == "" {
		spec.NFSVersions = "3,4"
	}
	args := append([]string{
		"-provisioner=" + spec.Name,
		"-kubeconfig=" + spec.Kubeconfig,
		"-export-dir=" + spec.ExportDir,
		"-grace-period=0",
		"-server-hostname=127.0.0.1",
		"-bind-address=127.0.0.1",
		"-nfs-port=" + strconv.Itoa(spec.NFSPort),
		"-mountd-port=" + strconv.Itoa(spec.MountdPort),
		"-nfs-versions=" + spec.NFSVersions,
		"-http-address=127.0.0.1:" + strconv.Itoa(spec.HTTPPort),
	}, spec.Args...)
	path := spec.Binary
	if len(spec.Wrap) > 0 {
		path, args = spec.Wrap[0], append(append(append([]string{}, spec.Wrap[1:]...), spec.Binary), args...)
	}
	p, err := Launch(ProcessSpec{
		Name: "provisioner " + spec.Name, Path: path, Args: args, LogFile: spec.LogFile,
		Env: append([]string{"POD_NAMESPACE=" + spec.Namespace}, spec.Env...),
	})
	if err != nil {
		return nil, err
	}
	if spec.NoWait {
		return p, nil
	}
	if err := waitProvisionerReady(ctx, p, spec.HTTPPort); err != nil {
		_ = p.Stop(DefaultStopGrace)
		return nil, err
	}
	return p, nil
}

func waitProvisionerReady(ctx context.Context, p *Process, port int) error {
	url := fmt.Sprintf("http://127.0.0.1:%d/readyz", port)
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		select {
		case <-p.Exited():
			return fmt.Errorf("provisioner exited during start-up: %v\n%s", p.ExitErr(), p.Tail(40))
		case <-ctx.Done():
			return fmt.Errorf("provisioner not ready: %w\n%s%s", ctx.Err(), p.Tail(40), mainStack(p))
		case <-time.After(50 * time.Millisecond):
		}
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
	}
}

// mainStack makes a provisioner that is not ready in time say where it
// is: SIGQUIT makes a Go program print every goroutine's stack and exit,
// and the main goroutine's is what start-up waits in.
func mainStack(p *Process) string {
	if err := syscall.Kill(p.PID(), syscall.SIGQUIT); err != nil {
		return ""
	}
	select {
	case <-p.Exited():
	case <-time.After(5 * time.Second):
		return "\n(no stack dump within 5s of SIGQUIT)"
	}
	b, err := os.ReadFile(p.LogFile)
	if err != nil {
		return ""
	}
	log := string(b)
	i := strings.Index(log, "\ngoroutine 1 ")
	if i < 0 {
		return ""
	}
	stack, _, _ := strings.Cut(log[i+1:], "\n\n")
	return "\nwhere its main goroutine waits:\n" + stack
}

// ProvisionerExports lists what the ganesha of the provisioner on exportDir
// serves now, asked over its private D-Bus.
func ProvisionerExports(ctx context.Context, exportDir string) ([]ganesha.Export, error) {
	m, err := ConnectProvisionerExports(exportDir)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	return m.List(ctx)
}

// ConnectProvisionerExports connects to the export manager of the
// provisioner on exportDir, over its ganesha's private D-Bus, as the
// provisioner itself does; Close it.
func ConnectProvisionerExports(exportDir string) (*ganesha.ExportManager, error) {
	dir := filepath.Join(exportDir, volume.StateDirName, "ganesha")
	// The provisioner's own ganesha has its runtime files under /run; one
	// started elsewhere (-run-server=false) may keep them in its state dir.
	runtime := ganesha.DefaultRuntimeDir(dir)
	if _, err := os.Stat(runtime); err != nil {
		runtime = dir
	}
	m, err := ganesha.ConnectExportManager(ganesha.BusAddressOf(runtime), dir)
	if err != nil {
		return nil, fmt.Errorf("connect to ganesha of %s: %w", exportDir, err)
	}
	return m, nil
}
