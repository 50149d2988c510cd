//go:build image

// Package image runs the built container image (make image) as Kubernetes'
// storage e2e suite runs the upstream nfs-provisioner image, against the
// test control plane. It needs podman and the image, so it is built only
// with the tag "image": `make test-image` (part of CI) runs it; `make test`
// does not compile it, so it never skips there.
package image

import (
	"os"
	"testing"

	"github.com/nfs-provisioner/nfs-provisioner/test/framework"
)

func TestMain(m *testing.M) { os.Exit(framework.Main(m)) }
