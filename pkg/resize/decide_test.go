package resize

import (
	"testing"

	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const prov = "example.com/nfs"

// claimState is the part of a claim and its volume that Decide looks at.
type claimState struct {
	phase             v1.PersistentVolumeClaimPhase
	request, capacity string
	pv                string // PV capacity
	state             v1.ClaimResourceStatus
	alloc             string
}

func fixture(s claimState) (*v1.PersistentVolumeClaim, *v1.PersistentVolume, *storagev1.StorageClass) {
	yes := true
	class := "nfs"
	if s.phase == "" {
		s.phase = v1.ClaimBound
	}
	pvc := &v1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "c", UID: "uid-c"},
		Spec: v1.PersistentVolumeClaimSpec{
			StorageClassName: &class,
			VolumeName:       "pv-c",
			Resources:        v1.VolumeResourceRequirements{Requests: v1.ResourceList{v1.ResourceStorage: resource.MustParse(s.request)}},
		},
		Status: v1.PersistentVolumeClaimStatus{Phase: s.phase, Capacity: v1.ResourceList{v1.ResourceStorage: resource.MustParse(s.capacity)}},
	}
	if s.state != "" {
		pvc.Status.AllocatedResourceStatuses = map[v1.ResourceName]v1.ClaimResourceStatus{v1.ResourceStorage: s.state}
	}
	if s.alloc != "" {
		pvc.Status.AllocatedResources = v1.ResourceList{v1.ResourceStorage: resource.MustParse(s.alloc)}
	}
	pv := &v1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: "pv-c"},
		Spec: v1.PersistentVolumeSpec{
			Capacity: v1.ResourceList{v1.ResourceStorage: resource.MustParse(s.pv)},
			ClaimRef: &v1.ObjectReference{Namespace: "ns", Name: "c", UID: "uid-c"},
		},
	}
	sc := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: class}, Provisioner: prov, AllowVolumeExpansion: &yes}
	return pvc, pv, sc
}

func TestDecide(t *testing.T) {
	for _, tc := range []struct {
		name   string
		s      claimState
		action Action
		target string
	}{
		{"grow to the request", claimState{request: "2Gi", capacity: "1Gi", pv: "1Gi"}, Grow, "2Gi"},
		{"nothing asked", claimState{request: "1Gi", capacity: "1Gi", pv: "1Gi"}, Skip, ""},
		{"rounded volume covers the request", claimState{request: "200Mi", capacity: "300Mi", pv: "300Mi"}, Skip, ""},
		{"not bound", claimState{phase: v1.ClaimPending, request: "2Gi", capacity: "1Gi", pv: "1Gi"}, Skip, ""},
		// A crash after the PV update, before the PVC's: record, do
		// not expand again (the PV is written only after Expand).
		{"crash after PV update", claimState{request: "2Gi", capacity: "1Gi", pv: "2Gi",
			state: v1.PersistentVolumeClaimControllerResizeInProgress, alloc: "2Gi"}, Record, "2Gi"},
		{"crash after PV update, store rounded up", claimState{request: "2Gi", capacity: "1Gi", pv: "2100Mi",
			state: v1.PersistentVolumeClaimControllerResizeInProgress, alloc: "2Gi"}, Record, "2Gi"},
		// ... and the user has lowered the request meanwhile (allowed
		// above status.capacity): the volume has grown, record it.
		{"crash after PV update, request lowered", claimState{request: "1536Mi", capacity: "1Gi", pv: "2Gi",
			state: v1.PersistentVolumeClaimControllerResizeInProgress, alloc: "2Gi"}, Record, "2Gi"},
		// A crash before the PV update: expand again to the recorded
		// target, even if the request grew since.
		{"crash before PV update", claimState{request: "3Gi", capacity: "1Gi", pv: "1Gi",
			state: v1.PersistentVolumeClaimControllerResizeInProgress, alloc: "2Gi"}, Grow, "2Gi"},
		// Recovery: after an infeasible target the request counts again.
		{"recovery after infeasible", claimState{request: "2Gi", capacity: "1Gi", pv: "1Gi",
			state: v1.PersistentVolumeClaimControllerResizeInfeasible, alloc: "100Gi"}, Grow, "2Gi"},
		{"shrink below the PV", claimState{request: "2Gi", capacity: "1Gi", pv: "3Gi"}, Refuse, "2Gi"},
		{"PV equal to request, not ours in progress", claimState{request: "2Gi", capacity: "1Gi", pv: "2Gi"}, Grow, "2Gi"},
		{"node expansion pending", claimState{request: "2Gi", capacity: "1Gi", pv: "2Gi",
			state: v1.PersistentVolumeClaimNodeResizePending, alloc: "2Gi"}, Skip, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pvc, pv, sc := fixture(tc.s)
			plan := Decide(Inputs{Claim: pvc, Volume: pv, Class: sc, Provisioner: prov, Owned: true})
			if plan.Action != tc.action {
				t.Fatalf("action %v, want %v (%s)", plan.Action, tc.action, plan.Why)
			}
			if tc.target != "" && plan.Target.Cmp(resource.MustParse(tc.target)) != 0 {
				t.Errorf("target %s, want %s", plan.Target.String(), tc.target)
			}
		})
	}
}

func TestDecideGates(t *testing.T) {
	no := false
	grow := claimState{request: "2Gi", capacity: "1Gi", pv: "1Gi"}
	for _, tc := range []struct {
		name   string
		change func(*Inputs)
	}{
		{"not ours", func(in *Inputs) { in.Owned = false }},
		{"no volume", func(in *Inputs) { in.Volume = nil }},
		{"no class", func(in *Inputs) { in.Class = nil }},
		{"class of another provisioner", func(in *Inputs) { in.Class.Provisioner = "other" }},
		{"expansion not allowed", func(in *Inputs) { in.Class.AllowVolumeExpansion = &no }},
		{"expansion unset", func(in *Inputs) { in.Class.AllowVolumeExpansion = nil }},
		{"volume bound elsewhere", func(in *Inputs) { in.Volume.Spec.ClaimRef.UID = "other" }},
		{"volume unbound", func(in *Inputs) { in.Volume.Spec.ClaimRef = nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pvc, pv, sc := fixture(grow)
			in := Inputs{Claim: pvc, Volume: pv, Class: sc, Provisioner: prov, Owned: true}
			tc.change(&in)
			if plan := Decide(in); plan.Action != Skip || plan.Why == "" {
				t.Errorf("got %v (%q), want Skip with a reason", plan.Action, plan.Why)
			}
		})
	}
}

func TestClaimClassPrefersBetaAnnotation(t *testing.T) {
	pvc, _, _ := fixture(claimState{request: "1Gi", capacity: "1Gi", pv: "1Gi"})
	if got := claimClass(pvc); got != "nfs" {
		t.Errorf("spec class: %q", got)
	}
	pvc.Annotations = map[string]string{v1.BetaStorageClassAnnotation: "beta"}
	if got := claimClass(pvc); got != "beta" {
		t.Errorf("annotated class: %q", got)
	}
}
