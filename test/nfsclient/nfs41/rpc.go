package nfs41

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// ONC RPC (RFC 5531) constants this client uses.
const (
	rpcCall      = 0
	rpcReply     = 1
	rpcVersion   = 2
	msgAccepted  = 0
	acceptOK     = 0
	authNone     = 0
	authSys      = 1
	nfsProgram   = 100003
	nfsVersion   = 4
	procCompound = 1
	lastFragment = 1 << 31
	maxRecord    = 4 << 20
)

// conn is one TCP connection carrying one RPC at a time: a test client
// needs no pipelining, and one at a time keeps replies in order.
type conn struct {
	mu   sync.Mutex
	c    net.Conn
	xid  uint32
	cred []byte // the whole opaque_auth of the credential
}

// authSysCred is an AUTH_SYS credential (RFC 5531 appendix A) with no
// supplementary groups.
func authSysCred(machine string, uid, gid uint32) []byte {
	var body enc
	body.u32(uint32(time.Now().Unix()))
	body.str(machine)
	body.u32(uid)
	body.u32(gid)
	body.u32(0)
	var e enc
	e.u32(authSys)
	e.opaque(body.b)
	return e.b
}

func dialConn(ctx context.Context, addr string, cred []byte) (*conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return &conn{c: c, xid: uint32(time.Now().UnixNano()), cred: cred}, nil
}

func (c *conn) close() error { return c.c.Close() }

// call sends one COMPOUND (args is its XDR) and returns the reply's
// results, after the RPC header.
func (c *conn) call(ctx context.Context, args []byte) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.xid++
	xid := c.xid
	var e enc
	e.u32(0) // record mark, set below
	e.u32(xid)
	e.u32(rpcCall)
	e.u32(rpcVersion)
	e.u32(nfsProgram)
	e.u32(nfsVersion)
	e.u32(procCompound)
	e.b = append(e.b, c.cred...)
	e.u32(authNone) // verifier
	e.u32(0)
	e.b = append(e.b, args...)
	binary.BigEndian.PutUint32(e.b, lastFragment|uint32(len(e.b)-4))

	// A cancelled context unblocks the I/O at once.
	stop := context.AfterFunc(ctx, func() { _ = c.c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.c.SetDeadline(dl)
	} else {
		_ = c.c.SetDeadline(time.Time{})
	}
	if _, err := c.c.Write(e.b); err != nil {
		return nil, c.ctxErr(ctx, fmt.Errorf("nfs41: sending the call: %w", err))
	}
	for {
		rec, err := c.readRecord()
		if err != nil {
			return nil, c.ctxErr(ctx, fmt.Errorf("nfs41: reading the reply: %w", err))
		}
		d := &dec{b: rec}
		if d.u32() != xid {
			continue // a late reply to an earlier call that timed out
		}
		return parseReply(d)
	}
}

func (c *conn) ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w (%w)", ctx.Err(), err)
	}
	return err
}

// readRecord reads one record: its fragments, joined.
func (c *conn) readRecord() ([]byte, error) {
	var rec []byte
	for {
		var hdr [4]byte
		if _, err := io.ReadFull(c.c, hdr[:]); err != nil {
			return nil, err
		}
		h := binary.BigEndian.Uint32(hdr[:])
		n := int(h &^ lastFragment)
		if len(rec)+n > maxRecord {
			return nil, fmt.Errorf("record of more than %d bytes", maxRecord)
		}
		frag := make([]byte, n)
		if _, err := io.ReadFull(c.c, frag); err != nil {
			return nil, err
		}
		rec = append(rec, frag...)
		if h&lastFragment != 0 {
			return rec, nil
		}
	}
}

// parseReply checks an RPC reply header (after the xid) and returns the
// procedure's results.
func parseReply(d *dec) ([]byte, error) {
	if t := d.u32(); d.err == nil && t != rpcReply {
		return nil, fmt.Errorf("nfs41: RPC message type %d, want a reply", t)
	}
	if st := d.u32(); d.err == nil && st != msgAccepted {
		return nil, fmt.Errorf("nfs41: RPC call denied (reject_stat %d, detail %d)", d.u32(), d.u32())
	}
	d.u32()       // verifier flavor
	d.opaque(400) // verifier body
	if st := d.u32(); d.err == nil && st != acceptOK {
		return nil, fmt.Errorf("nfs41: RPC call not accepted: accept_stat %d", st)
	}
	if d.err != nil {
		return nil, d.err
	}
	return d.b, nil
}

// defaultCloseTimeout bounds the DESTROY_SESSION of Close.
const defaultCloseTimeout = 5 * time.Second
