package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	v1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/ganesha"
	"github.com/nfs-provisioner/nfs-provisioner/pkg/volume"
	"github.com/nfs-provisioner/nfs-provisioner/test/framework"
	"github.com/nfs-provisioner/nfs-provisioner/test/nfsclient"
)

// What deploy/ ships. The tests read the manifests and check that they
// agree with these, so a rename in one file but not another fails here.
const (
	shippedNamespace      = "nfs-provisioner"
	shippedServiceAccount = "nfs-provisioner"
	shippedService        = "nfs-provisioner"
	shippedStatefulSet    = "nfs-provisioner"
	shippedProvisioner    = "nfs-provisioner/nfs"
	shippedClass          = "nfs"
	shippedImage          = "ghcr.io/nfs-provisioner/nfs-provisioner:0.1.0"
)

// TestDeployManifests: each file in deploy/ and their kustomize composition
// pass a server-side dry run and then apply for real; the composition is the
// provisioner and its class, and no database; the rendered objects agree
// with each other (class and flag name the same provisioner, the Lease rule
// names the Lease the binary takes, the Service carries the container's
// ports); the StatefulSet controller accepts the provisioner's pod; and the
// database's statefulset.yaml, applied on its own, gets its claims Bound. No
// kubelet runs, so no pod ever starts (test/image runs the image under the
// same securityContext).
func TestDeployManifests(t *testing.T) {
	c := framework.Shared(t)
	ns := c.Namespace(t)
	kc := namespacedKubeconfig(t, c, ns)
	uninstallShipped(t, c)
	t.Cleanup(func() { uninstallShipped(t, c) })
	t.Cleanup(func() { removeDatabase(t, c, kc, ns) })

	rendered, err := kubectl(kc, nil, "kustomize", deployPath(t, ""))
	if err != nil {
		t.Fatal(err)
	}
	objs := decodeManifest(t, []byte(rendered))
	checkRendered(t, objs, decodeManifest(t, readDeployFile(t, "statefulset.yaml")))

	applyNamespacesFirst(t, kc, "kubectl kustomize deploy/", objs)

	// Every file on its own, as a user may apply it.
	for _, f := range []string{"storageclass.yaml", "provisioner.yaml", "statefulset.yaml"} {
		applyDryRunThenReal(t, kc, "deploy/"+f, readDeployFile(t, f))
	}

	svc, err := c.Client.CoreV1().Services(shippedNamespace).Get(t.Context(), shippedService, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if svc.Spec.ClusterIP == "" || svc.Spec.ClusterIP == v1.ClusterIPNone {
		t.Errorf("Service %s has ClusterIP %q; PVs need a stable address", shippedService, svc.Spec.ClusterIP)
	}
	if _, err := c.Client.AppsV1().StatefulSets(ns).Get(t.Context(), "mysql", metav1.GetOptions{}); err != nil {
		t.Errorf("the database StatefulSet, applied on its own, is not in the context's namespace %s: %v", ns, err)
	}
	// The controller creating the pod proves the template passes admission,
	// Pod Security included.
	framework.Eventually(t, 60*time.Second, "pod "+shippedStatefulSet+"-0 created", func() (bool, error) {
		pod, err := c.Client.CoreV1().Pods(shippedNamespace).Get(t.Context(), shippedStatefulSet+"-0", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if got := pod.Spec.Containers[0].Image; got != shippedImage {
			return false, fmt.Errorf("pod image %q, want %q", got, shippedImage)
		}
		return true, nil
	})

	// With the provisioner running, the MySQL StatefulSet's claims for every
	// replica go Bound. The StatefulSet is OrderedReady and no kubelet runs,
	// so the stand-in reports each pod Ready as a kubelet would; the real
	// StatefulSet controller then makes the next pod and its claim.
	p := startProvisioner(t, c, provisionerConfig{Namespace: shippedNamespace, Name: shippedProvisioner})
	standIn, stopStandIn := context.WithCancel(t.Context())
	standInDone := make(chan error, 1)
	go func() { standInDone <- framework.KubeletStandIn(standIn, c.Client, ns, "app=mysql") }()
	db, err := c.Client.AppsV1().StatefulSets(ns).Get(t.Context(), "mysql", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var claims []string
	for i := range int(*db.Spec.Replicas) {
		name := fmt.Sprintf("%s-mysql-%d", db.Spec.VolumeClaimTemplates[0].Name, i)
		pv := waitBound(t, c, ns, name)
		if pv.Spec.StorageClassName != shippedClass || pv.Annotations["pv.kubernetes.io/provisioned-by"] != shippedProvisioner {
			t.Errorf("claim %s bound to %s of class %q by %q", name, pv.Name, pv.Spec.StorageClassName, pv.Annotations["pv.kubernetes.io/provisioned-by"])
		}
		claims = append(claims, name)
	}
	stopStandIn()
	if err := <-standInDone; err != nil {
		t.Fatal(err)
	}
	if n := len(p.exports(t.Context())); n != len(claims) {
		t.Errorf("%d exports for %d claims", n, len(claims))
	}
	t.Logf("every replica's claim of the separately applied database is Bound: %v", claims)
	// Delete the database and its claims while the provisioner still runs,
	// so their PVs, exports and directories go too.
	removeDatabase(t, c, kc, ns)
	framework.Eventually(t, 60*time.Second, "the database's volumes deleted", func() (bool, error) {
		return len(p.volumeDirs()) == 0 && len(p.exports(t.Context())) == 0, nil
	})

	// Why the namespace is labelled privileged: under "baseline" the same pod
	// is refused.
	baseline, err := c.Client.CoreV1().Namespaces().Create(t.Context(), &v1.Namespace{ObjectMeta: metav1.ObjectMeta{
		GenerateName: "deploy-baseline-",
		Labels:       map[string]string{"pod-security.kubernetes.io/enforce": "baseline"},
	}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.Client.CoreV1().Namespaces().Delete(context.Background(), baseline.Name, metav1.DeleteOptions{})
	})
	var sts appsv1.StatefulSet
	for _, o := range objs {
		if o.GetKind() == "StatefulSet" && o.GetName() == shippedStatefulSet {
			fromUnstructured(t, o, &sts)
		}
	}
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "probe"}, Spec: sts.Spec.Template.Spec}
	pod.Spec.ServiceAccountName = "" // not created in this namespace; not what is checked
	_, err = c.Client.CoreV1().Pods(baseline.Name).Create(t.Context(), pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "DAC_READ_SEARCH") || !strings.Contains(err.Error(), "hostPath") {
		t.Errorf("the provisioner's pod under Pod Security baseline: err = %v; want Forbidden for DAC_READ_SEARCH and hostPath", err)
	}
}

// TestRBACShippedServiceAccount runs the real provisioner with a token of the
// shipped ServiceAccount, holding only the shipped roles, with leader
// election on and the server address taken from the shipped Service. A claim
// of the shipped class is provisioned and written through NFS under the
// class's least-privilege parameters; a claim of a WaitForFirstConsumer class
// of the same provisioner is provisioned for its node; a restart repairs a duplicate export ID
// (PV patch, event on a PV); the claims are deleted; nothing is forbidden.
func TestRBACShippedServiceAccount(t *testing.T) {
	c := framework.Shared(t)
	claimNS := c.Namespace(t)
	uninstallShipped(t, c)
	t.Cleanup(func() { uninstallShipped(t, c) })

	// The RBAC objects and the Service, not the StatefulSet: its pod would
	// never run here, the test runs the binary instead.
	var subset []*unstructured.Unstructured
	for _, o := range decodeManifest(t, readDeployFile(t, "provisioner.yaml")) {
		if o.GetKind() != "StatefulSet" {
			subset = append(subset, o)
		}
	}
	applyNamespacesFirst(t, c.Kubeconfig, "provisioner.yaml without its StatefulSet", subset)
	applyDryRunThenReal(t, c.Kubeconfig, "deploy/storageclass.yaml", readDeployFile(t, "storageclass.yaml"))

	cfg, err := c.ServiceAccountConfig(t.Context(), shippedNamespace, shippedServiceAccount)
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(t.TempDir(), "sa.kubeconfig")
	if err := c.WriteKubeconfig(cfg, kubeconfig); err != nil {
		t.Fatal(err)
	}
	sa, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// The RBAC authorizer learns of new bindings through an informer.
	framework.Eventually(t, 30*time.Second, "the shipped roles in force", func() (bool, error) {
		for _, attr := range []authorizationv1.ResourceAttributes{
			{Verb: "create", Resource: "persistentvolumes"},
			{Verb: "get", Resource: "services", Namespace: shippedNamespace, Name: shippedService},
		} {
			review, err := sa.AuthorizationV1().SelfSubjectAccessReviews().Create(t.Context(), &authorizationv1.SelfSubjectAccessReview{
				Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &attr},
			}, metav1.CreateOptions{})
			if err != nil || !review.Status.Allowed {
				return false, err
			}
		}
		return true, nil
	})
	// The token is no admin: this is what a missing rule looks like, so the
	// log check below could see one.
	if _, err := sa.CoreV1().Secrets(shippedNamespace).List(t.Context(), metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("listing Secrets with the provisioner's token: err = %v, want Forbidden", err)
	}
	if _, err := sa.CoreV1().Services(shippedNamespace).Get(t.Context(), "kubernetes-other", metav1.GetOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("getting another Service: err = %v, want Forbidden (the rule names one Service)", err)
	}

	p := startProvisioner(t, c, provisionerConfig{
		Name:       shippedProvisioner,
		Namespace:  shippedNamespace,
		Kubeconfig: kubeconfig,
		// The harness sets -server-hostname=127.0.0.1; a later flag wins,
		// and empty means: ask the Service.
		ExtraArgs: []string{"-leader-elect=true", "-server-hostname="},
		Env:       map[string]string{"SERVICE_NAME": shippedService},
	})

	createClaim(t, c, framework.Claim(claimNS, "data", shippedClass, "1Gi"))
	createClaim(t, c, framework.Claim(claimNS, "data2", shippedClass, "1Gi"))
	pv := waitBound(t, c, claimNS, "data")
	pv2 := waitBound(t, c, claimNS, "data2")

	// A WaitForFirstConsumer class: the claim names a node, which the
	// library reads (nodes get). No scheduler runs here, so the test names
	// the node as the scheduler would.
	node, err := c.Client.CoreV1().Nodes().Create(t.Context(), &v1.Node{ObjectMeta: metav1.ObjectMeta{GenerateName: "deploy-rbac-"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Client.CoreV1().Nodes().Delete(context.Background(), node.Name, metav1.DeleteOptions{}) })
	wfc := storagev1.VolumeBindingWaitForFirstConsumer
	reclaim := v1.PersistentVolumeReclaimDelete
	wfcClass, err := c.Client.StorageV1().StorageClasses().Create(t.Context(), &storagev1.StorageClass{
		ObjectMeta: metav1.ObjectMeta{Name: claimNS + "-wfc"}, Provisioner: shippedProvisioner,
		ReclaimPolicy: &reclaim, VolumeBindingMode: &wfc,
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.Client.StorageV1().StorageClasses().Delete(context.Background(), wfcClass.Name, metav1.DeleteOptions{})
	})
	late := framework.Claim(claimNS, "late", wfcClass.Name, "1Gi")
	late.Annotations = map[string]string{"volume.kubernetes.io/selected-node": node.Name}
	createClaim(t, c, late)
	pvLate := waitBound(t, c, claimNS, "late")

	svc, err := c.Client.CoreV1().Services(shippedNamespace).Get(t.Context(), shippedService, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pv.Spec.NFS == nil || pv.Spec.NFS.Server != svc.Spec.ClusterIP {
		t.Fatalf("PV NFS source %+v; want the Service's ClusterIP %s", pv.Spec.NFS, svc.Spec.ClusterIP)
	}
	if !slices.Equal(pv.Spec.MountOptions, []string{"vers=4.1", "hard"}) {
		t.Errorf("PV mount options %v, want the class's [vers=4.1 hard]", pv.Spec.MountOptions)
	}
	if pv.Annotations[volume.AnnVolumeGID] != "999" {
		t.Errorf("PV annotation %s = %q, want 999", volume.AnnVolumeGID, pv.Annotations[volume.AnnVolumeGID])
	}
	dir := filepath.Join(p.cfg.ExportDir, pv.Annotations[volume.AnnDirectory])
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 999 || st.Gid != 999 || fi.Mode().Perm() != 0o770 {
		t.Errorf("volume directory %d:%d %v, want 999:999 0770 from the shipped class", st.Uid, st.Gid, fi.Mode().Perm())
	}

	// The PV's server is a ClusterIP, which nothing routes here; the
	// provisioner's ganesha listens on loopback.
	target := nfsclient.Target{Host: "127.0.0.1", NFSPort: p.NFSPort, MountPort: p.MountPort, Pseudo: pv.Spec.NFS.Path, Version: 4}
	asDB := target
	asDB.UID, asDB.GID = 999, 999
	data := []byte("written as uid 999 through the shipped class\n")
	if err := nfsclient.WriteFile(t.Context(), asDB, "db.txt", data); err != nil {
		t.Fatalf("write as uid 999: %v", err)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "db.txt")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("file in the store: %q, %v", got, err)
	}
	if err := nfsclient.WriteFile(t.Context(), target, "root.txt", []byte("x")); err == nil {
		t.Error("client root could write into the 0770 999:999 volume: rootSquash of the shipped class is not in effect")
	}

	lease, err := c.Client.CoordinationV1().Leases(shippedNamespace).Get(t.Context(), strings.ReplaceAll(shippedProvisioner, "/", "-"), metav1.GetOptions{})
	if err != nil {
		t.Fatalf("leader-election Lease: %v", err)
	}
	if lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity == "" {
		t.Errorf("Lease %s has no holder", lease.Name)
	}
	// Events are written under the token too (the claim's namespace is not
	// the provisioner's).
	framework.Eventually(t, 30*time.Second, "a ProvisioningSucceeded event on the claim", func() (bool, error) {
		events, err := c.Client.CoreV1().Events(claimNS).List(t.Context(), metav1.ListOptions{FieldSelector: "involvedObject.name=data"})
		if err != nil {
			return false, err
		}
		return slices.ContainsFunc(events.Items, func(e v1.Event) bool { return e.Reason == "ProvisioningSucceeded" }), nil
	})

	// Start-up reconciliation under the token: give the second PV the first
	// one's export ID while the provisioner is down; at restart it must move
	// one of them (the younger) to a new ID, record it on that PV (patch on
	// PVs) and say so with a Warning event on the PV (events in namespace
	// default).
	p.stop()
	logs := p.log()
	shared := pv.Annotations[volume.AnnExportID]
	dup := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, volume.AnnExportID, shared)
	if _, err := c.Client.CoreV1().PersistentVolumes().Patch(t.Context(), pv2.Name, types.MergePatchType, []byte(dup), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	p.restart()
	var moved string
	framework.Eventually(t, 30*time.Second, "the duplicate export ID "+shared+" repaired", func() (bool, error) {
		ids := map[string]string{}
		for _, name := range []string{pv.Name, pv2.Name} {
			got, err := c.Client.CoreV1().PersistentVolumes().Get(t.Context(), name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			ids[name] = got.Annotations[volume.AnnExportID]
			if ids[name] != shared {
				moved = name
			}
		}
		return ids[pv.Name] != "" && ids[pv2.Name] != "" && ids[pv.Name] != ids[pv2.Name], nil
	})
	framework.Eventually(t, 30*time.Second, "a "+volume.ReasonDuplicateExportID+" event on "+moved, func() (bool, error) {
		events, err := c.Client.CoreV1().Events(metav1.NamespaceDefault).List(t.Context(), metav1.ListOptions{FieldSelector: "involvedObject.name=" + moved})
		if err != nil {
			return false, err
		}
		return slices.ContainsFunc(events.Items, func(e v1.Event) bool { return e.Reason == volume.ReasonDuplicateExportID }), nil
	})

	// Deletion uses delete (and the library's finalizer patch) on PVs.
	for _, name := range []string{"data", "data2", "late"} {
		if err := c.Client.CoreV1().PersistentVolumeClaims(claimNS).Delete(t.Context(), name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, gone := range []*v1.PersistentVolume{pv, pv2, pvLate} {
		waitPVGone(t, c, gone.Name)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("volume directory after deletion: %v, want it gone (onDelete: delete)", err)
	}

	if logs += p.log(); strings.Contains(strings.ToLower(logs), "forbidden") {
		t.Errorf("the provisioner was refused something under the shipped RBAC:\n%s", grepLines(logs, "forbidden"))
	}
}

// Linux capability numbers (linux/capability.h) of the ones that matter here.
var capabilityBits = map[string]uint{
	"chown": 0, "dac_override": 1, "dac_read_search": 2, "fowner": 3, "fsetid": 4, "kill": 5,
	"setgid": 6, "setuid": 7, "setpcap": 8, "net_bind_service": 10, "net_raw": 13,
	"sys_chroot": 18, "sys_resource": 24, "mknod": 27, "audit_write": 29, "setfcap": 31,
}

// runtimeDefaultCapabilities is what containerd and Docker give a container
// that asks for nothing more.
var runtimeDefaultCapabilities = []string{
	"chown", "dac_override", "fsetid", "fowner", "mknod", "net_raw", "setgid", "setuid",
	"setfcap", "setpcap", "net_bind_service", "sys_chroot", "kill", "audit_write",
}

// TestCapabilitiesDefaultPlusDACReadSearch runs the provisioner the way the
// shipped pod (and the storage e2e suite's) runs it: the runtime's default
// capabilities plus DAC_READ_SEARCH, no privilege escalation. Its ganesha
// starts with a soft open-files limit below the hard one, as in a container,
// and must raise it without SYS_RESOURCE. It provisions, and real NFS
// clients write to the volume as root and as another user.
func TestCapabilitiesDefaultPlusDACReadSearch(t *testing.T) {
	c := framework.Shared(t)
	ns := c.Namespace(t)

	caps := append(slices.Clone(runtimeDefaultCapabilities), "dac_read_search")
	var mask uint64
	for _, name := range caps {
		mask |= 1 << capabilityBits[name]
	}
	set := "-all,+" + strings.Join(caps, ",+")
	var nofile syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &nofile); err != nil {
		t.Fatal(err)
	}
	if nofile.Max < 2 {
		t.Fatalf("hard open-files limit %d leaves nothing to raise", nofile.Max)
	}
	soft := min(1024, nofile.Max/2)
	wrap := []string{
		"prlimit", fmt.Sprintf("--nofile=%d:%d", soft, nofile.Max),
		"setpriv", "--bounding-set", set, "--inh-caps", set, "--ambient-caps", set, "--no-new-privs", "--",
	}
	p := startProvisioner(t, c, provisionerConfig{Namespace: ns, Wrap: wrap})

	// prlimit and setpriv exec, so the harness's PID is the provisioner.
	prov := procStatus(t, p.proc.PID())
	if prov["CapBnd"] != mask || prov["CapEff"] != mask || prov["CapPrm"] != mask || prov["NoNewPrivs"] != 1 {
		t.Fatalf("provisioner capabilities: bounding %#x effective %#x permitted %#x no_new_privs %d; want %#x and 1",
			prov["CapBnd"], prov["CapEff"], prov["CapPrm"], prov["NoNewPrivs"], mask)
	}
	run := filepath.Join(ganesha.DefaultRuntimeDir(filepath.Join(p.cfg.ExportDir, volume.StateDirName, "ganesha")), "run")
	for _, child := range []string{"ganesha", "dbus"} {
		pid := readPidFile(t, filepath.Join(run, child+".pid"))
		st := procStatus(t, pid)
		if st["PPid"] != uint64(p.proc.PID()) {
			t.Fatalf("%s (pid %d) is not the provisioner's child (ppid %d)", child, pid, st["PPid"])
		}
		// ganesha may drop capabilities it does not need; it can never gain.
		if st["CapBnd"] != mask || st["CapEff"]&^mask != 0 || st["CapPrm"]&^mask != 0 {
			t.Errorf("%s capabilities: bounding %#x effective %#x permitted %#x; want within %#x", child, st["CapBnd"], st["CapEff"], st["CapPrm"], mask)
		}
		if child == "ganesha" && st["CapEff"]&(1<<capabilityBits["dac_read_search"]) == 0 {
			t.Errorf("ganesha runs without DAC_READ_SEARCH (effective %#x)", st["CapEff"])
		}
	}
	ganeshaPID := readPidFile(t, filepath.Join(run, "ganesha.pid"))
	cur, hard := openFilesLimit(t, ganeshaPID)
	if cur != hard || cur <= soft {
		t.Errorf("ganesha's open-files limit %d (hard %d); want it raised from %d to the hard limit without SYS_RESOURCE", cur, hard, soft)
	}
	g := procStatus(t, ganeshaPID)
	t.Logf("capabilities %s = %#x; provisioner effective %#x; ganesha bounding %#x effective %#x; ganesha open files %d of %d (started at %d)",
		set, mask, prov["CapEff"], g["CapBnd"], g["CapEff"], cur, hard, soft)

	class := storageClass(t, c, ns+"-caps", p.cfg.Name, nil, v1.PersistentVolumeReclaimDelete)
	createClaim(t, c, framework.Claim(ns, "data", class.Name, "10Mi", v1.ReadWriteMany))
	pv := waitBound(t, c, ns, "data")
	dir := filepath.Join(p.cfg.ExportDir, pv.Annotations[volume.AnnDirectory])

	v3 := []byte(strings.Repeat("written over NFSv3 under the pod's capabilities\n", 2000))
	nfsWrite(t, p, pv, "v3.txt", v3, 3)
	v4 := []byte("written over NFSv4.1 under the pod's capabilities\n")
	nfsWrite(t, p, pv, "v4.txt", v4, 4)
	if got := nfsRead(t, p, pv, "v3.txt", 4); !bytes.Equal(got, v3) {
		t.Fatalf("read back %d bytes over v4, want %d", len(got), len(v3))
	}
	// ganesha must take on the client's identity for a non-root user:
	// CAP_SETUID/SETGID from the default set.
	user := p.target(pv, 3)
	user.UID, user.GID = 1000, 1000
	if err := nfsclient.WriteFile(t.Context(), user, "user.txt", []byte("uid 1000\n")); err != nil {
		t.Fatalf("write as uid 1000: %v", err)
	}
	for name, want := range map[string]uint32{"v3.txt": 0, "v4.txt": 0, "user.txt": 1000} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("file in the store: %v", err)
		}
		if uid := fi.Sys().(*syscall.Stat_t).Uid; uid != want {
			t.Errorf("%s is owned by uid %d, want %d", name, uid, want)
		}
	}

	if err := c.Client.CoreV1().PersistentVolumeClaims(ns).Delete(t.Context(), "data", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitPVGone(t, c, pv.Name)
	nfsRefused(t, p, pv)
}

// checkRendered checks that the kustomize output's objects agree with each
// other and with the binary, and that none of statefulset.yaml's objects (db)
// is among them.
func checkRendered(t *testing.T, objs, db []*unstructured.Unstructured) {
	t.Helper()
	var (
		class   storagev1.StorageClass
		sts     appsv1.StatefulSet
		svc     v1.Service
		role    rbacv1.Role
		found   = map[string]bool{}
		dbNames = map[string]bool{}
	)
	for _, o := range db {
		dbNames[o.GetKind()+"/"+o.GetName()] = true
	}
	for _, o := range objs {
		key := o.GetKind() + "/" + o.GetName()
		switch {
		case o.GetKind() == "StorageClass" && o.GetName() == shippedClass:
			fromUnstructured(t, o, &class)
		case o.GetKind() == "StatefulSet" && o.GetName() == shippedStatefulSet:
			fromUnstructured(t, o, &sts)
		case o.GetKind() == "Service" && o.GetName() == shippedService:
			fromUnstructured(t, o, &svc)
		case o.GetKind() == "Role" && o.GetNamespace() == shippedNamespace:
			fromUnstructured(t, o, &role)
		}
		found[key] = true
		switch {
		case dbNames[key]:
			t.Errorf("kubectl apply -k deploy/ would install the database's %s", key)
		case o.GetKind() == "Namespace" || o.GetKind() == "StorageClass" || strings.HasPrefix(o.GetKind(), "Cluster"):
		case o.GetNamespace() != shippedNamespace:
			t.Errorf("%s is in namespace %q, want %s", key, o.GetNamespace(), shippedNamespace)
		}
	}
	for _, want := range []string{"Namespace/" + shippedNamespace, "ServiceAccount/" + shippedServiceAccount, "ClusterRole/nfs-provisioner",
		"ClusterRoleBinding/nfs-provisioner", "Role/nfs-provisioner", "RoleBinding/nfs-provisioner", "StorageClass/" + shippedClass} {
		if !found[want] {
			t.Errorf("the kustomize output lacks %s", want)
		}
	}

	if class.Provisioner != shippedProvisioner || class.ReclaimPolicy == nil || *class.ReclaimPolicy != v1.PersistentVolumeReclaimDelete ||
		class.VolumeBindingMode == nil || *class.VolumeBindingMode != storagev1.VolumeBindingImmediate ||
		class.AllowVolumeExpansion == nil || *class.AllowVolumeExpansion || !slices.Equal(class.MountOptions, []string{"vers=4.1", "hard"}) {
		t.Errorf("StorageClass %s: provisioner %q reclaim %v binding %v expansion %v mountOptions %v", shippedClass,
			class.Provisioner, class.ReclaimPolicy, class.VolumeBindingMode, class.AllowVolumeExpansion, class.MountOptions)
	}
	if _, err := volume.ParseParams(class.Parameters); err != nil {
		t.Errorf("the provisioner would refuse the shipped class: %v", err)
	}

	if len(sts.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("provisioner StatefulSet has %d containers, want 1", len(sts.Spec.Template.Spec.Containers))
	}
	ctr := sts.Spec.Template.Spec.Containers[0]
	if ctr.Image != shippedImage {
		t.Errorf("image %q, want %q from kustomization.yaml", ctr.Image, shippedImage)
	}
	if !slices.Contains(ctr.Args, "-provisioner="+class.Provisioner) {
		t.Errorf("args %v do not name the class's provisioner %q", ctr.Args, class.Provisioner)
	}
	env := map[string]v1.EnvVar{}
	for _, e := range ctr.Env {
		env[e.Name] = e
	}
	if e := env["SERVICE_NAME"]; e.Value != svc.Name {
		t.Errorf("SERVICE_NAME %q, want the Service %q", e.Value, svc.Name)
	}
	if e := env["POD_IP"]; e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "status.podIP" {
		t.Errorf("POD_IP is not from the downward API: %+v", e)
	}
	if e := env["POD_NAMESPACE"]; e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "metadata.namespace" {
		t.Errorf("POD_NAMESPACE is not from the downward API: %+v", e)
	}
	checkHardened(t, sts.Spec.Template.Spec)
	if ctr.LivenessProbe == nil || ctr.LivenessProbe.HTTPGet == nil || ctr.LivenessProbe.HTTPGet.Path != "/healthz" ||
		ctr.ReadinessProbe == nil || ctr.ReadinessProbe.HTTPGet == nil || ctr.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Error("probes: want liveness /healthz and readiness /readyz")
	}
	if ctr.Resources.Requests.Cpu().IsZero() || ctr.Resources.Requests.Memory().IsZero() {
		t.Error("no cpu and memory requests")
	}
	// GOMEMLIMIT is read by the Go runtime at start, which refuses a
	// malformed one; it bounds the provisioner alone, so it must leave room
	// for ganesha under the container's limit.
	if limit, err := goMemLimit(env["GOMEMLIMIT"].Value); err != nil {
		t.Error(err)
	} else if mem := ctr.Resources.Limits.Memory(); mem.IsZero() || limit > mem.Value()/4 {
		t.Errorf("GOMEMLIMIT %d bytes against a container memory limit of %s: want a limit, at least four times GOMEMLIMIT", limit, mem)
	}
	if sts.Spec.Template.Spec.ServiceAccountName != shippedServiceAccount {
		t.Errorf("serviceAccountName %q", sts.Spec.Template.Spec.ServiceAccountName)
	}
	mounted := false
	for _, m := range ctr.VolumeMounts {
		for _, vol := range sts.Spec.Template.Spec.Volumes {
			if vol.Name == m.Name && m.MountPath == "/export" && vol.HostPath != nil &&
				vol.HostPath.Type != nil && *vol.HostPath.Type == v1.HostPathDirectoryOrCreate {
				mounted = true
			}
		}
	}
	if !mounted || !slices.Contains(ctr.Args, "-export-dir=/export") {
		t.Error("the export dir is not a DirectoryOrCreate hostPath mounted at /export and passed as -export-dir")
	}

	servicePorts := map[string]bool{}
	for _, sp := range svc.Spec.Ports {
		servicePorts[sp.TargetPort.String()+"/"+string(sp.Protocol)] = true
	}
	for _, cp := range ctr.Ports {
		if cp.Name != "http" && !servicePorts[cp.Name+"/"+string(cp.Protocol)] {
			t.Errorf("container port %s %d/%s is not in the Service", cp.Name, cp.ContainerPort, cp.Protocol)
		}
	}

	lease := strings.ReplaceAll(shippedProvisioner, "/", "-")
	leaseRule := slices.ContainsFunc(role.Rules, func(r rbacv1.PolicyRule) bool {
		return slices.Contains(r.Resources, "leases") && slices.Contains(r.ResourceNames, lease) && slices.Contains(r.Verbs, "update")
	})
	if !leaseRule {
		t.Errorf("the Role has no rule for the Lease %q the binary takes", lease)
	}
}

// shippedCapabilities are the only ones the shipped pod adds after dropping
// all; test/image shows what breaks without each.
var shippedCapabilities = []v1.Capability{"CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "NET_BIND_SERVICE", "SETGID", "SETUID"}

// checkHardened checks the provisioner pod's hardening, one property at a
// time: RuntimeDefault seccomp, all capabilities dropped and exactly
// shippedCapabilities added, no privilege and no escalation, a read-only root
// with an emptyDir wherever the image writes outside /export (/run for
// rpcbind, /tmp).
func checkHardened(t *testing.T, pod v1.PodSpec) {
	t.Helper()
	if sc := pod.SecurityContext; sc == nil || sc.SeccompProfile == nil || sc.SeccompProfile.Type != v1.SeccompProfileTypeRuntimeDefault {
		t.Error("pod securityContext: want seccompProfile RuntimeDefault")
	}
	ctr := pod.Containers[0]
	sc := ctr.SecurityContext
	if sc == nil || sc.Capabilities == nil {
		t.Fatal("container securityContext has no capabilities")
	}
	if !slices.Equal(sc.Capabilities.Drop, []v1.Capability{"ALL"}) {
		t.Errorf("capabilities drop %v, want [ALL]", sc.Capabilities.Drop)
	}
	add := slices.Clone(sc.Capabilities.Add)
	slices.Sort(add)
	if !slices.Equal(add, shippedCapabilities) {
		t.Errorf("capabilities add %v, want exactly %v", sc.Capabilities.Add, shippedCapabilities)
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.Error("privileged")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("allowPrivilegeEscalation is not false")
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("readOnlyRootFilesystem is not true")
	}
	emptyDirs := map[string]bool{}
	for _, m := range ctr.VolumeMounts {
		for _, vol := range pod.Volumes {
			if vol.Name == m.Name && vol.EmptyDir != nil {
				emptyDirs[m.MountPath] = true
			}
		}
	}
	for _, dir := range []string{"/run", "/tmp"} {
		if !emptyDirs[dir] {
			t.Errorf("no writable emptyDir at %s under the read-only root (have %v)", dir, emptyDirs)
		}
	}
}

// uninstallShipped removes what deploy/ creates outside a test's namespace
// and waits until it is gone, so that tests sharing the cluster (and the
// fixed names) start clean.
func uninstallShipped(t testing.TB, c *framework.Cluster) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var errs []error
	ignore := func(err error) {
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, err)
		}
	}
	ignore(c.Client.StorageV1().StorageClasses().Delete(ctx, shippedClass, metav1.DeleteOptions{}))
	ignore(c.Client.RbacV1().ClusterRoleBindings().Delete(ctx, "nfs-provisioner", metav1.DeleteOptions{}))
	ignore(c.Client.RbacV1().ClusterRoles().Delete(ctx, "nfs-provisioner", metav1.DeleteOptions{}))
	ignore(c.Client.CoreV1().Namespaces().Delete(ctx, shippedNamespace, metav1.DeleteOptions{}))
	if err := errors.Join(errs...); err != nil {
		t.Errorf("uninstall: %v", err)
		return
	}
	for {
		_, err := c.Client.CoreV1().Namespaces().Get(ctx, shippedNamespace, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return
		}
		if ctx.Err() != nil {
			t.Errorf("namespace %s still there after 90s (last error %v)", shippedNamespace, err)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// removeDatabase deletes the database objects and its claims, and waits for
// the claims: a claim of class nfs left Pending would be provisioned by the
// next test that runs a provisioner of that name.
func removeDatabase(t testing.TB, c *framework.Cluster, kc, ns string) {
	t.Helper()
	if out, err := kubectl(kc, readDeployFile(t, "statefulset.yaml"), "delete", "--ignore-not-found", "--wait=false", "-f", "-"); err != nil {
		t.Errorf("%v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		claims, err := c.Client.CoreV1().PersistentVolumeClaims(ns).List(ctx, metav1.ListOptions{})
		if err == nil && len(claims.Items) > 0 {
			for _, pvc := range claims.Items {
				_ = c.Client.CoreV1().PersistentVolumeClaims(ns).Delete(ctx, pvc.Name, metav1.DeleteOptions{})
			}
		}
		if err == nil && len(claims.Items) == 0 {
			return
		}
		if ctx.Err() != nil {
			t.Errorf("claims of the database still in %s after 60s (%v)", ns, err)
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func deployPath(t testing.TB, name string) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "deploy", name)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the working directory")
		}
		dir = parent
	}
}

func readDeployFile(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(deployPath(t, name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// kubectl runs kubectl against the cluster of kubeconfig, with stdin if not
// nil, and returns its standard output and error together.
func kubectl(kubeconfig string, stdin []byte, args ...string) (string, error) {
	cmd := exec.Command("kubectl", append([]string{"--kubeconfig=" + kubeconfig}, args...)...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := runWithTimeout(cmd, 2*time.Minute)
	if err != nil {
		return out, fmt.Errorf("kubectl %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return out, nil
}

// applyDryRunThenReal applies manifest with server-side apply: first as a
// server-side dry run (full validation and admission, nothing stored), then
// for real.
func applyDryRunThenReal(t testing.TB, kubeconfig, what string, manifest []byte) {
	t.Helper()
	for _, dry := range []string{"--dry-run=server", "--dry-run=none"} {
		if _, err := kubectl(kubeconfig, manifest, "apply", "--server-side", dry, "-f", "-"); err != nil {
			t.Fatalf("%s (%s): %v", what, dry, err)
		}
	}
}

// applyNamespacesFirst applies objs, dry run then real, after applying
// their Namespaces the same way: a server-side dry run of a namespaced object
// fails while its namespace does not exist (kubectl's real apply creates the
// Namespace first, as kustomize sorts it first).
func applyNamespacesFirst(t testing.TB, kubeconfig, what string, objs []*unstructured.Unstructured) {
	t.Helper()
	var namespaces []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == "Namespace" {
			namespaces = append(namespaces, o)
		}
	}
	applyDryRunThenReal(t, kubeconfig, "the Namespaces of "+what, encodeList(t, namespaces))
	applyDryRunThenReal(t, kubeconfig, what, encodeList(t, objs))
}

// namespacedKubeconfig is the admin kubeconfig with ns as its context's
// namespace: objects without a namespace (the database) go there, while
// objects that name theirs keep it. kubectl's -n would refuse the mix.
func namespacedKubeconfig(t testing.TB, c *framework.Cluster, ns string) string {
	t.Helper()
	data, err := os.ReadFile(c.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "admin-"+ns+".kubeconfig")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := kubectl(path, nil, "config", "set-context", "--current", "--namespace="+ns); err != nil {
		t.Fatal(err)
	}
	return path
}

func decodeManifest(t testing.TB, data []byte) []*unstructured.Unstructured {
	t.Helper()
	var objs []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		var m map[string]any
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			return objs
		} else if err != nil {
			t.Fatalf("decode manifest: %v", err)
		}
		if len(m) > 0 { // an empty document between two "---"
			objs = append(objs, &unstructured.Unstructured{Object: m})
		}
	}
}

// encodeList turns objects into one v1 List for kubectl.
func encodeList(t testing.TB, objs []*unstructured.Unstructured) []byte {
	t.Helper()
	items := make([]map[string]any, len(objs))
	for i, o := range objs {
		items[i] = o.Object
	}
	data, err := json.Marshal(map[string]any{"apiVersion": "v1", "kind": "List", "items": items})
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func fromUnstructured(t testing.TB, o *unstructured.Unstructured, into any) {
	t.Helper()
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(o.Object, into, true); err != nil {
		t.Fatalf("%s/%s: %v", o.GetKind(), o.GetName(), err)
	}
}

// goMemLimit parses a GOMEMLIMIT value as the Go runtime does (a byte
// count with an optional B, KiB, MiB, GiB or TiB suffix).
func goMemLimit(v string) (int64, error) {
	m := regexp.MustCompile(`^([0-9]+)(B|KiB|MiB|GiB|TiB)?$`).FindStringSubmatch(v)
	if m == nil {
		return 0, fmt.Errorf("GOMEMLIMIT %q: not a byte count with a B, KiB, MiB, GiB or TiB suffix", v)
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("GOMEMLIMIT %q: %w", v, err)
	}
	shift := map[string]uint{"": 0, "B": 0, "KiB": 10, "MiB": 20, "GiB": 30, "TiB": 40}[m[2]]
	return n << shift, nil
}

// procStatus reads the numeric fields of /proc/<pid>/status that the
// capability checks need; Cap* fields are hex masks.
func procStatus(t testing.TB, pid int) map[string]uint64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("status of pid %d: %v", pid, err)
	}
	fields := map[string]uint64{}
	for _, line := range strings.Split(string(data), "\n") {
		key, value, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		value = strings.TrimSpace(value)
		base := 10
		switch {
		case strings.HasPrefix(key, "Cap"):
			base = 16
		case key != "PPid" && key != "NoNewPrivs":
			continue
		}
		n, err := strconv.ParseUint(value, base, 64)
		if err != nil {
			t.Fatalf("/proc/%d/status %s: %q: %v", pid, key, value, err)
		}
		fields[key] = n
	}
	return fields
}

func readPidFile(t testing.TB, path string) int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("pid file: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatalf("pid file %s: %v", path, err)
	}
	return pid
}

// openFilesLimit reads a process's RLIMIT_NOFILE from /proc/<pid>/limits.
func openFilesLimit(t testing.TB, pid int) (soft, hard uint64) {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "Max open files"); ok {
			f := strings.Fields(rest)
			if len(f) >= 2 {
				soft, err1 := strconv.ParseUint(f[0], 10, 64)
				hard, err2 := strconv.ParseUint(f[1], 10, 64)
				if err1 == nil && err2 == nil {
					return soft, hard
				}
			}
			t.Fatalf("/proc/%d/limits: cannot parse %q", pid, line)
		}
	}
	t.Fatalf("/proc/%d/limits has no open-files line", pid)
	return 0, 0
}

// grepLines returns the lines of text that contain word, case-insensitively.
func grepLines(text, word string) string {
	var out []string
	for _, line := range strings.Split(text, "\n") {
		if strings.Contains(strings.ToLower(line), word) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// TestDeployComponents renders deploy/ with each of its kustomize components
// through an overlay outside deploy/ (as docs/install.md shows), checks what
// each changes, and applies it, server-side dry run first: filesystem (a
// privileged pod whose store propagates mounts both ways, the host's /dev,
// class nfs-xfs) and storage-e2e (the suite's flags, env and class). The
// StatefulSet controller creating the privileged pod proves that the API
// accepts Bidirectional propagation for it.
func TestDeployComponents(t *testing.T) {
	c := framework.Shared(t)
	uninstallShipped(t, c)
	t.Cleanup(func() { uninstallShipped(t, c) })
	for _, class := range []string{"nfs-xfs", "example-nfs"} {
		t.Cleanup(func() {
			_ = c.Client.StorageV1().StorageClasses().Delete(context.Background(), class, metav1.DeleteOptions{})
		})
	}
	base := decodeManifest(t, []byte(renderWithComponent(t, "")))
	var baseClass storagev1.StorageClass
	for _, o := range base {
		if o.GetKind() == "StorageClass" {
			fromUnstructured(t, o, &baseClass)
		}
	}

	t.Run("filesystem", func(t *testing.T) {
		objs := decodeManifest(t, []byte(renderWithComponent(t, "filesystem")))
		var sts appsv1.StatefulSet
		var xfs storagev1.StorageClass
		for _, o := range objs {
			switch {
			case o.GetKind() == "StatefulSet":
				fromUnstructured(t, o, &sts)
			case o.GetKind() == "StorageClass" && o.GetName() == "nfs-xfs":
				fromUnstructured(t, o, &xfs)
			}
		}
		if len(objs) != len(base)+1 {
			t.Errorf("%d objects, want the base's %d and class nfs-xfs", len(objs), len(base))
		}
		pod := sts.Spec.Template.Spec
		sc := pod.Containers[0].SecurityContext
		if sc == nil || sc.Privileged == nil || !*sc.Privileged {
			t.Errorf("securityContext %+v: want privileged (CAP_SYS_ADMIN, loop devices)", sc)
		}
		mounts := map[string]v1.VolumeMount{}
		for _, m := range pod.Containers[0].VolumeMounts {
			mounts[m.MountPath] = m
		}
		if m := mounts["/export"]; m.MountPropagation == nil || *m.MountPropagation != v1.MountPropagationBidirectional {
			t.Errorf("/export mount %+v: want Bidirectional propagation", m)
		}
		hostPaths := map[string]string{}
		for _, vol := range pod.Volumes {
			if vol.HostPath != nil {
				hostPaths[vol.Name] = vol.HostPath.Path
			}
		}
		if dev, ok := mounts["/dev"]; !ok || hostPaths[dev.Name] != "/dev" {
			t.Errorf("the host's /dev is not mounted at /dev (new loop devices): %v", hostPaths)
		}
		if xfs.Parameters["fsType"] != "xfs" || xfs.AllowVolumeExpansion == nil || !*xfs.AllowVolumeExpansion || xfs.Provisioner != baseClass.Provisioner {
			t.Errorf("class nfs-xfs: provisioner %q parameters %v expansion %v", xfs.Provisioner, xfs.Parameters, xfs.AllowVolumeExpansion)
		}
		for _, k := range []string{"uid", "gid", "mode"} {
			if xfs.Parameters[k] != baseClass.Parameters[k] {
				t.Errorf("class nfs-xfs %s=%q, want the base class's %q", k, xfs.Parameters[k], baseClass.Parameters[k])
			}
		}
		applyNamespacesFirst(t, c.Kubeconfig, "deploy/ with components/filesystem", objs)
		framework.Eventually(t, 60*time.Second, "the privileged pod created", func() (bool, error) {
			p, err := c.Client.CoreV1().Pods(shippedNamespace).Get(t.Context(), shippedStatefulSet+"-0", metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return false, nil
			}
			return err == nil && p.Spec.Containers[0].SecurityContext.Privileged != nil && *p.Spec.Containers[0].SecurityContext.Privileged, err
		})
	})

	t.Run("storage-e2e", func(t *testing.T) {
		objs := decodeManifest(t, []byte(renderWithComponent(t, "storage-e2e")))
		var sts appsv1.StatefulSet
		var class storagev1.StorageClass
		for _, o := range objs {
			switch o.GetKind() {
			case "StatefulSet":
				fromUnstructured(t, o, &sts)
			case "StorageClass":
				fromUnstructured(t, o, &class)
			}
		}
		ctr := sts.Spec.Template.Spec.Containers[0]
		if !slices.Equal(ctr.Args, []string{"-provisioner=example.com/nfs", "-grace-period=0"}) {
			t.Errorf("args %v: want the suite's", ctr.Args)
		}
		if len(ctr.Env) != 1 || ctr.Env[0].Name != "POD_IP" {
			t.Errorf("env %v: want only POD_IP", ctr.Env)
		}
		if class.Name != "example-nfs" || class.Provisioner != "example.com/nfs" || len(class.Parameters) != 1 || class.Parameters["mountOptions"] != "vers=4.1" {
			t.Errorf("class %s: provisioner %q parameters %v", class.Name, class.Provisioner, class.Parameters)
		}
		if _, err := volume.ParseParams(class.Parameters); err != nil {
			t.Errorf("the provisioner would refuse the suite's class: %v", err)
		}
		checkHardened(t, sts.Spec.Template.Spec)
		applyNamespacesFirst(t, c.Kubeconfig, "deploy/ with components/storage-e2e", objs)
	})

	t.Run("cephfs-failover", func(t *testing.T) {
		objs := decodeManifest(t, []byte(renderWithComponent(t, "cephfs-failover")))
		var sts appsv1.StatefulSet
		var svc v1.Service
		for _, o := range objs {
			switch o.GetKind() {
			case "StatefulSet":
				fromUnstructured(t, o, &sts)
			case "Service":
				fromUnstructured(t, o, &svc)
			}
		}
		if len(objs) != len(base) {
			t.Errorf("%d objects, want the base's %d", len(objs), len(base))
		}
		if sts.Spec.Replicas == nil || *sts.Spec.Replicas != 2 || sts.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
			t.Errorf("replicas %v, pod management %q: want 2 started in parallel", sts.Spec.Replicas, sts.Spec.PodManagementPolicy)
		}
		pod := sts.Spec.Template.Spec
		ctr := pod.Containers[0]
		for _, want := range []string{"-failover", "-leader-elect", "-ceph-conf=/etc/ceph/ceph.conf", "-failover-lease-duration=5s"} {
			if !slices.Contains(ctr.Args, want) {
				t.Errorf("args %v: missing %s", ctr.Args, want)
			}
		}
		if slices.Contains(ctr.Args, "-leader-elect=false") {
			t.Errorf("args %v: leader election off", ctr.Args)
		}
		if r := ctr.ReadinessProbe; r == nil || r.HTTPGet == nil || r.HTTPGet.Path != "/readyz" || r.PeriodSeconds != 1 {
			t.Errorf("readiness %+v: want /readyz every second (the Service follows it)", r)
		}
		if len(pod.NodeSelector) != 0 || pod.Affinity == nil || pod.Affinity.PodAntiAffinity == nil {
			t.Errorf("node selector %v, affinity %+v: want no node pinning and the replicas apart", pod.NodeSelector, pod.Affinity)
		}
		secret, export := false, false
		for _, vol := range pod.Volumes {
			secret = secret || vol.Secret != nil && vol.Secret.SecretName == "nfs-provisioner-ceph"
			export = export || vol.Name == "export" && vol.EmptyDir != nil
		}
		if !secret || !export {
			t.Errorf("volumes %+v: want the Ceph Secret and an empty mountpoint for the state", pod.Volumes)
		}
		if svc.Spec.Selector["app.kubernetes.io/name"] != "nfs-provisioner" {
			t.Errorf("Service selector %v", svc.Spec.Selector)
		}
		// podManagementPolicy cannot change on an existing StatefulSet.
		uninstallShipped(t, c)
		applyNamespacesFirst(t, c.Kubeconfig, "deploy/ with components/cephfs-failover", objs)
	})
}

// renderWithComponent renders deploy/ through an overlay that lists
// deploy/components/<name> ("" = none). kustomize refuses an overlay inside
// the base's directory, so it lives in bin/ (ignored by git).
func renderWithComponent(t *testing.T, name string) string {
	t.Helper()
	bin := filepath.Join(filepath.Dir(filepath.Clean(deployPath(t, ""))), "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp(bin, "kustomize-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	k := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - ../../deploy\n"
	if name != "" {
		k += "components:\n  - ../../deploy/components/" + name + "\n"
	}
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("kubectl", "kustomize", dir).Output()
	if err != nil {
		t.Fatalf("kubectl kustomize with component %q: %v", name, err)
	}
	return string(out)
}

func TestGoMemLimitParse(t *testing.T) {
	for v, want := range map[string]int64{"32MiB": 32 << 20, "1GiB": 1 << 30, "4096": 4096, "10B": 10} {
		if got, err := goMemLimit(v); err != nil || got != want {
			t.Errorf("goMemLimit(%q) = %d, %v; want %d", v, got, err, want)
		}
	}
	for _, v := range []string{"", "32MB", "32 MiB", "-1", "1.5GiB", "off"} {
		if got, err := goMemLimit(v); err == nil {
			t.Errorf("goMemLimit(%q) = %d, want an error", v, got)
		}
	}
}
