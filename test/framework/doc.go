// Package framework runs a real, kubelet-less Kubernetes control plane for
// tests: etcd, kube-apiserver and kube-controller-manager as plain child
// processes on 127.0.0.1, with TLS, RBAC and every controller on, so that the
// real PV binder and StatefulSet controller act on what tests create.
//
// A test package wires it up once:
//
//	func TestMain(m *testing.M) { os.Exit(framework.Main(m)) }
//
// and each test asks for the package's cluster and a namespace of its own:
//
//	c := framework.Shared(t)
//	ns := c.Namespace(t)
//
// The binaries come from $CONTROLPLANE_BIN, or from the cache directory that
// hack/build-controlplane.sh (run by `make deps`) fills.
package framework
