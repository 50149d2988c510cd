package resize_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/resize"
	"github.com/nfs-provisioner/nfs-provisioner/pkg/storage"
	"github.com/nfs-provisioner/nfs-provisioner/test/framework"
)

var yes = func() *bool { b := true; return &b }()

// assertDone checks the claim and its PV after an expansion to capacity that
// was asked as allocated: the contract's final state for a volume needing
// nothing on the node.
func (e *env) assertDone(name, capacity, allocated string) {
	t := e.t
	t.Helper()
	pvc := e.claim(name)
	if got := pvc.Status.Capacity[v1.ResourceStorage]; got.Cmp(resource.MustParse(capacity)) != 0 {
		t.Errorf("claim capacity %s, want %s", got.String(), capacity)
	}
	pv := e.volume(pvc.Spec.VolumeName)
	if got := pv.Spec.Capacity[v1.ResourceStorage]; got.Cmp(resource.MustParse(capacity)) != 0 {
		t.Errorf("PV capacity %s, want %s", got.String(), capacity)
	}
	for _, c := range pvc.Status.Conditions {
		t.Errorf("condition left on the claim: %+v", c)
	}
	if pvc.Status.AllocatedResourceStatuses != nil {
		t.Errorf("allocatedResourceStatuses %v, want none", pvc.Status.AllocatedResourceStatuses)
	}
	if got := pvc.Status.AllocatedResources[v1.ResourceStorage]; got.Cmp(resource.MustParse(allocated)) != 0 {
		t.Errorf("allocatedResources %s, want %s", got.String(), allocated)
	}
	if pvc.Annotations[resize.AnnResizer] != e.provisioner || pvc.Annotations[resize.AnnNodeExpansionNotRequired] != "true" {
		t.Errorf("claim annotations %v, want %s=%s and %s=true", pvc.Annotations, resize.AnnResizer, e.provisioner, resize.AnnNodeExpansionNotRequired)
	}
	if pvc.Status.Phase != v1.ClaimBound || pv.Status.Phase != v1.VolumeBound {
		t.Errorf("claim %s, PV %s: want both Bound", pvc.Status.Phase, pv.Status.Phase)
	}
}

// expandTo is the user's edit of claim name to size and the wait for the
// controller's end state.
func (e *env) expandTo(name, size string) {
	e.t.Helper()
	if err := e.setRequest(name, size); err != nil {
		e.t.Fatal(err)
	}
	e.waitCapacity(name, size)
	e.assertDone(name, size, size)
}

// TestExpand edits a Bound claim larger and follows it through: marked while
// the volume grows, then done with the store's (rounded) size on both PV and
// claim. kube-controller-manager only says it waits for an external
// controller, and does nothing else.
func TestExpand(t *testing.T) {
	e := newEnv(t, yes)
	e.boundClaim("data", "1Gi", "1Gi", "me")
	release := make(chan struct{})
	exp := &recordingExpander{owner: "me", grow: func(ctx context.Context, _ int, size resource.Quantity) (resource.Quantity, error) {
		select {
		case <-release:
		case <-ctx.Done():
			return resource.Quantity{}, ctx.Err()
		}
		return roundUp(size), nil
	}}
	e.startController(exp, nil)

	edited := time.Now()
	if err := e.setRequest("data", "1500Mi"); err != nil {
		t.Fatal(err)
	}
	// While Expand runs: the claim says so, the PV is unchanged.
	framework.Eventually(t, 30*time.Second, "Expand called", func() (bool, error) { return len(exp.Calls()) == 1, nil })
	pvc := e.claim("data")
	if s := pvc.Status.AllocatedResourceStatuses[v1.ResourceStorage]; s != v1.PersistentVolumeClaimControllerResizeInProgress {
		t.Errorf("during Expand: allocatedResourceStatuses[storage] = %q", s)
	}
	if a := pvc.Status.AllocatedResources[v1.ResourceStorage]; a.Cmp(resource.MustParse("1500Mi")) != 0 {
		t.Errorf("during Expand: allocatedResources[storage] = %s", a.String())
	}
	if len(pvc.Status.Conditions) != 1 || pvc.Status.Conditions[0].Type != v1.PersistentVolumeClaimResizing || pvc.Status.Conditions[0].Status != v1.ConditionTrue {
		t.Errorf("during Expand: conditions %+v, want Resizing", pvc.Status.Conditions)
	}
	if c := e.volume(pvc.Spec.VolumeName).Spec.Capacity[v1.ResourceStorage]; c.Cmp(resource.MustParse("1Gi")) != 0 {
		t.Errorf("during Expand: PV capacity %s, want 1Gi still", c.String())
	}
	close(release)

	e.waitCapacity("data", "1536Mi")
	t.Logf("expansion: claim edit to new status capacity in %v", time.Since(edited).Round(time.Millisecond))
	e.assertDone("data", "1536Mi", "1500Mi")
	calls := exp.Calls()
	if len(calls) != 1 || calls[0].size.Cmp(resource.MustParse("1500Mi")) != 0 {
		t.Errorf("Expand calls %+v, want one for 1500Mi", calls)
	}
	e.waitEvent("data", "Normal", resize.ReasonResizing, component)
	e.waitEvent("data", "Normal", resize.ReasonResizeSuccess, component, "1536Mi")
	// kcm saw the edit and left it to us.
	e.waitEvent("data", "Normal", "ExternalExpanding", "volume_expand", "waiting for an external controller")
	for _, ev := range e.events("data") {
		if strings.HasPrefix(ev, "Warning") {
			t.Errorf("warning event: %s", ev)
		}
	}

	// Again, larger: a second round from the first's end state.
	e.expandTo("data", "2Gi")
}

