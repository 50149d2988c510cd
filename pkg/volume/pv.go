package volume

import (
	"strconv"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/sig-storage-lib-external-provisioner/v10/controller"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/storage"
)

// buildPV is the PersistentVolume for volume v exported under id. Its
// capacity is the volume's real size where the backend enforces one (the
// request rounded up), else the request. The library adds the claim
// reference and provisioned-by.
func (p *Provisioner) buildPV(opts controller.ProvisionOptions, params Params, v storage.Volume, id uint16) *v1.PersistentVolume {
	claim, class := opts.PVC, opts.StorageClass
	capacity := claim.Spec.Resources.Requests[v1.ResourceStorage]
	if v.Size > 0 {
		capacity = *resource.NewQuantity(v.Size, resource.BinarySI)
	}
	annotations := map[string]string{
		AnnExportID:   strconv.Itoa(int(id)),
		AnnDirectory:  v.Name,
		AnnKind:       string(v.Kind),
		AnnIdentity:   p.opts.Identity,
		AnnOnDelete:   string(params.OnDelete),
		AnnRootSquash: strconv.FormatBool(params.RootSquash),
	}
	if params.GIDSet {
		annotations[AnnVolumeGID] = strconv.Itoa(params.GID)
	}
	reclaim := v1.PersistentVolumeReclaimDelete
	if class.ReclaimPolicy != nil {
		reclaim = *class.ReclaimPolicy
	}
	filesystem := v1.PersistentVolumeFilesystem
	return &v1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: opts.PVName, Annotations: annotations},
		Spec: v1.PersistentVolumeSpec{
			PersistentVolumeReclaimPolicy: reclaim,
			AccessModes:                   claim.Spec.AccessModes,
			Capacity:                      v1.ResourceList{v1.ResourceStorage: capacity},
			MountOptions:                  mergeMountOptions(class.MountOptions, params.MountOptions),
			VolumeMode:                    &filesystem,
			PersistentVolumeSource: v1.PersistentVolumeSource{
				NFS: &v1.NFSVolumeSource{Server: p.opts.Server, Path: PseudoPath(v.Name)},
			},
		},
	}
}

// mergeMountOptions is the class's mountOptions followed by the legacy
// parameter's, each option once.
func mergeMountOptions(lists ...[]string) []string {
	var out []string
	seen := map[string]bool{}
	for _, list := range lists {
		for _, o := range list {
			if !seen[o] {
				seen[o] = true
				out = append(out, o)
			}
		}
	}
	return out
}
