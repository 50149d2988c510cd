package resize

import (
	"context"
	"encoding/json"
	"fmt"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
)

// claimStatusPatch is the strategic merge patch from old to updated; with
// guard it carries old's resourceVersion, so it fails with a conflict when
// the claim changed since (as kcm's PatchPVCStatus). A patch, not an
// update, so that fields this client does not know are never dropped.
func claimStatusPatch(old, updated *v1.PersistentVolumeClaim, guard bool) ([]byte, error) {
	oldJSON, err := json.Marshal(old)
	if err != nil {
		return nil, err
	}
	newJSON, err := json.Marshal(updated)
	if err != nil {
		return nil, err
	}
	patch, err := strategicpatch.CreateTwoWayMergePatch(oldJSON, newJSON, old)
	if err != nil {
		return nil, err
	}
	if !guard {
		return patch, nil
	}
	var m map[string]any
	if err := json.Unmarshal(patch, &m); err != nil {
		return nil, err
	}
	meta, _ := m["metadata"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
		m["metadata"] = meta
	}
	meta["resourceVersion"] = old.ResourceVersion
	return json.Marshal(m)
}

func (c *Controller) patchClaimStatus(ctx context.Context, old, updated *v1.PersistentVolumeClaim, guard bool) (*v1.PersistentVolumeClaim, error) {
	patch, err := claimStatusPatch(old, updated, guard)
	if err != nil {
		return old, fmt.Errorf("patch for claim %s/%s: %w", old.Namespace, old.Name, err)
	}
	ctx, cancel := context.WithTimeout(ctx, c.o.APITimeout)
	defer cancel()
	return c.o.Client.CoreV1().PersistentVolumeClaims(old.Namespace).Patch(ctx, old.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status")
}

// patchVolumeCapacity sets pv's spec.capacity.storage and nothing else; no
// resourceVersion guard, since no other writer owns that field.
func (c *Controller) patchVolumeCapacity(ctx context.Context, pv *v1.PersistentVolume, capacity resource.Quantity) error {
	if current := pv.Spec.Capacity[v1.ResourceStorage]; current.Cmp(capacity) == 0 {
		return nil
	}
	patch, err := json.Marshal(map[string]any{"spec": map[string]any{"capacity": map[string]any{string(v1.ResourceStorage): capacity.String()}}})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.o.APITimeout)
	defer cancel()
	_, err = c.o.Client.CoreV1().PersistentVolumes().Patch(ctx, pv.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{})
	return err
}
