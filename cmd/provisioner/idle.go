package main

import (
	"time"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/volume"
)

// idleTrimAfter is how long the provisioner has done no operation and no
// reconciliation pass before it gives memory back (internal/idletrim).
// Longer than the gaps within a burst of claims, short against the idle
// time between bursts.
const idleTrimAfter = 10 * time.Second

// touchingObserver tells the idle trimmer of every operation and
// reconciliation pass, besides the metrics.
type touchingObserver struct {
	volume.Observer
	touch func()
}

func (o touchingObserver) Operation(op volume.Operation, took time.Duration, err error) {
	o.touch()
	o.Observer.Operation(op, took, err)
}

func (o touchingObserver) Reconciled(res volume.ReconcileResult) {
	o.touch()
	o.Observer.Reconciled(res)
}
