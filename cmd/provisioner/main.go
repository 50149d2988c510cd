package main

import (
	_ "github.com/godbus/dbus/v5"
	_ "github.com/willscott/go-nfs-client/nfs"
	_ "golang.org/x/sys/unix"
	_ "k8s.io/client-go/kubernetes"
	_ "k8s.io/klog/v2"
	_ "sigs.k8s.io/sig-storage-lib-external-provisioner/v10/controller"
)

func main() {}
