package resize_test

import (
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	v1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/resize"
	"github.com/nfs-provisioner/nfs-provisioner/test/framework"
)

func TestMain(m *testing.M) { os.Exit(framework.Main(m)) }

// annOwner marks the PVs a test's expander owns, standing in for the store
// identity pkg/volume checks.
const annOwner = "test.nfs-provisioner/owner"

// component is the event source of the controller under test.
const component = "nfs-provisioner"

// expandCall is one call of the expander.
type expandCall struct {
	pv   string
	size resource.Quantity
	at   time.Time
}

// recordingExpander is the one fake of these tests, at the boundary the
// controller is written against: it owns the PVs annotated with its owner
// and records every Expand. grow decides the result (default: round up to a
// multiple of 256 MiB, as a filesystem volume might).
type recordingExpander struct {
	owner string
	grow  func(ctx context.Context, call int, size resource.Quantity) (resource.Quantity, error)

	mu    sync.Mutex
	calls []expandCall
}

func (e *recordingExpander) Owns(pv *v1.PersistentVolume) bool {
	return pv.Annotations[annOwner] == e.owner
}

func (e *recordingExpander) Expand(ctx context.Context, pv *v1.PersistentVolume, size resource.Quantity) (resource.Quantity, error) {
	e.mu.Lock()
	e.calls = append(e.calls, expandCall{pv: pv.Name, size: size, at: time.Now()})
	n := len(e.calls)
	e.mu.Unlock()
	if e.grow != nil {
		return e.grow(ctx, n, size)
	}
	return roundUp(size), nil
}

func roundUp(q resource.Quantity) resource.Quantity {
	const step = 256 << 20
	return *resource.NewQuantity((q.Value()+step-1)/step*step, resource.BinarySI)
}

// CallsFor are the calls for PV pv.
func (e *recordingExpander) CallsFor(pv string) []expandCall {
	var out []expandCall
	for _, c := range e.Calls() {
		if c.pv == pv {
			out = append(out, c)
		}
	}
	return out
}

func (e *recordingExpander) Calls() []expandCall {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]expandCall(nil), e.calls...)
}

// env is one test's world: a namespace, a class of a provisioner named after
// it, a ServiceAccount holding exactly the shipped ClusterRole, and the admin.
type env struct {
	t           *testing.T
	c           *framework.Cluster
	ns          string
	class       string
	provisioner string
	admin       kubernetes.Interface
	sa          kubernetes.Interface
}

func newEnv(t *testing.T, allowExpansion *bool) *env {
	t.Helper()
	c := framework.Shared(t)
	e := &env{t: t, c: c, ns: c.Namespace(t), admin: c.Client}
	// A provisioner name's part after the "/" has at most 63 characters;
	// the namespace's random suffix is at its end.
	e.class, e.provisioner = e.ns, "test.resize/"+e.ns[max(0, len(e.ns)-60):]
	e.createClass(e.class, e.provisioner, allowExpansion)
	e.sa = e.shippedRoleClient()
	return e
}

func (e *env) ctx() context.Context { return e.t.Context() }

