package failover

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/volume"
	"github.com/nfs-provisioner/nfs-provisioner/test/framework"
	"github.com/nfs-provisioner/nfs-provisioner/test/framework/cephbed"
	"github.com/nfs-provisioner/nfs-provisioner/test/nfsclient"
)

// serviceHost is the Service's address; the replicas listen on their own.
const serviceHost = "127.0.0.4"

var replicaHosts = []string{"127.0.0.2", "127.0.0.3"}

// replica is one provisioner process tree.
type replica struct {
	name      string
	host      string
	exportDir string
	httpPort  int
	spec      *framework.ProvisionerSpec
	proc      *framework.Process
}

func (r *replica) readyURL() string { return fmt.Sprintf("http://127.0.0.1:%d/readyz", r.httpPort) }

func (r *replica) ready() bool {
	resp, err := http.Get(r.readyURL())
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// pair is two replicas of one store behind a Service.
type pair struct {
	c        *framework.Cluster
	bed      *cephbed.Cluster
	ns       string
	name     string // -provisioner
	class    string
	group    string
	nfsPort  int
	mntPort  int
	replicas [2]*replica
	svc      *framework.ServiceProxy
}

// newPair starts replica 0, waits until it serves, then replica 1 (passive),
// and the Service in front of them.
func newPair(t *testing.T) *pair {
	t.Helper()
	bed := cephbed.Shared(t)
	c := framework.Shared(t)
	// The replicas stand for pods with network namespaces of their own;
	// here they share the host's portmapper, which must not be a child of
	// the replica the test kills or freezes.
	framework.Portmapper(t)
	ns := c.Namespace(t)
	p := &pair{c: c, bed: bed, ns: ns, name: "example.com/nfs-" + ns, class: ns + "-ceph", group: "fo-" + ns}
	ports, err := framework.FreePorts(2)
	if err != nil {
		t.Fatal(err)
	}
	p.nfsPort, p.mntPort = ports[0], ports[1]
	dir, err := os.MkdirTemp("", "fo-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	for i := range p.replicas {
		hp, err := framework.FreePorts(1)
		if err != nil {
			t.Fatal(err)
		}
		r := &replica{name: fmt.Sprintf("r%d", i), host: replicaHosts[i], exportDir: filepath.Join(dir, fmt.Sprintf("r%d", i)), httpPort: hp[0]}
		r.spec = &framework.ProvisionerSpec{
			Name: p.name, Namespace: ns, ExportDir: r.exportDir, Kubeconfig: c.Kubeconfig,
			NFSPort: p.nfsPort, MountdPort: p.mntPort, HTTPPort: r.httpPort, NoWait: true,
			LogFile: filepath.Join(dir, r.name+".log"),
			Args: []string{
				"-failover", "-leader-elect",
				"-ceph-conf=" + bed.ConfPath(), "-ceph-fs=" + cephbed.FSName, "-ceph-subvolume-group=" + p.group,
				"-bind-address=" + r.host, "-server-hostname=" + serviceHost,
				"-grace-period=5", "-v=2",
			},
			Env: []string{"NFS_PROVISIONER_TEST_REPLICA=" + r.name},
		}
		p.replicas[i] = r
		p.start(t, r)
		if i == 0 {
			framework.Eventually(t, 90*time.Second, "replica r0 serving", func() (bool, error) {
				if exited(r.proc) {
					return false, fmt.Errorf("r0 exited: %v\n%s", r.proc.ExitErr(), r.proc.Tail(40))
				}
				return r.ready(), nil
			})
		}
	}
	svc, err := framework.StartServiceProxy(serviceHost, []int{p.nfsPort, p.mntPort},
		framework.Backend{Host: p.replicas[0].host, ReadyURL: p.replicas[0].readyURL()},
		framework.Backend{Host: p.replicas[1].host, ReadyURL: p.replicas[1].readyURL()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	p.svc = svc
	// The passive replica must stay passive while the active serves.
	time.Sleep(2 * time.Second)
	if p.replicas[1].ready() {
		t.Fatal("the passive replica is ready while the active one serves")
	}
	p.makeClass(t)
	return p
}

func exited(p *framework.Process) bool {
	select {
	case <-p.Exited():
		return true
	default:
		return false
	}
}

// start launches r; on cleanup it is stopped (if still running) and the
// mount its ceph-fuse may have left behind is detached.
func (p *pair) start(t *testing.T, r *replica) {
	t.Helper()
	proc, err := framework.StartProvisioner(t.Context(), r.spec)
	if err != nil {
		t.Fatal(err)
	}
	r.proc = proc
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s log tail:\n%s", r.name, proc.Tail(60))
		}
		logMilestones(t, r)
		_ = proc.Stop(20 * time.Second)
		// A killed replica's ceph-fuse dies with it and leaves a dead mount.
		for unix.Unmount(r.exportDir, unix.MNT_DETACH) == nil {
		}
	})
}

