package resize

import (
	"errors"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/storage"
)

// errKind is how a failed sync is handled. classify is the one place that
// decides it, as external-provisioner's single error classifier does.
type errKind int

const (
	// errTransient: retry with the queue's backoff; the claim stays
	// ControllerResizeInProgress.
	errTransient errKind = iota
	// errInfeasible: the expansion cannot succeed as asked (a shrink, no
	// room in the store, a volume kind unavailable here). The claim is
	// marked ControllerResizeInfeasible, so the user may lower the request;
	// it is retried only slowly, since room may be freed.
	errInfeasible
	// errStale: our copy of an object was outdated (a conflict); retry
	// with backoff, without an event: nothing failed.
	errStale
	// errGone: the claim or volume was deleted meanwhile; nothing to do.
	errGone
)

func (k errKind) String() string {
	return [...]string{"transient", "infeasible", "stale", "gone"}[k]
}

func classify(err error) errKind {
	switch {
	case errors.Is(err, storage.ErrUnsupported), errors.Is(err, storage.ErrNoSpace), errors.Is(err, storage.ErrUnavailable):
		return errInfeasible
	case apierrors.IsConflict(err):
		return errStale
	case apierrors.IsNotFound(err):
		return errGone
	}
	return errTransient
}
