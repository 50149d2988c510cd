package framework

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
)

// StartupBudget is the start-up time the project promises; Start logs a
// warning when it takes longer, and framework tests fail.
const StartupBudget = 15 * time.Second

// Options configure Start. The zero value is fine.
type Options struct {
	// BinDir holds etcd, kube-apiserver and kube-controller-manager;
	// empty means BinDir().
	BinDir string
	// TempDir is where the cluster's directory is created; empty means
	// os.TempDir().
	TempDir string
}

// Cluster is a running control plane. Its fields are read-only; copy
// RESTConfig (rest.CopyConfig) before changing it.
type Cluster struct {
	// Dir holds certificates, kubeconfigs, etcd's data and the logs
	// (logs/<component>.log); Stop removes it.
	Dir string
	// Kubeconfig is the path of an admin (system:masters) kubeconfig.
	Kubeconfig string
	// RESTConfig is the admin's config, with a rate limit high enough for
	// tests that create hundreds of objects.
	RESTConfig *rest.Config
	// Client is an admin clientset.
	Client kubernetes.Interface
	// StartupTime is how long Start took until the cluster was ready.
	StartupTime time.Duration

	caPEM                []byte
	etcd, apiserver, kcm *Process
	stopOnce             sync.Once
	stopErr              error
}

// errPortTaken marks a start-up that failed because a port chosen as free was
// taken before the component bound it; Start retries on new ports.
var errPortTaken = errors.New("port already in use")

const (
	dirPrefix    = "nfs-provisioner-cp-"
	ownerFile    = "owner.pid"
	startRetries = 3
	// adminQPS matches kube-controller-manager's --kube-api-qps, so tests
	// are throttled no more than the controllers they observe.
	adminQPS   = 200
	adminBurst = 400
)

// Start runs etcd, kube-apiserver and kube-controller-manager on free
// loopback ports and returns once they are ready: etcd /health,
// kube-apiserver /readyz, kube-controller-manager /healthz, and the
// controllers have created ServiceAccount default/default. On error nothing
// it started is left running.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	binDir := opts.BinDir
	if binDir == "" {
		var err error
		if binDir, err = BinDir(); err != nil {
			return nil, err
		}
	} else if err := checkBinaries(binDir, false); err != nil {
		return nil, err
	}
	if opts.TempDir == "" {
		removeStaleDirs(os.TempDir())
	}
	for attempt := 1; ; attempt++ {
		c, err := start(ctx, binDir, opts.TempDir)
		if err == nil || !errors.Is(err, errPortTaken) || attempt == startRetries {
			return c, err
		}
		klog.InfoS("A port was taken during start-up; retrying on new ports", "attempt", attempt, "err", err)
	}
}

