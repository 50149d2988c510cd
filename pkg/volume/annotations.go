package volume

// Annotations this provisioner writes on each PersistentVolume it makes. They
// are everything Delete and Reconcile need, so both work from the PV alone.
// Their names and meanings are kept across releases: a PV made by an earlier
// release is read the same way (a missing kind means a directory volume).
const (
	AnnExportID   = "nfs-provisioner/export-id"   // ganesha Export_Id, decimal
	AnnDirectory  = "nfs-provisioner/directory"   // the volume's name in the store (a directory name, for every kind)
	AnnIdentity   = "nfs-provisioner/identity"    // identity of the store that holds the data
	AnnOnDelete   = "nfs-provisioner/on-delete"   // the class's onDelete when the volume was made
	AnnRootSquash = "nfs-provisioner/root-squash" // "true" when the export squashes root
	AnnKind       = "nfs-provisioner/kind"        // directory, xfs or ext4; absent means directory

	// AnnVolumeGID makes kubelet add the group to the pod's supplemental
	// groups, so a non-root pod can write to a gid-owned volume.
	AnnVolumeGID = "pv.beta.kubernetes.io/gid"
)
