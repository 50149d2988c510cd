package resize

import (
	"fmt"

	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// Action is what one sync does for a claim.
type Action int

const (
	// Skip: nothing to do for this controller.
	Skip Action = iota
	// Refuse: the request is below what the volume has; volumes do not
	// shrink. A Warning event, no change.
	Refuse
	// Grow: mark the claim, call Expand(Target), patch the PV, finish.
	Grow
	// Record: the PV already holds an expansion of ours in progress; finish
	// the claim with the PV's capacity without expanding again.
	Record
)

func (a Action) String() string {
	switch a {
	case Skip:
		return "Skip"
	case Refuse:
		return "Refuse"
	case Grow:
		return "Grow"
	case Record:
		return "Record"
	}
	return fmt.Sprintf("Action(%d)", int(a))
}

// Plan is the outcome of Decide.
type Plan struct {
	Action Action
	// Target is the size to expand to (Grow), to record as allocated, or
	// the size refused (Refuse).
	Target resource.Quantity
	// Capacity is the PV's capacity when the plan was made.
	Capacity resource.Quantity
	// Why says, for logs and events, why this action.
	Why string
}

// Inputs are what Decide looks at. Volume and Class may be nil when not found.
type Inputs struct {
	Claim       *v1.PersistentVolumeClaim
	Volume      *v1.PersistentVolume
	Class       *storagev1.StorageClass
	Provisioner string // our provisioner name
	Owned       bool   // Expander.Owns(Volume)
}

// NeedsResize is the cheap first filter, the same as kcm's and
// external-resizer's: a Bound claim asking for more than its status says.
func NeedsResize(pvc *v1.PersistentVolumeClaim) bool {
	if pvc.Status.Phase != v1.ClaimBound || pvc.Spec.VolumeName == "" {
		return false
	}
	req := pvc.Spec.Resources.Requests[v1.ResourceStorage]
	capacity := pvc.Status.Capacity[v1.ResourceStorage]
	return req.Cmp(capacity) > 0
}

// Decide is the whole decision of a sync, without side effects. It follows
// expandAndRecover of kcm and external-resizer for the choice of target (see
// the package doc) and adds the shrink refusal.
func Decide(in Inputs) Plan {
	pvc, pv := in.Claim, in.Volume
	if !NeedsResize(pvc) {
		return Plan{Action: Skip, Why: "claim is not Bound or asks for no more than its capacity"}
	}
	if pv == nil {
		return Plan{Action: Skip, Why: "volume " + pvc.Spec.VolumeName + " not found"}
	}
	if ref := pv.Spec.ClaimRef; ref == nil || ref.Namespace != pvc.Namespace || ref.Name != pvc.Name || ref.UID != pvc.UID {
		return Plan{Action: Skip, Why: "volume is not bound to this claim"}
	}
	if !in.Owned {
		return Plan{Action: Skip, Why: "volume was not made by this provisioner"}
	}
	if in.Class == nil {
		return Plan{Action: Skip, Why: fmt.Sprintf("storage class %q not found", claimClass(pvc))}
	}
	if in.Class.Provisioner != in.Provisioner {
		return Plan{Action: Skip, Why: fmt.Sprintf("storage class %q belongs to provisioner %q", in.Class.Name, in.Class.Provisioner)}
	}
	if in.Class.AllowVolumeExpansion == nil || !*in.Class.AllowVolumeExpansion {
		return Plan{Action: Skip, Why: fmt.Sprintf("storage class %q does not allow volume expansion", in.Class.Name)}
	}

	req := pvc.Spec.Resources.Requests[v1.ResourceStorage]
	pvCap := pv.Spec.Capacity[v1.ResourceStorage]
	state := pvc.Status.AllocatedResourceStatuses[v1.ResourceStorage]
	alloc, hasAlloc := pvc.Status.AllocatedResources[v1.ResourceStorage]

	target := req
	if pvCap.Cmp(req) < 0 {
		switch state {
		case v1.PersistentVolumeClaimControllerResizeInProgress,
			v1.PersistentVolumeClaimNodeResizePending,
			v1.PersistentVolumeClaimNodeResizeInProgress,
			v1.PersistentVolumeClaimNodeResizeInfeasible:
			// Finish the expansion already started before a new one.
			if hasAlloc {
				target = alloc
			}
		}
	} else {
		switch state {
		case v1.PersistentVolumeClaimNodeResizePending, v1.PersistentVolumeClaimNodeResizeInProgress:
			// Never set for our volumes; kubelet's business if it is.
			return Plan{Action: Skip, Capacity: pvCap, Why: "node expansion is pending"}
		case v1.PersistentVolumeClaimControllerResizeInProgress,
			v1.PersistentVolumeClaimControllerResizeInfeasible,
			v1.PersistentVolumeClaimNodeResizeInfeasible,
			"":
			if hasAlloc {
				target = alloc
			}
		}
	}

	plan := Plan{Target: target, Capacity: pvCap}
	inProgress := state == v1.PersistentVolumeClaimControllerResizeInProgress
	switch c := target.Cmp(pvCap); {
	case c > 0:
		plan.Action, plan.Why = Grow, "volume is smaller than the target"
	case inProgress:
		// We write the PV's capacity only after the volume grew: this
		// is a crash between the PV and the PVC update.
		plan.Action, plan.Why = Record, "volume already has the target of the expansion in progress"
	case c == 0:
		// Not ours to trust blindly: Expand leaves a volume that is
		// already that large alone and says what it has.
		plan.Action, plan.Why = Grow, "volume capacity equals the target; checking with the store"
	default:
		plan.Action, plan.Why = Refuse, fmt.Sprintf("requested %s is less than the volume's capacity %s; volumes cannot shrink", target.String(), pvCap.String())
	}
	return plan
}

// claimClass is the claim's class: the beta annotation, else spec (as
// component-helpers' GetPersistentVolumeClaimClass).
func claimClass(pvc *v1.PersistentVolumeClaim) string {
	if class, ok := pvc.Annotations[v1.BetaStorageClassAnnotation]; ok {
		return class
	}
	if pvc.Spec.StorageClassName != nil {
		return *pvc.Spec.StorageClassName
	}
	return ""
}