func start(ctx context.Context, binDir, tempDir string) (_ *Cluster, err error) {
	t0 := time.Now()
	// Where start-up time goes, for the ready line: which component to
	// tune if the budget is ever missed.
	var phases []string
	mark := func(what string) { phases = append(phases, fmt.Sprintf("%s@%.1fs", what, time.Since(t0).Seconds())) }
	dir, err := os.MkdirTemp(tempDir, dirPrefix)
	if err != nil {
		return nil, fmt.Errorf("start control plane: %w", err)
	}
	c := &Cluster{Dir: dir}
	defer func() {
		if err != nil {
			// Keep the logs for a post-mortem.
			c.stopProcesses()
			c.keepOnlyLogs()
			err = fmt.Errorf("start control plane (logs in %s): %w", filepath.Join(dir, "logs"), err)
		}
	}()
	// removeStaleDirs deletes a directory once this PID is gone, which is
	// what happens to it when a test binary panics and cannot run Stop.
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
		return nil, err
	}
	for _, sub := range []string{"pki", "logs", "etcd"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o700); err != nil {
			return nil, err
		}
	}
	ports, err := FreePorts(4)
	if err != nil {
		return nil, err
	}
	etcdPort, peerPort, apiPort, kcmPort := ports[0], ports[1], ports[2], ports[3]

	pki, err := newClusterPKI()
	if err != nil {
		return nil, err
	}
	files, err := pki.write(filepath.Join(dir, "pki"))
	if err != nil {
		return nil, err
	}
	c.caPEM = pki.ca.certPEM
	host := "https://127.0.0.1:" + strconv.Itoa(apiPort)
	c.RESTConfig = &rest.Config{
		Host: host,
		TLSClientConfig: rest.TLSClientConfig{
			CAData: pki.ca.certPEM, CertData: pki.admin.certPEM, KeyData: pki.admin.keyPEM,
		},
		QPS:   adminQPS,
		Burst: adminBurst,
	}
	c.Kubeconfig = filepath.Join(dir, "admin.kubeconfig")
	if err := writeKubeconfig(c.RESTConfig, c.Kubeconfig); err != nil {
		return nil, err
	}
	kcmKubeconfig := filepath.Join(dir, "kube-controller-manager.kubeconfig")
	if err := writeKubeconfig(&rest.Config{Host: host, TLSClientConfig: rest.TLSClientConfig{
		CAData: pki.ca.certPEM, CertData: pki.kcm.certPEM, KeyData: pki.kcm.keyPEM,
	}}, kcmKubeconfig); err != nil {
		return nil, err
	}
	httpClient, err := rest.HTTPClientFor(c.RESTConfig)
	if err != nil {
		return nil, fmt.Errorf("admin HTTP client: %w", err)
	}
	launch := func(name string, args ...string) (*Process, error) {
		return Launch(ProcessSpec{
			Name: name, Path: filepath.Join(binDir, name), Args: args,
			LogFile: filepath.Join(dir, "logs", name+".log"),
		})
	}

	etcdURL := "http://127.0.0.1:" + strconv.Itoa(etcdPort)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(peerPort)
	if c.etcd, err = launch("etcd",
		"--name", "framework",
		"--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "framework="+peerURL,
		// No metrics listener: one port fewer to find and to collide on.
		"--listen-metrics-urls", "",
		// The data is thrown away; fsync only slows every write.
		"--unsafe-no-fsync",
		"--log-level", "warn",
	); err != nil {
		return nil, err
	}
	if err := waitReady(ctx, c.etcd, "/health", func(ctx context.Context) error {
		return getOK(ctx, http.DefaultClient, etcdURL+"/health", `"health":"true"`)
	}); err != nil {
		return nil, err
	}
	mark("etcd")

	if c.apiserver, err = launch("kube-apiserver",
		"--etcd-servers", etcdURL,
		"--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
		"--secure-port", strconv.Itoa(apiPort),
		"--tls-cert-file", files.apiserverCert, "--tls-private-key-file", files.apiserverKey,
		"--client-ca-file", files.caCert,
		"--authorization-mode", "RBAC",
		"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file", files.saPub,
		"--service-account-signing-key-file", files.saKey,
		"--service-cluster-ip-range", serviceCIDR,
		// Without these, kube-controller-manager's delegated authentication
		// keeps logging a missing requestheader CA bundle.
		"--requestheader-client-ca-file", files.caCert,
		"--requestheader-allowed-names", "front-proxy-client",
		"--requestheader-username-headers", "X-Remote-User",
		"--requestheader-group-headers", "X-Remote-Group",
		"--requestheader-extra-headers-prefix", "X-Remote-Extra-",
		// The advertise address is loopback, which the Endpoints of the
		// kubernetes Service may not hold; the reconciler would fail every
		// few seconds.
		"--endpoint-reconciler-type", "none",
		"--allow-privileged=true",
		"--profiling=false",
		"--v=1",
	); err != nil {
		return nil, err
	}
	if err := waitReady(ctx, c.apiserver, "/readyz", func(ctx context.Context) error {
		return getOK(ctx, httpClient, host+"/readyz", "ok")
	}); err != nil {
		return nil, err
	}
	mark("kube-apiserver")

	kcmURL := "https://127.0.0.1:" + strconv.Itoa(kcmPort)
	if c.kcm, err = launch("kube-controller-manager",
		"--kubeconfig", kcmKubeconfig,
		"--authentication-kubeconfig", kcmKubeconfig,
		"--authorization-kubeconfig", kcmKubeconfig,
		"--bind-address", "127.0.0.1", "--secure-port", strconv.Itoa(kcmPort),
		"--tls-cert-file", files.kcmServingCert, "--tls-private-key-file", files.kcmServingKey,
		"--leader-elect=false",
		// All of them: the PV binder, StatefulSet, ServiceAccount,
		// namespace and garbage collectors are what tests watch.
		"--controllers", "*",
		"--use-service-account-credentials=true",
		"--service-account-private-key-file", files.saKey,
		"--root-ca-file", files.caCert,
		"--cluster-signing-cert-file", files.caCert, "--cluster-signing-key-file", files.caKey,
		// The default 20 QPS makes the PV controller need ~10 s to annotate
		// 200 claims; at 200 it keeps up with the test.
		"--kube-api-qps", "200", "--kube-api-burst", "400",
		"--profiling=false",
		"--v=1",
	); err != nil {
		return nil, err
	}
	if err := waitReady(ctx, c.kcm, "/healthz", func(ctx context.Context) error {
		return getOK(ctx, httpClient, kcmURL+"/healthz", "ok")
	}); err != nil {
		return nil, err
	}
	mark("kube-controller-manager")

	if c.Client, err = kubernetes.NewForConfig(c.RESTConfig); err != nil {
		return nil, fmt.Errorf("admin client: %w", err)
	}
	// The ServiceAccount admission plugin rejects pods (and so the
	// StatefulSet controller's work) until this exists; it also shows that
	// the controllers really run.
	if err := waitReady(ctx, c.kcm, "ServiceAccount default/default", func(ctx context.Context) error {
		_, err := c.Client.CoreV1().ServiceAccounts(metav1.NamespaceDefault).Get(ctx, "default", metav1.GetOptions{})
		return err
	}); err != nil {
		return nil, err
	}
	mark("default-serviceaccount")
	c.StartupTime = time.Since(t0)
	c.logReady(phases)
	return c, nil
}