func (e *env) createClass(name, provisioner string, allow *bool) {
	e.t.Helper()
	retain := v1.PersistentVolumeReclaimRetain
	_, err := e.admin.StorageV1().StorageClasses().Create(e.ctx(), &storagev1.StorageClass{
		ObjectMeta:  metav1.ObjectMeta{Name: name},
		Provisioner: provisioner, AllowVolumeExpansion: allow, ReclaimPolicy: &retain,
	}, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		_ = e.admin.StorageV1().StorageClasses().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
}

// shippedRoleClient is a client of a ServiceAccount bound to the ClusterRole
// of deploy/provisioner.yaml, rules as shipped: the controller runs with
// exactly the rights a deployment gives it.
func (e *env) shippedRoleClient() kubernetes.Interface {
	t := e.t
	t.Helper()
	f, err := os.Open("../../deploy/provisioner.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var role *rbacv1.ClusterRole
	dec := yaml.NewYAMLOrJSONDecoder(f, 4096)
	for {
		var doc rbacv1.ClusterRole
		if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("deploy/provisioner.yaml: %v", err)
		}
		if doc.Kind == "ClusterRole" {
			role = &doc
		}
	}
	if role == nil {
		t.Fatal("deploy/provisioner.yaml has no ClusterRole")
	}
	name := "resize-" + e.ns
	role.ObjectMeta = metav1.ObjectMeta{Name: name}
	if _, err := e.admin.RbacV1().ClusterRoles().Create(e.ctx(), role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.admin.RbacV1().ClusterRoleBindings().Create(e.ctx(), &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: e.ns, Name: "resizer"}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		_ = e.admin.RbacV1().ClusterRoleBindings().Delete(ctx, name, metav1.DeleteOptions{})
		_ = e.admin.RbacV1().ClusterRoles().Delete(ctx, name, metav1.DeleteOptions{})
	})
	cfg, err := e.c.ServiceAccountConfig(e.ctx(), e.ns, "resizer")
	if err != nil {
		t.Fatal(err)
	}
	sa, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// The authorizer learns of the binding through an informer.
	framework.Eventually(t, 30*time.Second, "the shipped role in force", func() (bool, error) {
		r, err := sa.AuthorizationV1().SelfSubjectAccessReviews().Create(e.ctx(), &authorizationv1.SelfSubjectAccessReview{
			Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
				Verb: "patch", Resource: "persistentvolumeclaims", Subresource: "status", Namespace: e.ns,
			}},
		}, metav1.CreateOptions{})
		return err == nil && r.Status.Allowed, err
	})
	return sa
}

// boundClaim makes a claim name of request size and a PV of pvSize bound to
// it, owned by owner (the expander's owner to be ours), and waits until the
// PV binder has bound them. Claim first, then the PV with the claim's UID, as
// a provisioner saves it: the binder then binds at once (a claim naming its
// volume would wait for the binder's 15 s resync).
func (e *env) boundClaim(name, request, pvSize, owner string) *v1.PersistentVolumeClaim {
	t := e.t
	t.Helper()
	pvName := e.ns + "-" + name
	pvc, err := e.admin.CoreV1().PersistentVolumeClaims(e.ns).Create(e.ctx(), &v1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1.PersistentVolumeClaimSpec{
			AccessModes:      []v1.PersistentVolumeAccessMode{v1.ReadWriteMany},
			StorageClassName: &e.class,
			Resources:        v1.VolumeResourceRequirements{Requests: v1.ResourceList{v1.ResourceStorage: resource.MustParse(request)}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	fs := v1.PersistentVolumeFilesystem
	pv := &v1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: pvName, Annotations: map[string]string{
			"pv.kubernetes.io/provisioned-by": e.provisioner, annOwner: owner,
		}},
		Spec: v1.PersistentVolumeSpec{
			Capacity:                      v1.ResourceList{v1.ResourceStorage: resource.MustParse(pvSize)},
			AccessModes:                   []v1.PersistentVolumeAccessMode{v1.ReadWriteMany},
			PersistentVolumeReclaimPolicy: v1.PersistentVolumeReclaimRetain,
			StorageClassName:              e.class,
			VolumeMode:                    &fs,
			ClaimRef:                      &v1.ObjectReference{Kind: "PersistentVolumeClaim", APIVersion: "v1", Namespace: e.ns, Name: name, UID: pvc.UID},
			PersistentVolumeSource: v1.PersistentVolumeSource{NFS: &v1.NFSVolumeSource{
				Server: "127.0.0.1", Path: "/" + pvName,
			}},
		},
	}
	if _, err := e.admin.CoreV1().PersistentVolumes().Create(e.ctx(), pv, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = e.admin.CoreV1().PersistentVolumes().Delete(context.Background(), pvName, metav1.DeleteOptions{})
	})
	ctx, cancel := context.WithTimeout(e.ctx(), 60*time.Second)
	defer cancel()
	if _, err := framework.WaitBound(ctx, e.admin, e.ns, name); err != nil {
		t.Fatal(err)
	}
	return e.claim(name)
}

