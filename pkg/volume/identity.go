package volume

import (
	"context"
	"fmt"
	"sort"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/storage"
)

// ResolveIdentity returns the store's identity, which PVs carry so that only
// volumes of this store are ever touched. A new store gets a new one. A store
// that holds volumes but has lost its identity file never gets a new one:
// that would disown every volume in it. The identity is then recovered from
// the PVs that name this store's volumes, and when they do not agree on one,
// start-up is refused with a message that says how to restore it.
func ResolveIdentity(ctx context.Context, state *State, client kubernetes.Interface, backends []storage.Backend) (string, error) {
	id, ok, err := state.Identity()
	if err != nil || ok {
		return id, err
	}
	held, err := heldVolumes(ctx, state, backends)
	if err != nil {
		return "", err
	}
	if len(held) == 0 {
		id = string(uuid.NewUUID())
		if err := state.SetIdentity(id); err != nil {
			return "", err
		}
		klog.FromContext(ctx).Info("New store: made its identity", "identity", id)
		return id, nil
	}

	pvs, err := client.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return "", fmt.Errorf("the store's identity file %s is missing and the store holds %d volumes; recovering it needs the PVs: %w", state.identityPath(), len(held), err)
	}
	seen := map[string]int{} // identity -> PVs naming a volume of this store
	for _, pv := range pvs.Items {
		name := pv.Annotations[AnnDirectory]
		if pv.Annotations[AnnIdentity] != "" && held[name] {
			seen[pv.Annotations[AnnIdentity]]++
		}
	}
	ids := make([]string, 0, len(seen))
	for id := range seen {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	switch len(ids) {
	case 1:
		if err := state.SetIdentity(ids[0]); err != nil {
			return "", err
		}
		klog.FromContext(ctx).Info("The store's identity file was missing; recovered it from the PVs that name its volumes",
			"identity", ids[0], "pvs", seen[ids[0]], "volumes", len(held))
		return ids[0], nil
	case 0:
		return "", fmt.Errorf("the store's identity file %s is missing, and none of the %d PVs names one of the %d volumes the store holds; "+
			"a new identity would disown them, so start-up stops here. If this store was moved from another cluster, write that cluster's identity "+
			"(the %s annotation of its PVs) into %s; if the volumes are leftovers you want this provisioner to ignore, write a new one: "+
			"uuidgen > %s", state.identityPath(), len(pvs.Items), len(held), AnnIdentity, state.identityPath(), state.identityPath())
	default:
		var parts []string
		for _, id := range ids {
			parts = append(parts, fmt.Sprintf("%s (%d PVs)", id, seen[id]))
		}
		return "", fmt.Errorf("the store's identity file %s is missing, and the PVs naming its volumes carry %d identities: %s; "+
			"write the right one into %s", state.identityPath(), len(ids), strings.Join(parts, ", "), state.identityPath())
	}
}

// heldVolumes names every volume the store holds, by any backend or in the
// ledger.
func heldVolumes(ctx context.Context, state *State, backends []storage.Backend) (map[string]bool, error) {
	held := map[string]bool{}
	for _, b := range backends {
		names, err := b.List(ctx)
		if err != nil {
			return nil, err
		}
		for _, n := range names {
			held[n] = true
		}
	}
	owned, err := state.Owners()
	if err != nil {
		return nil, err
	}
	for _, n := range owned {
		held[n] = true
	}
	return held, nil
}
