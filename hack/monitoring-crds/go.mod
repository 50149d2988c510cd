// Module monitoring-crds pins the prometheus-operator release whose CRDs the
// tests install (TestHelmServiceMonitor). Nothing is built from it: the
// tests read the CRD manifests from the module's source, which
// `go mod download` fetches from the Go module proxy, checked against
// go.sum. It lives apart from the project's module so that the operator and
// its dependencies never enter the provisioner's build.
module github.com/nfs-provisioner/hack/monitoring-crds

go 1.26.0

require github.com/prometheus-operator/prometheus-operator v0.85.0