// logReady reports start-up time and memory, the two costs every test
// package pays for its cluster.
func (c *Cluster) logReady(phases []string) {
	var rss []string
	for _, p := range []*Process{c.etcd, c.apiserver, c.kcm} {
		b, err := p.RSS()
		if err != nil {
			rss = append(rss, fmt.Sprintf("%s ?", p.Name))
			continue
		}
		rss = append(rss, fmt.Sprintf("%s %d MB", p.Name, b>>20))
	}
	klog.InfoS(fmt.Sprintf("framework: control plane ready in %.1fs (%s)", c.StartupTime.Seconds(), strings.Join(rss, ", ")),
		"phases", strings.Join(phases, " "), "dir", c.Dir, "server", c.RESTConfig.Host)
	if c.StartupTime > StartupBudget {
		klog.InfoS("WARNING: control-plane start-up exceeded its budget", "took", c.StartupTime, "budget", StartupBudget)
	}
}

// waitReady polls check until it succeeds. It gives up at once when the
// component exits, and returns the tail of its log either way, because the
// log holds the reason.
func waitReady(ctx context.Context, p *Process, what string, check func(context.Context) error) error {
	const interval = 50 * time.Millisecond
	var last error
	for {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		last = check(cctx)
		cancel()
		if last == nil {
			return nil
		}
		select {
		case <-p.Exited():
			return p.startFailure(fmt.Errorf("%s exited (%v) while waiting for %s", p.Name, p.ExitErr(), what))
		case <-ctx.Done():
			return p.startFailure(fmt.Errorf("%s: %s not ready: %w (last check: %v)", p.Name, what, ctx.Err(), last))
		case <-time.After(interval):
		}
	}
}

func (p *Process) startFailure(err error) error {
	tail := p.Tail(30)
	klog.ErrorS(err, "Control-plane component failed to start", "name", p.Name, "log", p.LogFile)
	err = fmt.Errorf("%w; last lines of %s:\n%s", err, p.LogFile, tail)
	if strings.Contains(tail, "address already in use") {
		err = fmt.Errorf("%w: %w", errPortTaken, err)
	}
	return err
}

// getOK succeeds when url answers 200 with a body containing want.
func getOK(ctx context.Context, client *http.Client, url, want string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
		return fmt.Errorf("GET %s: %s: %.200s", url, resp.Status, body)
	}
	return nil
}

// Stop stops the control plane's processes (kube-controller-manager and
// kube-apiserver first, etcd last, each SIGTERM then SIGKILL) and removes
// Dir. It reports a component that had died on its own, because the tests
// that ran against it may have failed for that reason. Calling it again is a
// no-op.
func (c *Cluster) Stop() error { return c.stop(false) }

func (c *Cluster) stop(keepLogs bool) error {
	c.stopOnce.Do(func() {
		var errs []error
		for _, p := range []*Process{c.etcd, c.apiserver, c.kcm} {
			if p == nil {
				continue
			}
			select {
			case <-p.Exited():
				errs = append(errs, fmt.Errorf("%s (pid %d) died before Stop: %v; last lines of its log:\n%s",
					p.Name, p.PID(), p.ExitErr(), p.Tail(20)))
			default:
			}
		}
		errs = append(errs, c.stopProcesses())
		if keepLogs {
			errs = append(errs, c.keepOnlyLogs())
		} else {
			errs = append(errs, os.RemoveAll(c.Dir))
		}
		c.stopErr = errors.Join(errs...)
	})
	return c.stopErr
}

// stopProcesses stops the clients of etcd together, then etcd, so that
// neither apiserver nor controller-manager spends its shutdown retrying a
// vanished backend.
func (c *Cluster) stopProcesses() error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	stopAll := func(ps ...*Process) {
		for _, p := range ps {
			if p == nil {
				continue
			}
			wg.Go(func() {
				if err := p.Stop(DefaultStopGrace); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
	}
	stopAll(c.kcm, c.apiserver)
	stopAll(c.etcd)
	return errors.Join(errs...)
}

// keepOnlyLogs drops etcd's data, which is only bulk, and the owner file, so
// that removeStaleDirs leaves the logs for whoever reads the failure.
func (c *Cluster) keepOnlyLogs() error {
	return errors.Join(os.RemoveAll(filepath.Join(c.Dir, "etcd")), os.Remove(filepath.Join(c.Dir, ownerFile)))
}

// removeStaleDirs deletes cluster directories whose owning test binary is
// gone: a panicking test binary cannot run Stop (the kernel kills its
// children through Pdeathsig, but the files stay).
func removeStaleDirs(tmp string) {
	dirs, _ := filepath.Glob(filepath.Join(tmp, dirPrefix+"*"))
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, ownerFile))
		if err != nil {
			continue // not ours, or still being set up
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); !errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err := os.RemoveAll(d); err == nil {
			klog.V(1).InfoS("Removed a dead test run's cluster directory", "dir", d, "ownerPID", pid)
		}
	}
}
