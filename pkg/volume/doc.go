// Package volume is the provisioner: it turns a PersistentVolumeClaim into a
// directory under the local store, an NFS export of that directory and a
// PersistentVolume that points at the export, and undoes that when the volume
// is released.
//
// The PersistentVolume objects are the source of truth. Each one records, in
// annotations, the export ID, the directory and the identity of the store
// that made it; at start-up [Provisioner.Reconcile] makes the NFS server's
// exports and the store's directories agree with them again, so nothing is
// lost or left behind across restarts, including a kill -9 in the middle of a
// provision or a deletion.
//
// Provision and Delete implement the Provisioner interface of
// sigs.k8s.io/sig-storage-lib-external-provisioner/v10/controller. Both are
// idempotent and safe to call from several workers at once: the library may
// call Provision twice for one claim, and Delete for a volume whose
// PersistentVolume object was never saved.
package volume
