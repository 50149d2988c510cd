package resize

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/storage"
)

func TestStatusTransitions(t *testing.T) {
	pvc, _, _ := fixture(claimState{request: "2Gi", capacity: "1Gi", pv: "1Gi"})
	other := v1.PersistentVolumeClaimCondition{Type: "Other", Status: v1.ConditionTrue}
	pvc.Status.Conditions = []v1.PersistentVolumeClaimCondition{
		other,
		{Type: v1.PersistentVolumeClaimControllerResizeError, Status: v1.ConditionTrue, Message: "old"},
	}
	pvc.Annotations = map[string]string{AnnNodeExpansionNotRequired: "true"}
	now := metav1.Now()
	target := resource.MustParse("2Gi")

	marked := withInProgress(pvc, target, prov, now)
	if got := marked.Status.AllocatedResourceStatuses[v1.ResourceStorage]; got != v1.PersistentVolumeClaimControllerResizeInProgress {
		t.Errorf("status %q", got)
	}
	if got := marked.Status.AllocatedResources[v1.ResourceStorage]; got.Cmp(target) != 0 {
		t.Errorf("allocated %s", got.String())
	}
	if len(marked.Status.Conditions) != 2 || marked.Status.Conditions[0] != other || marked.Status.Conditions[1].Type != v1.PersistentVolumeClaimResizing {
		t.Errorf("conditions %+v: want Other kept, the old error replaced by Resizing", marked.Status.Conditions)
	}
	if marked.Annotations[AnnResizer] != prov || marked.Annotations[AnnNodeExpansionNotRequired] != "" {
		t.Errorf("annotations %v", marked.Annotations)
	}
	if !markedInProgress(marked, target, prov) || markedInProgress(pvc, target, prov) || markedInProgress(marked, resource.MustParse("3Gi"), prov) {
		t.Error("markedInProgress does not tell marked claims apart")
	}
	if pvc.Status.AllocatedResourceStatuses != nil {
		t.Error("withInProgress changed its input")
	}

	failed := withInfeasible(marked, errors.New("no room"), now)
	if got := failed.Status.AllocatedResourceStatuses[v1.ResourceStorage]; got != v1.PersistentVolumeClaimControllerResizeInfeasible {
		t.Errorf("status %q", got)
	}
	if len(failed.Status.Conditions) != 3 || failed.Status.Conditions[2].Type != v1.PersistentVolumeClaimControllerResizeError {
		t.Errorf("conditions %+v: want Resizing kept and an error added", failed.Status.Conditions)
	}

	done := withFinished(failed, resource.MustParse("2100Mi"))
	if got := done.Status.Capacity[v1.ResourceStorage]; got.Cmp(resource.MustParse("2100Mi")) != 0 {
		t.Errorf("capacity %s", got.String())
	}
	if done.Status.AllocatedResourceStatuses != nil {
		t.Errorf("statuses %v, want nil", done.Status.AllocatedResourceStatuses)
	}
	if got := done.Status.AllocatedResources[v1.ResourceStorage]; got.Cmp(target) != 0 {
		t.Errorf("allocated %s, want the target kept", got.String())
	}
	if len(done.Status.Conditions) != 1 || done.Status.Conditions[0] != other {
		t.Errorf("conditions %+v, want only Other", done.Status.Conditions)
	}
	if done.Annotations[AnnNodeExpansionNotRequired] != "true" {
		t.Errorf("annotations %v", done.Annotations)
	}
}

func TestMergeResizeConditionsKeepsTransitionTime(t *testing.T) {
	then := metav1.NewTime(metav1.Now().Add(-3600e9))
	old := []v1.PersistentVolumeClaimCondition{{Type: v1.PersistentVolumeClaimResizing, Status: v1.ConditionTrue, LastTransitionTime: then}}
	got := mergeResizeConditions(old, []v1.PersistentVolumeClaimCondition{{Type: v1.PersistentVolumeClaimResizing, Status: v1.ConditionTrue, LastTransitionTime: metav1.Now()}}, false)
	if len(got) != 1 || !got[0].LastTransitionTime.Equal(&then) {
		t.Errorf("got %+v", got)
	}
}

func TestClaimStatusPatch(t *testing.T) {
	pvc, _, _ := fixture(claimState{request: "2Gi", capacity: "1Gi", pv: "1Gi"})
	pvc.ResourceVersion = "42"
	updated := withFinished(pvc, resource.MustParse("2Gi"))
	for _, guard := range []bool{true, false} {
		patch, err := claimStatusPatch(pvc, updated, guard)
		if err != nil {
			t.Fatal(err)
		}
		var m struct {
			Metadata struct {
				ResourceVersion string            `json:"resourceVersion"`
				Annotations     map[string]string `json:"annotations"`
			} `json:"metadata"`
			Status struct {
				Capacity map[string]string `json:"capacity"`
			} `json:"status"`
			Spec any `json:"spec"`
		}
		if err := json.Unmarshal(patch, &m); err != nil {
			t.Fatal(err)
		}
		if want := map[bool]string{true: "42", false: ""}[guard]; m.Metadata.ResourceVersion != want {
			t.Errorf("guard %v: resourceVersion %q in %s", guard, m.Metadata.ResourceVersion, patch)
		}
		if m.Status.Capacity["storage"] != "2Gi" || m.Metadata.Annotations[AnnNodeExpansionNotRequired] != "true" || m.Spec != nil {
			t.Errorf("patch %s", patch)
		}
	}
}

func TestClassify(t *testing.T) {
	gr := schema.GroupResource{Resource: "persistentvolumeclaims"}
	for _, tc := range []struct {
		err  error
		want errKind
	}{
		{fmt.Errorf("expand: %w", storage.ErrUnsupported), errInfeasible},
		{fmt.Errorf("expand: %w", storage.ErrNoSpace), errInfeasible},
		{fmt.Errorf("expand: %w", storage.ErrUnavailable), errInfeasible},
		{fmt.Errorf("expand: %w", storage.ErrOfflineRequired), errTransient},
		{fmt.Errorf("mark: %w", apierrors.NewConflict(gr, "c", errors.New("changed"))), errStale},
		{fmt.Errorf("mark: %w", apierrors.NewNotFound(gr, "c")), errGone},
		{errors.New("timeout"), errTransient},
	} {
		if got := classify(tc.err); got != tc.want {
			t.Errorf("classify(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
