// Package resize expands the claims of our NFS PersistentVolumes: it is the
// "external controller" that kube-controller-manager waits for.
//
// # The contract, as read from the sources (Kubernetes v1.34.4, external-resizer master)
//
// What kube-controller-manager does. Its expand controller
// (pkg/controller/volume/expand/expand_controller.go, syncHandler) takes a
// Bound claim whose spec.resources.requests.storage exceeds
// status.capacity. Our PVs carry the in-tree spec.nfs source, which is not
// CSI-migratable and whose plugin (pkg/volume/nfs) is not an
// ExpandableVolumePlugin (cmd/kube-controller-manager/app/plugins.go,
// ProbeExpandableVolumePlugins), so FindExpandablePluginBySpec finds nothing
// and kcm only records a Normal event, reason ExternalExpanding
// (pkg/controller/volume/events/event.go), message "waiting for an external
// controller to expand this PVC", and does not requeue. It sets no
// annotation: volume.kubernetes.io/storage-resizer
// (pkg/volume/util/types/types.go, VolumeResizerKey) is written only on the
// CSI-migration path (util.SetClaimResizer) and by in-tree plugins it
// expands itself (util.MarkControllerReisizeInProgress). It never touches
// status or the PV of an NFS claim.
//
// What the API server enforces. The PersistentVolumeClaimResize admission
// plugin (plugin/pkg/admission/storage/persistentvolume/resize, on by
// default) forbids raising a request unless the claim is Bound and its
// class exists and sets allowVolumeExpansion: true ("only dynamically
// provisioned pvc can be resized and the storageclass that provisions the pvc
// must support resize"). Validation (pkg/apis/core/validation/validation.go,
// ValidatePersistentVolumeClaimUpdate) lets a Bound claim change only its
// storage request; with RecoverVolumeExpansionFailure, GA and locked on in
// v1.34 (pkg/features/kube_features.go), a request may also be lowered, but
// never to status.capacity or below ("field can not be less than
// status.capacity"): that is how a user recovers from an expansion that
// cannot succeed. Status updates accept allocatedResources and
// allocatedResourceStatuses (ValidatePersistentVolumeClaimStatusUpdate), and
// the status subresource keeps metadata changes (only spec is reset,
// pkg/registry/core/persistentvolumeclaim/strategy.go), so annotations can be
// written with the status.
//
// What a resizer writes, in order (kcm's in-tree expandAndRecoverFunction in
// pkg/volume/util/operationexecutor/operation_generator.go and the helpers in
// pkg/volume/util/resize_util.go; external-resizer
// pkg/controller/expand_and_recover.go and resize_status.go):
//
//  1. Choose the target. Normally the request. If the PVC says
//     allocatedResourceStatuses[storage] = ControllerResizeInProgress, an
//     expansion to allocatedResources[storage] was started and may have
//     reached the volume: finish that one first, whatever the request says
//     now. After ControllerResizeInfeasible the request is taken again (this
//     is the recovery path).
//  2. Mark the claim (status patch, guarded by resourceVersion): resize
//     conditions replaced by Resizing=True, allocatedResourceStatuses[storage]
//     = ControllerResizeInProgress, allocatedResources[storage] = target,
//     annotation storage-resizer = the resizer's name, annotation
//     volume.kubernetes.io/node-expansion-not-required removed. Skipped when
//     it says so already. Event Normal "Resizing".
//  3. Expand the volume. On failure: event Warning "VolumeResizeFailed" with
//     the error. A final, infeasible error also sets
//     allocatedResourceStatuses[storage] = ControllerResizeInfeasible and a
//     ControllerResizeError condition (patch without resourceVersion check);
//     any other failure leaves ControllerResizeInProgress for a retry with
//     backoff (external-resizer retries infeasible ones slowly too).
//  4. Patch the PV's spec.capacity to the size the volume now has (it may be
//     more than the target: rounding). kcm's comment: without transactions,
//     every claim whose request exceeds its status capacity is reprocessed
//     until status reflects it; the PV is written before the PVC for that
//     reason.
//  5. Finish. When the volume needs a filesystem resize on the node, the
//     resizer would set FileSystemResizePending / NodeResizePending and let
//     kubelet finish. NFS needs none, so it goes straight to done (kcm's
//     MarkResizeFinished for plugins without RequiresFSResize; external-
//     resizer's markOverallExpansionAsFinished): status.capacity = the new
//     size, all resize conditions removed, allocatedResourceStatuses[storage]
//     deleted (the map set to nil when empty), allocatedResources left as the
//     target, annotation node-expansion-not-required = "true" (kubelet's
//     NodeExpander skips RWX claims carrying it), event Normal
//     "VolumeResizeSuccessful".
//
// The PV annotation volume.alpha.kubernetes.io/pre-resize-capacity is only
// for volumes that wait for a node-side resize, so it is never written here.
//
// # What this controller adds
//
// It acts only on claims whose PV this provisioner made ([Expander.Owns]) and
// whose class names this provisioner and allows expansion. It refuses a
// request below the PV's capacity (volumes do not shrink) with a Warning event
// and changes nothing, except when the claim records an expansion of ours in
// progress: then the PV capacity was written after the volume grew, and the
// expansion is recorded as done. For the same reason it does not call
// Expand again when a claim in progress finds its PV already at the target:
// that is the state a crash between the PV and the PVC update leaves, and
// calling again could cost an ext4 volume a second unexport.
package resize