// TestAdmissionRefusesClassWithoutExpansion pins down that the API server,
// not this controller, refuses to grow a claim whose class does not allow
// expansion (the PersistentVolumeClaimResize admission plugin).
func TestAdmissionRefusesClassWithoutExpansion(t *testing.T) {
	for _, allow := range []*bool{nil, new(bool)} {
		t.Run(fmt.Sprintf("allowVolumeExpansion=%v", describe(allow)), func(t *testing.T) {
			e := newEnv(t, allow)
			e.boundClaim("data", "1Gi", "1Gi", "me")
			err := e.setRequest("data", "2Gi")
			if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "storageclass that provisions the pvc must support resize") {
				t.Fatalf("growing a claim of a class without expansion: err = %v, want Forbidden by admission", err)
			}
			if got := e.claim("data").Spec.Resources.Requests[v1.ResourceStorage]; got.Cmp(resource.MustParse("1Gi")) != 0 {
				t.Errorf("request %s after the refused edit", got.String())
			}
		})
	}
}

func describe(b *bool) string {
	if b == nil {
		return "unset"
	}
	return fmt.Sprint(*b)
}

// TestShrink pins down what the API server allows and what this controller
// does with the rest: lowering a request to the status capacity or below is
// rejected by validation; lowering it while still above is accepted
// (RecoverVolumeExpansionFailure, GA in 1.34); a request below what the PV
// already has is refused by the controller with a Warning, changing nothing.
func TestShrink(t *testing.T) {
	e := newEnv(t, yes)
	e.boundClaim("data", "1Gi", "1Gi", "me")

	// No controller yet: the claim stays at 1Gi status capacity.
	for _, size := range []string{"512Mi", "1Gi"} {
		err := e.setRequest("data", size)
		if size == "1Gi" {
			// Equal to the current request: not a change at all.
			if err != nil {
				t.Errorf("re-setting the same request: %v", err)
			}
			continue
		}
		if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "can not be less than status.capacity") {
			t.Errorf("lowering the request to %s: err = %v, want Invalid: can not be less than status.capacity", size, err)
		}
	}
	if err := e.setRequest("data", "3Gi"); err != nil {
		t.Fatal(err)
	}
	if err := e.setRequest("data", "2Gi"); err != nil {
		t.Errorf("lowering 3Gi to 2Gi above status capacity 1Gi: %v, want accepted (recovery)", err)
	}
	if err := e.setRequest("data", "1Gi"); !apierrors.IsInvalid(err) {
		t.Errorf("lowering to status capacity: err = %v, want Invalid", err)
	}

	// An administrator set the PV to 3Gi by hand; the claim asks 2Gi:
	// that would shrink the volume.
	pvName := e.claim("data").Spec.VolumeName
	if _, err := e.admin.CoreV1().PersistentVolumes().Patch(e.ctx(), pvName, types.StrategicMergePatchType,
		[]byte(`{"spec":{"capacity":{"storage":"3Gi"}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	exp := &recordingExpander{owner: "me"}
	e.startController(exp, nil)
	ev := e.waitEvent("data", "Warning", resize.ReasonResizeFailed, component)
	if !containsAll(ev, "2Gi", "3Gi", "cannot shrink") {
		t.Errorf("refusal event %q does not say what was refused", ev)
	}
	pvc := e.claim("data")
	if got := pvc.Status.Capacity[v1.ResourceStorage]; got.Cmp(resource.MustParse("1Gi")) != 0 {
		t.Errorf("claim capacity %s after a refusal, want 1Gi", got.String())
	}
	if pvc.Status.AllocatedResourceStatuses != nil || pvc.Status.AllocatedResources != nil || len(pvc.Status.Conditions) != 0 || pvc.Annotations[resize.AnnResizer] != "" {
		t.Errorf("claim changed by a refusal: %+v, annotations %v", pvc.Status, pvc.Annotations)
	}
	if got := e.volume(pvName).Spec.Capacity[v1.ResourceStorage]; got.Cmp(resource.MustParse("3Gi")) != 0 {
		t.Errorf("PV capacity %s after a refusal, want 3Gi", got.String())
	}
	if calls := exp.Calls(); len(calls) != 0 {
		t.Errorf("Expand called for a shrink: %+v", calls)
	}

	// Asking for more than the PV has is a plain expansion again.
	e.expandTo("data", "4Gi")
}

// TestExpandErrors: a failing Expand leaves a Warning with the error and is
// retried with growing delays while the claim stays in progress; an
// infeasible one (no room) is recorded on the claim, not hammered, and the
// user recovers by lowering the request.
func TestExpandErrors(t *testing.T) {
	e := newEnv(t, yes)
	e.boundClaim("flaky", "1Gi", "1Gi", "me")
	e.boundClaim("full", "1Gi", "1Gi", "me")
	exp := &recordingExpander{owner: "me"}
	flakyFailures := 0
	exp.grow = func(ctx context.Context, _ int, size resource.Quantity) (resource.Quantity, error) {
		calls := exp.Calls()
		last := calls[len(calls)-1]
		switch last.pv {
		case e.ns + "-flaky":
			if flakyFailures < 3 {
				flakyFailures++
				return resource.Quantity{}, fmt.Errorf("grow image: device busy (attempt %d)", flakyFailures)
			}
		case e.ns + "-full":
			if size.Cmp(resource.MustParse("2Gi")) > 0 {
				return resource.Quantity{}, fmt.Errorf("grow to %s: %w", size.String(), storage.ErrNoSpace)
			}
		}
		return size, nil
	}
	e.startController(exp, func(o *resize.Options) { o.InfeasibleRetry = time.Hour })

	if err := e.setRequest("flaky", "2Gi"); err != nil {
		t.Fatal(err)
	}
	e.waitEvent("flaky", "Warning", resize.ReasonResizeFailed, component, "device busy (attempt 1)")
	if s := e.claim("flaky").Status.AllocatedResourceStatuses[v1.ResourceStorage]; s != v1.PersistentVolumeClaimControllerResizeInProgress {
		t.Errorf("after a transient failure: allocatedResourceStatuses[storage] = %q, want ControllerResizeInProgress", s)
	}
	e.waitCapacity("flaky", "2Gi")
	e.assertDone("flaky", "2Gi", "2Gi")
	flaky := exp.CallsFor(e.ns + "-flaky")
	if len(flaky) != 4 {
		t.Fatalf("flaky: %d Expand calls, want 3 failures and a success", len(flaky))
	}
	// Exponential backoff from RetryBase 200ms: at least 200, 400, 800 ms.
	for i := 1; i < len(flaky); i++ {
		gap, floor := flaky[i].at.Sub(flaky[i-1].at), 200*time.Millisecond<<(i-1)
		if gap < floor {
			t.Errorf("retry %d came after %v, want at least %v (backoff)", i, gap, floor)
		}
		if flaky[i].size.Cmp(resource.MustParse("2Gi")) != 0 {
			t.Errorf("retry %d asked %s, want the recorded target 2Gi", i, flaky[i].size.String())
		}
	}

	if err := e.setRequest("full", "10Gi"); err != nil {
		t.Fatal(err)
	}
	e.waitEvent("full", "Warning", resize.ReasonResizeFailed, component, storage.ErrNoSpace.Error())
	var pvc *v1.PersistentVolumeClaim
	framework.Eventually(t, 30*time.Second, "claim marked infeasible", func() (bool, error) {
		pvc = e.claim("full")
		return pvc.Status.AllocatedResourceStatuses[v1.ResourceStorage] == v1.PersistentVolumeClaimControllerResizeInfeasible, nil
	})
	if len(pvc.Status.Conditions) == 0 || !hasConditionWith(pvc, v1.PersistentVolumeClaimControllerResizeError, storage.ErrNoSpace.Error()) {
		t.Errorf("infeasible claim conditions %+v, want ControllerResizeError naming the cause", pvc.Status.Conditions)
	}
	// Recovery: lower the request (above status capacity, so allowed).
	if err := e.setRequest("full", "2Gi"); err != nil {
		t.Fatalf("lowering an infeasible request: %v", err)
	}
	e.waitCapacity("full", "2Gi")
	e.assertDone("full", "2Gi", "2Gi")
	full := exp.CallsFor(e.ns + "-full")
	// One infeasible try (InfeasibleRetry is an hour), then the lowered one.
	if len(full) != 2 || full[0].size.Cmp(resource.MustParse("10Gi")) != 0 || full[1].size.Cmp(resource.MustParse("2Gi")) != 0 {
		t.Errorf("full: Expand calls %+v, want 10Gi once then 2Gi", full)
	}
}

func hasConditionWith(pvc *v1.PersistentVolumeClaim, t v1.PersistentVolumeClaimConditionType, msg string) bool {
	for _, c := range pvc.Status.Conditions {
		if c.Type == t && c.Status == v1.ConditionTrue && strings.Contains(c.Message, msg) {
			return true
		}
	}
	return false
}

// TestRestartConverges stops the controller between the steps of an
// expansion and checks that a new one finishes it correctly.
func TestRestartConverges(t *testing.T) {
	t.Run("after Expand, before the PV update", func(t *testing.T) {
		e := newEnv(t, yes)
		e.boundClaim("data", "1Gi", "1Gi", "me")
		var first *controller
		exp := &recordingExpander{owner: "me"}
		grown := make(chan struct{})
		exp.grow = func(_ context.Context, call int, size resource.Quantity) (resource.Quantity, error) {
			if call == 1 {
				// The process dies the moment the volume has grown:
				// the PV patch that follows fails, as a kill would.
				first.cancel()
				close(grown)
			}
			return size, nil
		}
		first = e.startController(exp, nil)
		if err := e.setRequest("data", "2Gi"); err != nil {
			t.Fatal(err)
		}
		<-grown
		first.stop()
		pvc := e.claim("data")
		if got := e.volume(pvc.Spec.VolumeName).Spec.Capacity[v1.ResourceStorage]; got.Cmp(resource.MustParse("1Gi")) != 0 {
			t.Fatalf("PV capacity %s after the stop; the test wants the stop before the PV update", got.String())
		}
		if s := pvc.Status.AllocatedResourceStatuses[v1.ResourceStorage]; s != v1.PersistentVolumeClaimControllerResizeInProgress {
			t.Fatalf("claim status %q after the stop, want ControllerResizeInProgress", s)
		}
		// Meanwhile the user asks for even more: the recorded expansion
		// is finished first, then the new one.
		if err := e.setRequest("data", "3Gi"); err != nil {
			t.Fatal(err)
		}
		e.startController(exp, nil)
		e.waitCapacity("data", "3Gi")
		e.assertDone("data", "3Gi", "3Gi")
		var sizes []string
		for _, c := range exp.Calls() {
			sizes = append(sizes, c.size.String())
		}
		if got := strings.Join(sizes, ","); got != "2Gi,2Gi,3Gi" {
			t.Errorf("Expand calls %s, want 2Gi (interrupted), 2Gi (resumed, idempotent), 3Gi", got)
		}
	})

	t.Run("after the PV update, before the claim's", func(t *testing.T) {
		e := newEnv(t, yes)
		pvc := e.boundClaim("data", "1Gi", "1Gi", "me")
		// The state a kill between the two writes leaves, written by hand:
		// the claim marked for 2Gi, the PV already at the store's 2304Mi.
		if err := e.setRequest("data", "2Gi"); err != nil {
			t.Fatal(err)
		}
		pvc = e.claim("data")
		marked := pvc.DeepCopy()
		marked.Annotations = map[string]string{resize.AnnResizer: e.provisioner}
		marked.Status.AllocatedResources = v1.ResourceList{v1.ResourceStorage: resource.MustParse("2Gi")}
		marked.Status.AllocatedResourceStatuses = map[v1.ResourceName]v1.ClaimResourceStatus{
			v1.ResourceStorage: v1.PersistentVolumeClaimControllerResizeInProgress}
		marked.Status.Conditions = []v1.PersistentVolumeClaimCondition{{
			Type: v1.PersistentVolumeClaimResizing, Status: v1.ConditionTrue, LastTransitionTime: metav1.Now()}}
		if _, err := e.admin.CoreV1().PersistentVolumeClaims(e.ns).UpdateStatus(e.ctx(), marked, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.admin.CoreV1().PersistentVolumes().Patch(e.ctx(), pvc.Spec.VolumeName, types.StrategicMergePatchType,
			[]byte(`{"spec":{"capacity":{"storage":"2304Mi"}}}`), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		exp := &recordingExpander{owner: "me"}
		e.startController(exp, nil)
		e.waitCapacity("data", "2304Mi")
		e.assertDone("data", "2304Mi", "2Gi")
		if calls := exp.Calls(); len(calls) != 0 {
			t.Errorf("Expand called again for a volume whose PV records the expansion: %+v", calls)
		}
		e.waitEvent("data", "Normal", resize.ReasonResizeSuccess, component, "2304Mi")
	})
}

// TestIgnoresForeignClaims: claims of another provisioner's class, and PVs
// this provisioner did not make, are left alone, even with expansion allowed.
func TestIgnoresForeignClaims(t *testing.T) {
	e := newEnv(t, yes)
	e.boundClaim("foreign-pv", "1Gi", "1Gi", "someone-else")
	other := e.class + "-other"
	e.createClass(other, "example.com/other", yes)
	e.boundClaim("mine", "1Gi", "1Gi", "me")
	// A claim of the other provisioner's class, on a PV that looks ours.
	e.class = other
	e.boundClaim("foreign-class", "1Gi", "1Gi", "me")

	exp := &recordingExpander{owner: "me"}
	e.startController(exp, nil)
	for _, name := range []string{"foreign-pv", "foreign-class", "mine"} {
		if err := e.setRequest(name, "2Gi"); err != nil {
			t.Fatal(err)
		}
	}
	// The owned claim finishing shows the controller has seen all three
	// edits (they were queued before it).
	e.waitCapacity("mine", "2Gi")
	for _, name := range []string{"foreign-pv", "foreign-class"} {
		pvc := e.claim(name)
		if got := pvc.Status.Capacity[v1.ResourceStorage]; got.Cmp(resource.MustParse("1Gi")) != 0 || pvc.Status.AllocatedResourceStatuses != nil || pvc.Annotations[resize.AnnResizer] != "" {
			t.Errorf("%s was touched: %+v, annotations %v", name, pvc.Status, pvc.Annotations)
		}
		for _, ev := range e.events(name) {
			if strings.Contains(ev, " "+component+":") {
				t.Errorf("%s: event from the controller: %s", name, ev)
			}
		}
	}
	for _, c := range exp.Calls() {
		if c.pv != e.ns+"-mine" {
			t.Errorf("Expand called for %s", c.pv)
		}
	}
}
