package nfs41

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"sync"
)

// Protocol constants (RFC 8881).
const (
	exchgidFlagUseNonPNFS = 0x00010000
	sp4None               = 0
	sp4MachCred           = 1
	cbProgram             = 0x40000000
	shareAccessBoth       = 3
	shareDenyNone         = 0
	open4NoCreate         = 0
	open4Create           = 1
	createUnchecked4      = 0
	claimNull             = 0
	claimPrevious         = 1
	delegateNone          = 0
	delegateRead          = 1
	delegateWrite         = 2
	delegateNoneExt       = 3
	wnd4Contention        = 7
	wnd4Resource          = 8
	limitSize             = 1
	limitBlocks           = 2
	fileSync4             = 2
	fattr4Size            = 4
	fattr4Mode            = 33
	openResultConfirm     = 2
)

// Client is one NFSv4.1 client (one client ID, one session, one slot)
// talking to one server address. Its calls are serialized.
type Client struct {
	addr     string
	owner    string
	verifier [8]byte
	cred     []byte

	mu        sync.Mutex
	conn      *conn
	clientID  uint64
	sessionID [16]byte
	slotSeq   uint32
	maxReq    uint32
	maxResp   uint32
	// ServerOwner and ServerScope are what EXCHANGE_ID returned: a client
	// reclaims only from a server with the same ones.
	ServerOwner []byte
	ServerScope []byte
}

// Option changes how Dial sets up a Client.
type Option func(*Client)

// WithAuthSys sends AUTH_SYS with uid and gid instead of 0 and 0.
func WithAuthSys(uid, gid uint32) Option {
	return func(c *Client) { c.cred = authSysCred("nfs41-test", uid, gid) }
}

// Dial connects to addr (host:port), identifies as owner (EXCHANGE_ID) and
// creates a session. A client that dials again with the same owner is the
// same client to the server (same co_ownerid and co_verifier), so it may
// reclaim what it held. A new client must send ReclaimComplete before it
// opens files.
func Dial(ctx context.Context, addr, owner string, opts ...Option) (*Client, error) {
	if owner == "" {
		return nil, errors.New("nfs41: empty client owner")
	}
	c := &Client{addr: addr, owner: owner, cred: authSysCred("nfs41-test", 0, 0)}
	// The verifier names the client's incarnation; it is derived from the
	// owner so that a test's "restarted" client process is the same one.
	h := fnv.New64a()
	h.Write([]byte(owner))
	copy(c.verifier[:], h.Sum(nil))
	for _, o := range opts {
		o(c)
	}
	if err := c.Redial(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// Reconnect replaces the connection and keeps the session: what a client
// does first when its connection breaks. The next call tells whether the
// server still knows the session (NFS4ERR_BADSESSION if it restarted).
func (c *Client) Reconnect(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reconnectLocked(ctx)
}

func (c *Client) reconnectLocked(ctx context.Context) error {
	if c.conn != nil {
		_ = c.conn.close()
		c.conn = nil
	}
	cn, err := dialConn(ctx, c.addr, c.cred)
	if err != nil {
		return fmt.Errorf("nfs41: dial %s: %w", c.addr, err)
	}
	c.conn = cn
	return nil
}

// Redial connects again and sets up a new client ID and session with the
// same owner: what a client does once its server restarted
// (NFS4ERR_BADSESSION, NFS4ERR_STALE_CLIENTID). Its opens are then to be
// reclaimed with ReclaimOpen.
func (c *Client) Redial(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.reconnectLocked(ctx); err != nil {
		return err
	}
	if err := c.exchangeID(ctx); err != nil {
		return err
	}
	return c.createSession(ctx)
}

// ClientID is the client ID of the current session.
func (c *Client) ClientID() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.clientID
}

// compound sends ops without SEQUENCE (EXCHANGE_ID, CREATE_SESSION and
// DESTROY_SESSION stand alone).
func (c *Client) compound(ctx context.Context, ops ...op) error {
	if c.conn == nil {
		return errors.New("nfs41: client closed")
	}
	body, err := c.conn.call(ctx, encodeCompound(ops))
	if err != nil {
		return err
	}
	_, err = decodeCompound(body, ops)
	return err
}

// seqCompound sends SEQUENCE (slot 0) and then ops.
func (c *Client) seqCompound(ctx context.Context, ops ...op) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		return errors.New("nfs41: client closed")
	}
	seq := c.slotSeq + 1
	all := append([]op{{num: opSequence, args: func(e *enc) {
		e.fixed(c.sessionID[:])
		e.u32(seq)
		e.u32(0)      // slot
		e.u32(0)      // highest slot
		e.bool(false) // cachethis
	}, res: func(d *dec) {
		d.fixed(16) // session
		d.u32()     // sequence
		d.u32()     // slot
		d.u32()     // highest slot
		d.u32()     // target highest slot
		d.u32()     // status flags
	}}}, ops...)
	body, err := c.conn.call(ctx, encodeCompound(all))
	if err != nil {
		return err
	}
	ok, err := decodeCompound(body, all)
	if ok {
		c.slotSeq = seq
	}
	return err
}

