package framework

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/ganesha"
)

// Portmapper makes sure a portmapper (rpcbind) answers on 127.0.0.1:111
// until t ends, starting one of the test's own when none does.
//
// rpcbind is machine-global, and a provisioner starts one only when none
// answers, as a child of its own. Tests that run several provisioners that
// stand for pods of their own (each with its own network namespace in a
// cluster) on this one host need the portmapper to belong to the host:
// otherwise the first provisioner's rpcbind serves them all, and freezing
// or killing that provisioner's processes takes every other server's
// portmapper with it.
func Portmapper(t testing.TB) {
	t.Helper()
	if ganesha.PortmapperAnswers(t.Context()) {
		return
	}
	activate, err := exec.LookPath("systemd-socket-activate")
	if err != nil {
		t.Fatalf("portmapper: %v (package systemd)", err)
	}
	rpcbind, err := exec.LookPath("rpcbind")
	if err != nil {
		t.Fatalf("portmapper: %v (package rpcbind)", err)
	}
	// Nobody answers: the socket file is a leftover a new rpcbind could
	// not bind.
	sock := ganesha.RpcbindSocket
	if err := os.Remove(sock); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("portmapper: %v", err)
	}
	// On loopback only, as the provisioner runs it.
	p, err := Launch(ProcessSpec{
		Name: "rpcbind", Path: activate, LogFile: filepath.Join(t.TempDir(), "rpcbind.log"),
		Args: ganesha.LoopbackRpcbindArgs(rpcbind),
	})
	if err != nil {
		t.Fatalf("portmapper: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Stop(DefaultStopGrace); err != nil {
			t.Logf("portmapper: stop: %v", err)
		}
		_ = os.Remove(sock)
	})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for !ganesha.PortmapperAnswers(ctx) {
		select {
		case <-p.Exited():
			t.Fatalf("portmapper: rpcbind exited: %v\n%s", p.ExitErr(), p.Tail(20))
		case <-ctx.Done():
			t.Fatal(fmt.Errorf("portmapper: rpcbind did not answer: %w\n%s", ctx.Err(), p.Tail(20)))
		case <-time.After(20 * time.Millisecond):
		}
	}
}
