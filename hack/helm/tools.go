//go:build tools

// Package tools pins the Helm CLI for hack/build-helm.sh.
package tools

import _ "helm.sh/helm/v3/cmd/helm"
