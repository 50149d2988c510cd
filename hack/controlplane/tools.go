//go:build tools

// Package tools names the commands this module builds, so that go mod tidy
// keeps their dependencies.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	// Built only on request (hack/build-controlplane.sh kubelet), to run the
	// shipped manifests under a real kubelet.
	_ "k8s.io/kubernetes/cmd/kubelet"
)