func (e *env) claim(name string) *v1.PersistentVolumeClaim {
	e.t.Helper()
	pvc, err := e.admin.CoreV1().PersistentVolumeClaims(e.ns).Get(e.ctx(), name, metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return pvc
}

func (e *env) volume(name string) *v1.PersistentVolume {
	e.t.Helper()
	pv, err := e.admin.CoreV1().PersistentVolumes().Get(e.ctx(), name, metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return pv
}

// setRequest is the user's edit of the claim's storage request.
func (e *env) setRequest(name, size string) error {
	patch := `{"spec":{"resources":{"requests":{"storage":"` + size + `"}}}}`
	_, err := e.admin.CoreV1().PersistentVolumeClaims(e.ns).Patch(e.ctx(), name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{})
	return err
}

// controller is a running resize controller, as cmd/provisioner runs it: a
// shared informer factory, an event recorder, the shipped role's rights.
type controller struct {
	cancel func() // stops it at once, as a kill would, without waiting
	stop   func() // stops it and waits
}

func (e *env) startController(exp resize.Expander, tune func(*resize.Options)) *controller {
	t := e.t
	t.Helper()
	ctx, cancel := context.WithCancel(klog.NewContext(context.Background(), klog.Background()))
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: e.sa.CoreV1().Events("")})
	factory := informers.NewSharedInformerFactory(e.sa, 0)
	o := resize.Options{
		Provisioner: e.provisioner,
		Expander:    exp,
		Client:      e.sa,
		Informers:   factory,
		Recorder:    broadcaster.NewRecorder(scheme.Scheme, v1.EventSource{Component: component}),
		RetryBase:   200 * time.Millisecond,
		RetryMax:    5 * time.Second,
	}
	if tune != nil {
		tune(&o)
	}
	ctrl, err := resize.New(o)
	if err != nil {
		t.Fatal(err)
	}
	factory.Start(ctx.Done())
	done := make(chan struct{})
	go func() { defer close(done); ctrl.Run(ctx) }()
	var once sync.Once
	c := &controller{cancel: cancel, stop: func() {
		once.Do(func() {
			cancel()
			<-done
			factory.Shutdown()
			broadcaster.Shutdown()
		})
	}}
	t.Cleanup(c.stop)
	return c
}

// events are the claim's events as "Type Reason source: message".
func (e *env) events(claim string) []string {
	e.t.Helper()
	list, err := e.admin.CoreV1().Events(e.ns).List(e.ctx(), metav1.ListOptions{
		FieldSelector: "involvedObject.kind=PersistentVolumeClaim,involvedObject.name=" + claim,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, ev := range list.Items {
		out = append(out, ev.Type+" "+ev.Reason+" "+ev.Source.Component+": "+ev.Message)
	}
	return out
}

// waitEvent waits for an event of the claim whose line contains all parts.
func (e *env) waitEvent(claim string, parts ...string) string {
	e.t.Helper()
	var found string
	framework.Eventually(e.t, 60*time.Second, "event "+strings.Join(parts, " ")+" on "+claim, func() (bool, error) {
		for _, ev := range e.events(claim) {
			if containsAll(ev, parts...) {
				found = ev
				return true, nil
			}
		}
		return false, nil
	})
	return found
}

func containsAll(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

// waitCapacity waits until the claim's status capacity is size.
func (e *env) waitCapacity(name, size string) *v1.PersistentVolumeClaim {
	e.t.Helper()
	want := resource.MustParse(size)
	var pvc *v1.PersistentVolumeClaim
	framework.Eventually(e.t, 60*time.Second, "claim "+name+" capacity "+size, func() (bool, error) {
		pvc = e.claim(name)
		got := pvc.Status.Capacity[v1.ResourceStorage]
		return got.Cmp(want) == 0, nil
	})
	return pvc
}
