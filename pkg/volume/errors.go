package volume

import (
	"context"
	"errors"

	"sigs.k8s.io/sig-storage-lib-external-provisioner/v10/controller"
)

// errInvalid marks a claim or class this provisioner cannot honour as asked;
// retrying will not help until the user changes it.
var errInvalid = errors.New("invalid request")

// provisioningState is the one place that maps a failed Provision to the
// library's states, as external-provisioner's checkError does:
//   - a deadline or cancellation: the operation may still finish (a D-Bus
//     call ganesha may yet carry out), so it goes on in the background, and
//     the library calls Provision again; Provision is idempotent;
//   - everything else: Provision has undone what it made, so it is finished,
//     and the library retries with backoff and reports each failure.
func provisioningState(err error) controller.ProvisioningState {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return controller.ProvisioningInBackground
	}
	return controller.ProvisioningFinished
}