func (c *Client) exchangeID(ctx context.Context) error {
	var clientID uint64
	var seq uint32
	var owner, scope []byte
	err := c.compound(ctx, op{num: opExchangeID, args: func(e *enc) {
		e.fixed(c.verifier[:])
		e.str(c.owner)
		e.u32(exchgidFlagUseNonPNFS)
		e.u32(sp4None)
		e.u32(0) // no implementation id
	}, res: func(d *dec) {
		clientID = d.u64()
		seq = d.u32()
		d.u32() // flags
		switch how := d.u32(); how {
		case sp4None:
		case sp4MachCred:
			d.bitmap()
			d.bitmap()
		default:
			if d.err == nil {
				d.err = fmt.Errorf("state protection %d not asked for", how)
			}
		}
		d.u64() // so_minor_id
		owner = d.opaque(maxOpaque)
		scope = d.opaque(maxOpaque)
		for n := d.u32(); n > 0 && d.err == nil; n-- { // server implementation id
			d.opaque(maxOpaque)
			d.opaque(maxOpaque)
			d.u64()
			d.u32()
		}
	}})
	if err != nil {
		return err
	}
	c.clientID, c.ServerOwner, c.ServerScope = clientID, owner, scope
	c.slotSeq = seq // CREATE_SESSION's csa_sequence; reset after it
	return nil
}

func encodeChannelAttrs(e *enc, maxReq, maxResp, maxCached, maxOps, maxReqs uint32) {
	e.u32(0) // header pad
	e.u32(maxReq)
	e.u32(maxResp)
	e.u32(maxCached)
	e.u32(maxOps)
	e.u32(maxReqs)
	e.u32(0) // no RDMA
}

func decodeChannelAttrs(d *dec) (maxReq, maxResp uint32) {
	d.u32()
	maxReq, maxResp = d.u32(), d.u32()
	d.u32()
	d.u32()
	d.u32()
	for n := d.u32(); n > 0 && d.err == nil; n-- {
		d.u32()
	}
	return maxReq, maxResp
}

func (c *Client) createSession(ctx context.Context) error {
	var sid []byte
	var maxReq, maxResp uint32
	const want = 1<<20 + 4096
	err := c.compound(ctx, op{num: opCreateSession, args: func(e *enc) {
		e.u64(c.clientID)
		e.u32(c.slotSeq)
		e.u32(0) // no back channel on this connection
		encodeChannelAttrs(e, want, want, 4096, 16, 1)
		encodeChannelAttrs(e, 4096, 4096, 0, 2, 1)
		e.u32(cbProgram)
		e.u32(1) // one callback security flavor: AUTH_NONE
		e.u32(authNone)
	}, res: func(d *dec) {
		sid = d.fixed(16)
		d.u32() // sequence
		d.u32() // flags
		maxReq, maxResp = decodeChannelAttrs(d)
		decodeChannelAttrs(d)
	}})
	if err != nil {
		return err
	}
	copy(c.sessionID[:], sid)
	c.slotSeq = 0
	c.maxReq, c.maxResp = maxReq, maxResp
	return nil
}

// ioSize is how many data bytes one READ or WRITE carries.
func (c *Client) ioSize(max uint32) int {
	n := 64 << 10
	if max > 1024 && int(max)-1024 < n {
		n = int(max) - 1024
	}
	return n
}

