package nfs41

import (
	"fmt"
)

// Operation numbers (RFC 8881 section 16.2.1).
const (
	opClose           = 4
	opGetAttr         = 9
	opGetFH           = 10
	opLookup          = 15
	opOpen            = 18
	opPutFH           = 22
	opPutRootFH       = 24
	opRead            = 25
	opWrite           = 38
	opExchangeID      = 42
	opCreateSession   = 43
	opDestroySession  = 44
	opSequence        = 53
	opReclaimComplete = 58
)

var opNames = map[uint32]string{
	opClose: "CLOSE", opGetAttr: "GETATTR", opGetFH: "GETFH", opLookup: "LOOKUP", opOpen: "OPEN",
	opPutFH: "PUTFH", opPutRootFH: "PUTROOTFH", opRead: "READ", opWrite: "WRITE", opExchangeID: "EXCHANGE_ID",
	opCreateSession: "CREATE_SESSION", opDestroySession: "DESTROY_SESSION", opSequence: "SEQUENCE",
	opReclaimComplete: "RECLAIM_COMPLETE",
}

// op is one operation of a COMPOUND: its arguments, and how to read its
// result after an NFS4_OK status (nil for results that are only a status).
type op struct {
	num  uint32
	args func(*enc)
	res  func(*dec)
}

// Limits of what a reply may hold, against garbage.
const (
	maxFH     = 128 // NFS4_FHSIZE
	maxOpaque = 1024
	maxData   = maxRecord
)

// FH is an NFSv4 file handle.
type FH []byte

// StateID is a stateid4.
type StateID struct {
	Seqid uint32
	Other [12]byte
}

func (s StateID) encode(e *enc) {
	e.u32(s.Seqid)
	e.fixed(s.Other[:])
}

func decodeStateID(d *dec) StateID {
	var s StateID
	s.Seqid = d.u32()
	copy(s.Other[:], d.fixed(12))
	return s
}

// encodeCompound is COMPOUND4args with minor version 1.
func encodeCompound(ops []op) []byte {
	var e enc
	e.str("") // tag
	e.u32(1)  // minorversion
	e.u32(uint32(len(ops)))
	for _, o := range ops {
		e.u32(o.num)
		if o.args != nil {
			o.args(&e)
		}
	}
	return e.b
}

// decodeCompound reads COMPOUND4res into ops' result readers. It returns
// an *OpError for the first operation that failed, and whether the first
// operation succeeded (for SEQUENCE: the slot's sequence advanced).
func decodeCompound(body []byte, ops []op) (firstOK bool, err error) {
	d := &dec{b: body}
	status := d.u32()
	d.opaque(maxOpaque) // tag
	n := d.u32()
	if d.err != nil {
		return false, d.err
	}
	if n > uint32(len(ops)) {
		return false, fmt.Errorf("nfs41: %d results for %d operations", n, len(ops))
	}
	for i := 0; i < int(n); i++ {
		num, st := d.u32(), d.u32()
		if d.err != nil {
			return firstOK, d.err
		}
		if num != ops[i].num {
			return firstOK, fmt.Errorf("nfs41: result %d is of operation %d, want %d", i, num, ops[i].num)
		}
		if st != 0 {
			return firstOK, &OpError{Op: opNames[num], Status: Status(st)}
		}
		if ops[i].res != nil {
			ops[i].res(d)
		}
		if d.err != nil {
			return firstOK, fmt.Errorf("nfs41: decoding the result of %s: %w", opNames[num], d.err)
		}
		if i == 0 {
			firstOK = true
		}
	}
	if status != 0 {
		// The server failed before any result (e.g. NFS4ERR_MINOR_VERS_MISMATCH).
		return firstOK, &OpError{Op: "COMPOUND", Status: Status(status)}
	}
	if int(n) != len(ops) {
		return firstOK, fmt.Errorf("nfs41: %d results for %d operations, and NFS4_OK", n, len(ops))
	}
	return firstOK, nil
}
