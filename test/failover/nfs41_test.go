package failover

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/nfs-provisioner/nfs-provisioner/test/framework"
	"github.com/nfs-provisioner/nfs-provisioner/test/nfsclient/nfs41"
)

// TestFailoverNFSv41Reclaim: an NFSv4.1 client holds an open file on a
// CephFS volume through the Service, with an acknowledged FILE_SYNC write,
// when the active replica is killed (-9, the whole process tree). Once the
// passive serves, the client's old session is unknown (BADSESSION), it sets
// up a new client ID and session with the same owner, reclaims its open
// with OPEN CLAIM_PREVIOUS on the same file handle during the grace period,
// sends RECLAIM_COMPLETE, writes with the reclaimed stateid and reads
// everything back. No operation on the old handle returns NFS4ERR_STALE.
func TestFailoverNFSv41Reclaim(t *testing.T) {
	p := newPair(t)
	pv, _ := p.volumeWith(t, []byte("written over NFSv3 before the kill\n"))
	addr := net.JoinHostPort(serviceHost, strconv.Itoa(p.nfsPort))
	ctx := t.Context()
	c, err := nfs41.Dial(ctx, addr, "nfs41-failover-"+p.ns, nfs41.WithAuthSys(999, 999))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	scope, owner := c.ServerScope, c.ServerOwner
	if err := c.ReclaimComplete(ctx); err != nil {
		t.Fatal(err)
	}
	dir, err := c.LookupPath(ctx, pv.Spec.NFS.Path)
	if err != nil {
		t.Fatal(err)
	}
	var f *nfs41.File
	// The active may still be in the grace period of its own start.
	framework.Eventually(t, time.Minute, "OPEN over NFSv4.1 past the first grace period", func() (bool, error) {
		f, err = c.Open(ctx, dir, "held", true)
		if errors.Is(err, nfs41.ErrGrace) {
			return false, nil
		}
		return err == nil, err
	})
	first := bytes.Repeat([]byte("acknowledged FILE_SYNC before the kill\n"), 100)
	if err := c.Write(ctx, f, 0, first); err != nil {
		t.Fatal(err)
	}

	killed, err := framework.SignalTree(p.replicas[0].proc.PID(), syscall.SIGKILL)
	t0 := time.Now()
	if err != nil {
		t.Fatal(err)
	}
	// Wall-clock times, to set beside the replicas' logs.
	t.Logf("killed the active replica's processes %v at %s, holding an open of %x", killed, t0.Format("15:04:05.000"), f.FH)

	// As a client does: a new connection, and the old session on it.
	var oldSession error
	tAnswer := untilRead(t, "an NFSv4.1 answer from the new active", 90*time.Second, p.viaNew(func() error {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := c.Reconnect(cctx); err != nil {
			return err
		}
		_, err := c.GetAttrSize(cctx, f.FH)
		if err == nil {
			t.Fatal("the session of the killed server still works")
		}
		if s, ok := nfs41.StatusOf(err); !ok || s == nfs41.ErrDelay {
			return err
		}
		oldSession = err
		return nil
	}))
	t.Logf("the old session through the new active at %s, %s after the kill: %v", tAnswer.Format("15:04:05.000"), tAnswer.Sub(t0).Round(time.Millisecond), oldSession)
	if errors.Is(oldSession, nfs41.ErrStale) {
		t.Fatalf("NFS4ERR_STALE for the held handle: %v", oldSession)
	}
	if !errors.Is(oldSession, nfs41.ErrBadSession) {
		t.Fatalf("the old session: %v, want NFS4ERR_BADSESSION", oldSession)
	}

	if err := c.Redial(ctx); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(c.ServerScope, scope) || !bytes.Equal(c.ServerOwner, owner) {
		t.Fatalf("server scope/owner %q/%q after the takeover, %q/%q before: a client may not reclaim",
			c.ServerScope, c.ServerOwner, scope, owner)
	}
	// The new server is in its grace period: a new client's non-reclaim
	// OPEN waits (NFS4ERR_GRACE), while the held open is reclaimed.
	other, err := nfs41.Dial(ctx, addr, "nfs41-failover-other-"+p.ns, nfs41.WithAuthSys(999, 999))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := other.ReclaimComplete(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Open(ctx, dir, "new-during-grace", true); !errors.Is(err, nfs41.ErrGrace) {
		t.Errorf("a new client's OPEN %s after the kill: %v, want NFS4ERR_GRACE", time.Since(t0).Round(time.Millisecond), err)
	}
	reclaimed, err := c.ReclaimOpen(ctx, f.FH)
	if err != nil {
		t.Fatalf("OPEN CLAIM_PREVIOUS %s after the kill, %s after the first answer: %v",
			time.Since(t0).Round(time.Millisecond), time.Since(tAnswer).Round(time.Millisecond), err)
	}
	if err := c.ReclaimComplete(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := c.Read(ctx, reclaimed, 0, 64<<10)
	tRead := time.Now()
	if err != nil {
		t.Fatalf("READ with the reclaimed stateid: %v", err)
	}
	t.Logf("FIGURE takeover (kill -9 of the active to the first successful NFSv4.1 READ, after reclaim): %s", tRead.Sub(t0).Round(time.Millisecond))
	if !bytes.Equal(got, first) {
		t.Fatalf("read %d bytes after the takeover, want the %d acknowledged", len(got), len(first))
	}
	second := []byte("written with the reclaimed stateid\n")
	if err := c.Write(ctx, reclaimed, uint64(len(first)), second); err != nil {
		t.Fatalf("WRITE with the reclaimed stateid: %v", err)
	}
	want := append(append([]byte(nil), first...), second...)
	if size, err := c.GetAttrSize(ctx, f.FH); err != nil || size != uint64(len(want)) {
		t.Fatalf("GETATTR of the held handle: size %d %v, want %d", size, err, len(want))
	}
	if got, err := c.Read(ctx, reclaimed, 0, 64<<10); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read back %d bytes %v, want %d", len(got), err, len(want))
	}
	if fh, err := c.LookupPath(ctx, pv.Spec.NFS.Path+"/held"); err != nil || !bytes.Equal(fh, f.FH) {
		t.Fatalf("LOOKUP after the takeover: %x %v, want the held handle %x", fh, err, f.FH)
	}
	// Every client the old server knew has reclaimed: the grace period
	// may end early, and new opens go through.
	framework.Eventually(t, time.Minute, "a new OPEN after the grace period", func() (bool, error) {
		nf, err := other.Open(ctx, dir, "new-after-grace", true)
		if errors.Is(err, nfs41.ErrGrace) {
			return false, nil
		}
		if err == nil {
			err = other.CloseFile(ctx, nf)
		}
		return err == nil, err
	})
	t.Logf("FIGURE new NFSv4.1 opens accepted at %s, %s after the kill, %s after the first answer of the new active",
		time.Now().Format("15:04:05.000"), time.Since(t0).Round(time.Millisecond), time.Since(tAnswer).Round(time.Millisecond))
	if err := c.CloseFile(ctx, reclaimed); err != nil {
		t.Fatal(err)
	}
	checkAcked(t, p, pv, map[string][]byte{"held": want})
}