// ReclaimComplete tells the server the client has reclaimed everything
// (or, for a new client, that it has nothing to reclaim).
func (c *Client) ReclaimComplete(ctx context.Context) error {
	return c.seqCompound(ctx, op{num: opReclaimComplete, args: func(e *enc) { e.bool(false) }})
}

// LookupPath returns the handle of path, from the server's root
// (PUTROOTFH, then LOOKUP of each component).
func (c *Client) LookupPath(ctx context.Context, path string) (FH, error) {
	ops := []op{{num: opPutRootFH}}
	for _, name := range strings.Split(path, "/") {
		if name == "" {
			continue
		}
		ops = append(ops, op{num: opLookup, args: func(e *enc) { e.str(name) }})
	}
	var fh FH
	ops = append(ops, op{num: opGetFH, res: func(d *dec) { fh = d.opaque(maxFH) }})
	if err := c.seqCompound(ctx, ops...); err != nil {
		return nil, fmt.Errorf("lookup %s: %w", path, err)
	}
	return fh, nil
}

func putFH(fh FH) op { return op{num: opPutFH, args: func(e *enc) { e.opaque(fh) }} }

// GetAttrSize returns the size attribute of fh.
func (c *Client) GetAttrSize(ctx context.Context, fh FH) (uint64, error) {
	var size uint64
	var got bool
	err := c.seqCompound(ctx, putFH(fh), op{num: opGetAttr, args: func(e *enc) {
		e.u32(1)
		e.u32(1 << fattr4Size)
	}, res: func(d *dec) {
		mask := d.bitmap()
		vals := d.opaque(maxOpaque)
		if len(mask) > 0 && mask[0]&(1<<fattr4Size) != 0 {
			vd := &dec{b: vals}
			size, got = vd.u64(), vd.err == nil
		}
	}})
	if err != nil {
		return 0, fmt.Errorf("getattr: %w", err)
	}
	if !got {
		return 0, errors.New("nfs41: GETATTR returned no size")
	}
	return size, nil
}

// File is an open file: its handle and open stateid.
type File struct {
	FH      FH
	StateID StateID
}

// openOwner is the one open-owner of a client.
func (c *Client) openOwner(e *enc) {
	e.u64(c.clientID)
	e.str("open-owner:" + c.owner)
}

// decodeOpenResult reads OPEN4resok and returns its stateid.
func decodeOpenResult(d *dec, sid *StateID) {
	*sid = decodeStateID(d)
	d.bool() // change_info4
	d.u64()
	d.u64()
	rflags := d.u32()
	d.bitmap() // attrset
	switch t := d.u32(); t {
	case delegateNone:
	case delegateRead, delegateWrite:
		decodeStateID(d)
		d.bool() // recall
		if t == delegateWrite {
			switch d.u32() {
			case limitSize:
				d.u64()
			case limitBlocks:
				d.u32()
				d.u32()
			}
		}
		d.u32() // nfsace4
		d.u32()
		d.u32()
		d.opaque(maxOpaque)
	case delegateNoneExt:
		switch d.u32() {
		case wnd4Contention, wnd4Resource:
			d.bool()
		}
	default:
		if d.err == nil {
			d.err = fmt.Errorf("delegation type %d", t)
		}
	}
	if d.err == nil && rflags&openResultConfirm != 0 {
		d.err = errors.New("OPEN4_RESULT_CONFIRM is NFSv4.0 only")
	}
}

// Open opens name in directory dir for reading and writing (CLAIM_NULL),
// creating it (mode 0644) if create is set and it does not exist.
func (c *Client) Open(ctx context.Context, dir FH, name string, create bool) (*File, error) {
	f := &File{}
	err := c.seqCompound(ctx, putFH(dir), op{num: opOpen, args: func(e *enc) {
		e.u32(0) // seqid, unused in 4.1
		e.u32(shareAccessBoth)
		e.u32(shareDenyNone)
		c.openOwner(e)
		if create {
			e.u32(open4Create)
			e.u32(createUnchecked4)
			e.u32(2) // bitmap: mode
			e.u32(0)
			e.u32(1 << (fattr4Mode - 32))
			e.u32(4) // attr values: the mode
			e.u32(0o644)
		} else {
			e.u32(open4NoCreate)
		}
		e.u32(claimNull)
		e.str(name)
	}, res: func(d *dec) { decodeOpenResult(d, &f.StateID) }},
		op{num: opGetFH, res: func(d *dec) { f.FH = d.opaque(maxFH) }})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", name, err)
	}
	return f, nil
}

