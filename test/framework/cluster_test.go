package framework

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// TestSharedClusterStarts checks the cluster is what it claims to be. How
// fast it starts is BenchmarkClusterStart's business, not an assertion.
func TestSharedClusterStarts(t *testing.T) {
	c := Shared(t)
	t.Logf("start-up took %v (budget %v; see BenchmarkClusterStart)", c.StartupTime, StartupBudget)
	if c.StartupTime <= 0 {
		t.Errorf("start-up time %v was not measured", c.StartupTime)
	}
	v, err := c.Client.Discovery().ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(v.GitVersion, "v1.") || v.GitVersion == "v1.0.0" {
		t.Errorf("server version %q: binaries built without version ldflags?", v.GitVersion)
	}
	t.Logf("server %s at %s", v.GitVersion, c.RESTConfig.Host)
	if !strings.HasPrefix(c.RESTConfig.Host, "https://127.0.0.1:") {
		t.Errorf("API server at %s, want https on 127.0.0.1", c.RESTConfig.Host)
	}
}

// TestAnonymousIsForbidden shows RBAC is the authorizer: with AlwaysAllow an
// anonymous client could list namespaces.
func TestAnonymousIsForbidden(t *testing.T) {
	c := Shared(t)
	anon, err := kubernetes.NewForConfig(&rest.Config{Host: c.RESTConfig.Host, TLSClientConfig: rest.TLSClientConfig{CAData: c.RESTConfig.CAData}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := anon.CoreV1().Namespaces().List(t.Context(), metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("anonymous list namespaces: err = %v, want Forbidden", err)
	}
}

func TestAdminKubeconfigFile(t *testing.T) {
	c := Shared(t)
	client, err := kubernetes.NewForConfig(loadKubeconfig(t, c.Kubeconfig))
	if err != nil {
		t.Fatal(err)
	}
	review, err := client.AuthenticationV1().SelfSubjectReviews().Create(t.Context(), &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("admin kubeconfig %s: %v", c.Kubeconfig, err)
	}
	if groups := review.Status.UserInfo.Groups; !contains(groups, "system:masters") {
		t.Errorf("admin kubeconfig authenticates with groups %v, want system:masters", groups)
	}
}

// TestServiceAccountKubeconfig is what a provisioner e2e test does: mint a
// ServiceAccount config, write it to a file, and use the file.
func TestServiceAccountKubeconfig(t *testing.T) {
	c := Shared(t)
	ns := c.Namespace(t)
	cfg, err := c.ServiceAccountConfig(t.Context(), ns, "provisioner")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "sa.kubeconfig")
	if err := c.WriteKubeconfig(cfg, path); err != nil {
		t.Fatal(err)
	}
	client, err := kubernetes.NewForConfig(loadKubeconfig(t, path))
	if err != nil {
		t.Fatal(err)
	}
	review, err := client.AuthenticationV1().SelfSubjectReviews().Create(t.Context(), &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if want := "system:serviceaccount:" + ns + ":provisioner"; review.Status.UserInfo.Username != want {
		t.Errorf("authenticated as %q, want %q", review.Status.UserInfo.Username, want)
	}
	if contains(review.Status.UserInfo.Groups, "system:masters") {
		t.Errorf("ServiceAccount config is in system:masters")
	}
	if _, err := client.CoreV1().Namespaces().List(t.Context(), metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("ServiceAccount list namespaces: err = %v, want Forbidden", err)
	}
	// A second call reuses the existing account.
	if _, err := c.ServiceAccountConfig(t.Context(), ns, "provisioner"); err != nil {
		t.Errorf("second ServiceAccountConfig: %v", err)
	}
}

func TestNamespaceDeletedOnCleanup(t *testing.T) {
	c := Shared(t)
	var ns string
	t.Run("inner", func(t *testing.T) {
		ns = c.Namespace(t)
		got, err := c.Client.CoreV1().Namespaces().Get(t.Context(), ns, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(got.Name, "testnamespacedeletedoncleanup-inner-") {
			t.Errorf("namespace %q not named after the test", got.Name)
		}
	})
	got, err := c.Client.CoreV1().Namespaces().Get(t.Context(), ns, metav1.GetOptions{})
	if err == nil && got.DeletionTimestamp == nil {
		t.Errorf("namespace %s not being deleted after its test ended", ns)
	} else if err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
}

// TestStartStop runs a second, private cluster next to the shared one and
// checks that Stop leaves neither processes nor files behind.
func TestStartStop(t *testing.T) {
	Shared(t) // only for the -short skip and to run after the shared start
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	c, err := Start(ctx, Options{TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			c.Stop()
		}
	}()
	if _, err := c.Client.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{}); err != nil {
		t.Fatal(err)
	}
	pids := []int{c.etcd.PID(), c.apiserver.PID(), c.kcm.PID()}
	for _, pid := range pids {
		if !alive(pid) {
			t.Fatalf("pid %d not running", pid)
		}
	}
	start := time.Now()
	err = c.Stop()
	stopped = true
	if err != nil {
		t.Fatalf("Stop: %v", err)
	}
	t.Logf("Stop took %v", time.Since(start))
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("pid %d still running after Stop", pid)
		}
	}
	if _, err := os.Stat(c.Dir); !os.IsNotExist(err) {
		t.Errorf("%s still there after Stop: %v", c.Dir, err)
	}
	if err := c.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

// TestStartFailureShowsComponentLog makes the real etcd fail (an unknown
// flag, through a wrapper) and checks that Start says which component died,
// quotes its log and leaves nothing running.
func TestStartFailureShowsComponentLog(t *testing.T) {
	c := Shared(t)
	real := filepath.Dir(c.etcd.cmd.Path)
	bin := t.TempDir()
	for _, name := range []string{"kube-apiserver", "kube-controller-manager"} {
		if err := os.Symlink(filepath.Join(real, name), filepath.Join(bin, name)); err != nil {
			t.Fatal(err)
		}
	}
	wrapper := "#!/bin/sh\nexec " + filepath.Join(real, "etcd") + " --no-such-flag-for-this-test \"$@\"\n"
	if err := os.WriteFile(filepath.Join(bin, "etcd"), []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	_, err := Start(ctx, Options{BinDir: bin, TempDir: tmp})
	if err == nil {
		t.Fatal("Start succeeded with a broken etcd")
	}
	for _, want := range []string{"etcd exited", "no-such-flag-for-this-test", "logs in " + tmp} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not contain %q:\n%v", want, err)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// BenchmarkClusterStart measures a cold start of a fresh control plane
// (certificates, etcd, kube-apiserver, kube-controller-manager, until the
// default ServiceAccount exists) and the components' RSS once ready. The
// project's budget is 15 s.
func BenchmarkClusterStart(b *testing.B) {
	for range b.N {
		c, err := Start(context.Background(), Options{})
		if err != nil {
			b.Fatal(err)
		}
		var rss int64
		for _, p := range []*Process{c.etcd, c.apiserver, c.kcm} {
			n, _ := p.RSS()
			rss += n
		}
		b.ReportMetric(c.StartupTime.Seconds(), "s-startup")
		b.ReportMetric(float64(rss)/1e6, "MB-RSS")
		if err := c.Stop(); err != nil {
			b.Fatal(err)
		}
	}
}
