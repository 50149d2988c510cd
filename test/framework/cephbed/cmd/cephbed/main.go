// Command cephbed brings up the test bed's single-node Ceph for manual
// experiments and keeps it until interrupted:
//
//	go run ./test/framework/cephbed/cmd/cephbed
//	ceph -c <printed conf> -s
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/nfs-provisioner/nfs-provisioner/test/framework/cephbed"
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), cephbed.DefaultStartTimeout)
	c, err := cephbed.New(ctx, cephbed.Options{Logf: log.Printf})
	cancel()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("CEPH_CONF=%s\nPIDs: %v\nready; Ctrl-C (or SIGTERM to pid %d) stops it and removes %s\n", c.ConfPath(), c.PIDs(), os.Getpid(), c.Dir)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
	if err := c.Close(); err != nil {
		log.Fatal(err)
	}
}
