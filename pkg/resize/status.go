package resize

import (
	"fmt"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Annotations of the resize contract (k8s.io/kubernetes
// pkg/volume/util/types/types.go).
const (
	// AnnResizer names the controller that resizes the claim.
	AnnResizer = "volume.kubernetes.io/storage-resizer"
	// AnnNodeExpansionNotRequired tells kubelet not to expand an RWX claim
	// on the node once the controller has finished.
	AnnNodeExpansionNotRequired = "volume.kubernetes.io/node-expansion-not-required"
)

// Event reasons, those of external-resizer (pkg/util/events.go) and kcm.
const (
	ReasonResizing      = "Resizing"
	ReasonResizeFailed  = "VolumeResizeFailed"
	ReasonResizeSuccess = "VolumeResizeSuccessful"
)

// resizeConditions are the condition types a resizer owns
// (knownResizeConditions in both kcm and external-resizer).
var resizeConditions = map[v1.PersistentVolumeClaimConditionType]bool{
	v1.PersistentVolumeClaimResizing:                true,
	v1.PersistentVolumeClaimFileSystemResizePending: true,
	v1.PersistentVolumeClaimControllerResizeError:   true,
	v1.PersistentVolumeClaimNodeResizeError:         true,
}

// mergeResizeConditions replaces the resize conditions of old by add (an
// existing one of the same type and status keeps its transition time); with
// keep, other resize conditions stay. Other conditions always stay.
func mergeResizeConditions(old []v1.PersistentVolumeClaimCondition, add []v1.PersistentVolumeClaimCondition, keep bool) []v1.PersistentVolumeClaimCondition {
	pending := make(map[v1.PersistentVolumeClaimConditionType]v1.PersistentVolumeClaimCondition, len(add))
	for _, c := range add {
		pending[c.Type] = c
	}
	var out []v1.PersistentVolumeClaimCondition
	for _, c := range old {
		if !resizeConditions[c.Type] {
			out = append(out, c)
			continue
		}
		if n, ok := pending[c.Type]; ok {
			if n.Status == c.Status && n.Message == c.Message {
				n.LastTransitionTime = c.LastTransitionTime
			}
			out = append(out, n)
			delete(pending, c.Type)
		} else if keep {
			out = append(out, c)
		}
	}
	for _, c := range add { // in the given order, for stable patches
		if _, ok := pending[c.Type]; ok {
			out = append(out, c)
		}
	}
	return out
}

func hasCondition(pvc *v1.PersistentVolumeClaim, t v1.PersistentVolumeClaimConditionType) bool {
	for _, c := range pvc.Status.Conditions {
		if c.Type == t && c.Status == v1.ConditionTrue {
			return true
		}
	}
	return false
}

// markedInProgress says whether pvc already records an expansion of ours to
// target, so that marking it again would change nothing.
func markedInProgress(pvc *v1.PersistentVolumeClaim, target resource.Quantity, resizer string) bool {
	alloc, ok := pvc.Status.AllocatedResources[v1.ResourceStorage]
	return ok && alloc.Cmp(target) == 0 &&
		pvc.Status.AllocatedResourceStatuses[v1.ResourceStorage] == v1.PersistentVolumeClaimControllerResizeInProgress &&
		hasCondition(pvc, v1.PersistentVolumeClaimResizing) &&
		pvc.Annotations[AnnResizer] == resizer
}

// withInProgress is pvc marked as being expanded to target by resizer.
func withInProgress(pvc *v1.PersistentVolumeClaim, target resource.Quantity, resizer string, now metav1.Time) *v1.PersistentVolumeClaim {
	n := pvc.DeepCopy()
	n.Status.Conditions = mergeResizeConditions(n.Status.Conditions, []v1.PersistentVolumeClaimCondition{{
		Type: v1.PersistentVolumeClaimResizing, Status: v1.ConditionTrue, LastTransitionTime: now,
	}}, false)
	if n.Status.AllocatedResourceStatuses == nil {
		n.Status.AllocatedResourceStatuses = map[v1.ResourceName]v1.ClaimResourceStatus{}
	}
	n.Status.AllocatedResourceStatuses[v1.ResourceStorage] = v1.PersistentVolumeClaimControllerResizeInProgress
	if n.Status.AllocatedResources == nil {
		n.Status.AllocatedResources = v1.ResourceList{}
	}
	n.Status.AllocatedResources[v1.ResourceStorage] = target
	metav1.SetMetaDataAnnotation(&n.ObjectMeta, AnnResizer, resizer)
	delete(n.Annotations, AnnNodeExpansionNotRequired)
	return n
}

// withInfeasible is pvc after an expansion that cannot succeed as asked:
// the user may lower the request to recover.
func withInfeasible(pvc *v1.PersistentVolumeClaim, cause error, now metav1.Time) *v1.PersistentVolumeClaim {
	n := pvc.DeepCopy()
	if n.Status.AllocatedResourceStatuses == nil {
		n.Status.AllocatedResourceStatuses = map[v1.ResourceName]v1.ClaimResourceStatus{}
	}
	n.Status.AllocatedResourceStatuses[v1.ResourceStorage] = v1.PersistentVolumeClaimControllerResizeInfeasible
	n.Status.Conditions = mergeResizeConditions(n.Status.Conditions, []v1.PersistentVolumeClaimCondition{{
		Type: v1.PersistentVolumeClaimControllerResizeError, Status: v1.ConditionTrue, LastTransitionTime: now,
		Message: fmt.Sprintf("failed to expand pvc with %v", cause),
	}}, true)
	return n
}

// withFinished is pvc with the expansion done: NFS needs nothing on the node.
func withFinished(pvc *v1.PersistentVolumeClaim, capacity resource.Quantity) *v1.PersistentVolumeClaim {
	n := pvc.DeepCopy()
	if n.Status.Capacity == nil {
		n.Status.Capacity = v1.ResourceList{}
	}
	n.Status.Capacity[v1.ResourceStorage] = capacity
	n.Status.Conditions = mergeResizeConditions(n.Status.Conditions, nil, false)
	delete(n.Status.AllocatedResourceStatuses, v1.ResourceStorage)
	if len(n.Status.AllocatedResourceStatuses) == 0 {
		n.Status.AllocatedResourceStatuses = nil
	}
	metav1.SetMetaDataAnnotation(&n.ObjectMeta, AnnNodeExpansionNotRequired, "true")
	return n
}
