package volume

import (
	"time"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/storage"
)

// Operation names what the provisioner did, for metrics and logs.
type Operation string

const (
	OpProvision Operation = "provision"
	OpDelete    Operation = "delete"
	OpExpand    Operation = "expand"
	OpClone     Operation = "clone"
)

// Observer is told what the provisioner does; pkg/metrics implements it.
// Calls must be cheap and must not block.
type Observer interface {
	// Operation is called once per Provision, Delete, Expand or Clone with
	// how long it took and its error (nil on success).
	Operation(op Operation, took time.Duration, err error)
	// Reconciled is called after every reconciliation pass.
	Reconciled(res ReconcileResult)
}

// ReconcileResult counts what one reconciliation pass found and did.
// Reconciliation never deletes, moves or unexports data a PV may own; what
// it cannot explain it keeps and reports.
type ReconcileResult struct {
	Volumes         int // PVs of this store
	AlreadyExported int // exports that were live and right already
	Reexported      int // exports added back for a PV
	Converged       int // live exports whose options drifted and were corrected
	StrayExports    int // exports removed because the PV that owned them is gone
	Missing         int // PVs whose volume is missing from the store (reported)
	Refused         int // PVs refused: a volume another PV names, or a forged name (reported, untouched)
	Unreadable      int // PVs of this store with an annotation we cannot read (served, never reaped; reported)
	Leftovers       int // volumes in the store that no PV names (kept, reported)
	ReapedIntents   int // unfinished provisions nobody received, removed after the grace period
}

// VolumeInfo describes one volume a PV of this store names, for metrics.
type VolumeInfo struct {
	PV           string
	Namespace    string // of the claim; "" when unbound
	Claim        string
	StorageClass string
	Kind         storage.Kind
	ExportID     uint16
	// Path is the served directory on this node; "" when not served.
	Path string
	// Capacity is what the PV states, in bytes.
	Capacity int64
}

type nopObserver struct{}

func (nopObserver) Operation(Operation, time.Duration, error) {}
func (nopObserver) Reconciled(ReconcileResult)                {}
