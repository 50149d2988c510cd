package ganesha

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"time"

	"k8s.io/klog/v2"
)

// rpcbind is machine-global: one portmapper on port 111 and /run/rpcbind.sock
// serves every NFSv3 server on the host. We reuse one that answers and never
// stop it; we start one only when none answers, and stop only that one.
//
// Debian's rpcbind switches to user _rpc, and the kernel clears Pdeathsig on
// that credential change: an rpcbind we started outlives a SIGKILLed
// provisioner. That is tolerable for a machine-global daemon: the next start
// on the same state dir replaces it (pid file + marker), any other server
// simply reuses it.

const (
	portmapperAddr = "127.0.0.1:111"
	// RpcbindSocket is the portmapper's local socket, machine-global.
	RpcbindSocket    = "/run/rpcbind.sock"
	rpcbindStartWait = 5 * time.Second
)

type rpcbindManager struct {
	spawner  *spawner
	binary   string // rpcbind
	activate string // systemd-socket-activate, "" if absent
	loopback bool   // keep the portmapper on loopback
	stateDir string
	pidFile  string
	logFile  string
	detach   bool

	owned *child // nil unless we started the running one
}

// ensure makes sure a portmapper answers, starting one if needed.
func (r *rpcbindManager) ensure(ctx context.Context) error {
	logger := klog.FromContext(ctx)
	if r.owned != nil && !r.owned.exited() && PortmapperAnswers(ctx) {
		return nil
	}
	r.owned = nil
	if PortmapperAnswers(ctx) {
		logger.V(2).Info("Using the portmapper that already answers; it is not ours to stop", "address", portmapperAddr)
		return nil
	}
	if err := killLeftover(ctx, r.pidFile, []string{"rpcbind", "systemd-socket-activate"}, r.stateDir); err != nil {
		return err
	}
	// Nobody answers, so the socket file is a leftover; a new rpcbind
	// could not bind it.
	if err := os.Remove(RpcbindSocket); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("rpcbind: remove stale %s: %w", RpcbindSocket, err)
	}
	spec := childSpec{
		name: "rpcbind", stateDir: r.stateDir, pidFile: r.pidFile, logFile: r.logFile, detach: r.detach,
	}
	if r.loopback && r.activate != "" {
		spec.path = r.activate
		spec.args = LoopbackRpcbindArgs(r.binary, "-E", markerEnv+"="+r.stateDir)
	} else {
		if r.loopback {
			logger.Info("systemd-socket-activate not found: rpcbind will listen on all addresses (install systemd)")
		}
		spec.path = r.binary
		spec.args = []string{"-f"}
	}
	c, err := startChild(r.spawner, spec)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(rpcbindStartWait)
	for {
		if PortmapperAnswers(ctx) {
			if c.exited() {
				// Another server won the race for port 111; use theirs.
				c.removePidFile()
				return nil
			}
			r.owned = c
			logger.Info("Started rpcbind", "pid", c.pid(), "loopbackOnly", r.loopback && r.activate != "")
			return nil
		}
		if time.Now().After(deadline) {
			c.stop(ctx, time.Second)
			return fmt.Errorf("rpcbind did not answer on %s within %s (%s); log:\n%s", portmapperAddr, rpcbindStartWait, c.exitStatus(), tailFile(r.logFile, 10))
		}
		select {
		case <-ctx.Done():
			c.stop(ctx, time.Second)
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// LoopbackRpcbindArgs are the arguments of systemd-socket-activate that
// run rpcbind (at path rpcbind) as the host's portmapper on loopback only,
// activate's own options opts first. Socket activation is the only way to
// keep rpcbind's TCP listeners on loopback; the PID stays the same through
// the exec. -h 127.0.0.2: "-h 127.0.0.1" (or any address rpcbind adds
// itself) aborts rpcbind 1.2.6 with a double free; -h only restricts UDP.
func LoopbackRpcbindArgs(rpcbind string, opts ...string) []string {
	args := append([]string{"-l", portmapperAddr, "-l", "[::1]:111", "-l", RpcbindSocket}, opts...)
	return append(args, rpcbind, "-f", "-h", "127.0.0.2")
}

// stop stops the rpcbind we started, if any.
func (r *rpcbindManager) stop(ctx context.Context) {
	if r.owned == nil {
		return
	}
	r.owned.stop(ctx, 5*time.Second)
	klog.FromContext(ctx).Info("Stopped rpcbind", "pid", r.owned.pid())
	r.owned = nil
	// The listening socket file outlives the process under socket activation.
	if !PortmapperAnswers(ctx) {
		os.Remove(RpcbindSocket)
	}
}

// isLoopback reports whether ganesha binds only to loopback.
func isLoopback(bind string) bool {
	a, err := netip.ParseAddr(bind)
	return err == nil && a.IsLoopback()
}

// PortmapperAnswers sends a PMAPPROC_NULL call over TCP to the host's
// portmapper and checks for an accepted reply; an open port alone could be
// anything (a frozen rpcbind still accepts connections).
func PortmapperAnswers(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", portmapperAddr)
	if err != nil {
		return false
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	const xid = 0x6e667370
	// xid, CALL, rpcvers 2, prog 100000, vers 2, proc 0, cred AUTH_NULL, verf AUTH_NULL
	body := []uint32{xid, 0, 2, 100000, 2, 0, 0, 0, 0, 0}
	msg := make([]byte, 4+4*len(body))
	binary.BigEndian.PutUint32(msg, 0x80000000|uint32(4*len(body))) // last fragment
	for i, v := range body {
		binary.BigEndian.PutUint32(msg[4+4*i:], v)
	}
	if _, err := conn.Write(msg); err != nil {
		return false
	}
	// fragment header, xid, REPLY, MSG_ACCEPTED, verf flavor, verf len, SUCCESS
	reply := make([]byte, 4*7)
	if _, err := io.ReadFull(conn, reply); err != nil {
		return false
	}
	word := func(i int) uint32 { return binary.BigEndian.Uint32(reply[4*i:]) }
	return word(1) == xid && word(2) == 1 && word(3) == 0 && word(6) == 0
}