func (p *pair) makeClass(t *testing.T) {
	t.Helper()
	immediate := storagev1.VolumeBindingImmediate
	reclaim := v1.PersistentVolumeReclaimDelete
	sc := &storagev1.StorageClass{
		ObjectMeta: metav1.ObjectMeta{Name: p.class}, Provisioner: p.name, ReclaimPolicy: &reclaim, VolumeBindingMode: &immediate,
		Parameters: map[string]string{"fsType": "cephfs", "uid": "999", "gid": "999", "mode": "0770"},
	}
	if _, err := p.c.Client.StorageV1().StorageClasses().Create(t.Context(), sc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = p.c.Client.StorageV1().StorageClasses().Delete(context.Background(), p.class, metav1.DeleteOptions{})
	})
}

// claim creates a claim of the pair's class and returns its PV once Bound.
func (p *pair) claim(t *testing.T, name string) *v1.PersistentVolume {
	t.Helper()
	pvc := framework.Claim(p.ns, name, p.class, "64Mi", v1.ReadWriteMany)
	if _, err := p.c.Client.CoreV1().PersistentVolumeClaims(p.ns).Create(t.Context(), pvc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	pv, err := framework.WaitBound(ctx, p.c.Client, p.ns, name)
	if err != nil {
		t.Fatal(err)
	}
	if pv.Spec.NFS == nil || pv.Spec.NFS.Server != serviceHost {
		t.Fatalf("PV %s does not name the Service address %s: %+v", pv.Name, serviceHost, pv.Spec.NFS)
	}
	return pv
}

// target is the volume of pv at host (the Service's or a replica's).
func (p *pair) target(pv *v1.PersistentVolume, host string, version int) nfsclient.Target {
	return nfsclient.Target{Host: host, NFSPort: p.nfsPort, MountPort: p.mntPort, Pseudo: pv.Spec.NFS.Path,
		Version: version, UID: 999, GID: 999}
}

// subvolumePath is where the claim's volume is in CephFS.
func (p *pair) subvolumePath(t *testing.T, pv *v1.PersistentVolume) string {
	t.Helper()
	var info struct {
		Path string `json:"path"`
	}
	name := pv.Annotations[volume.AnnDirectory]
	if name == "" {
		t.Fatalf("PV %s has no volume name annotation: %v", pv.Name, pv.Annotations)
	}
	if err := p.bed.CephJSON(t.Context(), &info, "fs", "subvolume", "info", cephbed.FSName, name, "--group_name", p.group); err != nil {
		t.Fatal(err)
	}
	return info.Path
}

// milestones are the log lines that time a takeover.
var milestones = regexp.MustCompile(`Passive: waiting|acquired lease|Won the Lease|Evicted and blocklisted|Fenced and mounted|NFS server started|Took over|not renewed|exiting now|Provisioner failed`)

// logMilestones logs r's takeover milestones, for the figures.
func logMilestones(t *testing.T, r *replica) {
	data, err := os.ReadFile(r.spec.LogFile)
	if err != nil {
		return
	}
	var lines []string
	for _, l := range strings.Split(string(data), "\n") {
		if milestones.MatchString(l) {
			lines = append(lines, l)
		}
	}
	t.Logf("%s milestones:\n%s", r.name, strings.Join(lines, "\n"))
}
