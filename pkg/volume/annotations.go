package volume

// Annotations this provisioner writes on each PersistentVolume it makes. They
// are everything Delete and Reconcile need, so both work from the PV alone.
const (
	AnnExportID   = "nfs-provisioner/export-id"   // ganesha Export_Id, decimal
	AnnDirectory  = "nfs-provisioner/directory"   // directory name under the export dir
	AnnIdentity   = "nfs-provisioner/identity"    // identity of the store that holds the data
	AnnOnDelete   = "nfs-provisioner/on-delete"   // the class's onDelete when the volume was made
	AnnRootSquash = "nfs-provisioner/root-squash" // "true" when the export squashes root

	// AnnVolumeGID makes kubelet add the group to the pod's supplemental
	// groups, so a non-root pod can write to a gid-owned volume.
	AnnVolumeGID = "pv.beta.kubernetes.io/gid"

	// annProvisionedBy is set by the library; reconciliation reads it.
	annProvisionedBy = "pv.kubernetes.io/provisioned-by"
)