// ReclaimOpen reclaims, during the server's grace period, an open of fh
// the client held before the server restarted (OPEN CLAIM_PREVIOUS with
// fh as the current filehandle), and returns it with its new stateid.
func (c *Client) ReclaimOpen(ctx context.Context, fh FH) (*File, error) {
	f := &File{FH: fh}
	err := c.seqCompound(ctx, putFH(fh), op{num: opOpen, args: func(e *enc) {
		e.u32(0)
		e.u32(shareAccessBoth)
		e.u32(shareDenyNone)
		c.openOwner(e)
		e.u32(open4NoCreate)
		e.u32(claimPrevious)
		e.u32(delegateNone)
	}, res: func(d *dec) { decodeOpenResult(d, &f.StateID) }})
	if err != nil {
		return nil, fmt.Errorf("reclaim open: %w", err)
	}
	return f, nil
}

// Write writes data at off with stable FILE_SYNC4 writes: once it returns
// nil, the server has the data on stable storage.
func (c *Client) Write(ctx context.Context, f *File, off uint64, data []byte) error {
	chunk := c.ioSize(c.maxReq)
	for len(data) > 0 {
		p := data[:min(chunk, len(data))]
		var count, committed uint32
		err := c.seqCompound(ctx, putFH(f.FH), op{num: opWrite, args: func(e *enc) {
			f.StateID.encode(e)
			e.u64(off)
			e.u32(fileSync4)
			e.opaque(p)
		}, res: func(d *dec) {
			count, committed = d.u32(), d.u32()
			d.fixed(8) // write verifier
		}})
		if err != nil {
			return fmt.Errorf("write at %d: %w", off, err)
		}
		if committed != fileSync4 {
			return fmt.Errorf("nfs41: write at %d committed as %d, not FILE_SYNC4", off, committed)
		}
		if count == 0 || int(count) > len(p) {
			return fmt.Errorf("nfs41: write at %d of %d bytes wrote %d", off, len(p), count)
		}
		data = data[count:]
		off += uint64(count)
	}
	return nil
}

// Read reads up to n bytes at off with f's open stateid; fewer at the end
// of the file.
func (c *Client) Read(ctx context.Context, f *File, off uint64, n int) ([]byte, error) {
	return c.read(ctx, f.FH, f.StateID, off, n)
}

// ReadFH reads like Read, with the anonymous stateid (no open).
func (c *Client) ReadFH(ctx context.Context, fh FH, off uint64, n int) ([]byte, error) {
	return c.read(ctx, fh, StateID{}, off, n)
}

func (c *Client) read(ctx context.Context, fh FH, sid StateID, off uint64, n int) ([]byte, error) {
	chunk := c.ioSize(c.maxResp)
	var out []byte
	for len(out) < n {
		want := min(chunk, n-len(out))
		var eof bool
		var data []byte
		err := c.seqCompound(ctx, putFH(fh), op{num: opRead, args: func(e *enc) {
			sid.encode(e)
			e.u64(off)
			e.u32(uint32(want))
		}, res: func(d *dec) {
			eof = d.bool()
			data = d.opaque(maxData)
		}})
		if err != nil {
			return out, fmt.Errorf("read at %d: %w", off, err)
		}
		out = append(out, data...)
		off += uint64(len(data))
		if eof || len(data) == 0 {
			break
		}
	}
	return out, nil
}

// CloseFile closes f's open.
func (c *Client) CloseFile(ctx context.Context, f *File) error {
	err := c.seqCompound(ctx, putFH(f.FH), op{num: opClose, args: func(e *enc) {
		e.u32(0)
		f.StateID.encode(e)
	}, res: func(d *dec) { decodeStateID(d) }})
	if err != nil {
		return fmt.Errorf("close: %w", err)
	}
	return nil
}

// Close destroys the session (best effort: the server may be gone) and
// closes the connection. The client ID and its opens stay until their
// lease expires, as when a client crashes.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), defaultCloseTimeout)
	defer cancel()
	_ = c.compound(ctx, op{num: opDestroySession, args: func(e *enc) { e.fixed(c.sessionID[:]) }})
	err := c.conn.close()
	c.conn = nil
	return err
}
