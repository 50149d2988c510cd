// Package chaos runs a mixed workload against the real provisioner binary,
// its embedded ganesha and the real control plane while it kills them,
// freezes the API server and fills the store, and then checks that nothing
// acknowledged was lost (issue 13).
package chaos

import (
	"os"
	"testing"

	"github.com/nfs-provisioner/nfs-provisioner/test/framework"
)

func TestMain(m *testing.M) { os.Exit(framework.Main(m)) }
