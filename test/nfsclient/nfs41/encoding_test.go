package nfs41

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"
)

func TestEncPadding(t *testing.T) {
	var e enc
	e.str("abcde")
	e.u64(0x0102030405060708)
	e.bool(true)
	want, _ := hex.DecodeString("00000005" + "6162636465000000" + "0102030405060708" + "00000001")
	if !bytes.Equal(e.b, want) {
		t.Fatalf("encoded %x, want %x", e.b, want)
	}
	d := &dec{b: e.b}
	if s, v, b := d.str(16), d.u64(), d.bool(); s != "abcde" || v != 0x0102030405060708 || !b || d.err != nil || len(d.b) != 0 {
		t.Fatalf("decoded %q %x %v, err %v, %d left", s, v, b, d.err, len(d.b))
	}
}

func TestDecShortAndOversized(t *testing.T) {
	d := &dec{b: []byte{0, 0, 0, 9, 'a'}}
	if d.opaque(16); !errors.Is(d.err, errShort) {
		t.Errorf("truncated opaque: %v", d.err)
	}
	d = &dec{b: []byte{0, 0, 1, 0}}
	if d.opaque(16); d.err == nil {
		t.Error("an opaque longer than its limit was accepted")
	}
	if d.u32(); d.err == nil {
		t.Error("the first error did not stick")
	}
}

// TestEncodeCompound checks COMPOUND4args against the bytes RFC 8881
// defines for SEQUENCE + PUTROOTFH + LOOKUP "a" + GETFH.
func TestEncodeCompound(t *testing.T) {
	sid := [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	got := encodeCompound([]op{
		{num: opSequence, args: func(e *enc) { e.fixed(sid[:]); e.u32(7); e.u32(0); e.u32(0); e.bool(false) }},
		{num: opPutRootFH},
		{num: opLookup, args: func(e *enc) { e.str("a") }},
		{num: opGetFH},
	})
	want, _ := hex.DecodeString("00000000" + "00000001" + "00000004" + // tag "", minor 1, 4 ops
		"00000035" + "0102030405060708090a0b0c0d0e0f10" + "00000007" + "00000000" + "00000000" + "00000000" +
		"00000018" + // PUTROOTFH
		"0000000f" + "00000001" + "61000000" + // LOOKUP "a"
		"0000000a") // GETFH
	if !bytes.Equal(got, want) {
		t.Fatalf("COMPOUND4args\n got %x\nwant %x", got, want)
	}
}

func TestDecodeCompoundStopsAtFailure(t *testing.T) {
	var e enc
	e.u32(uint32(ErrStale)) // compound status
	e.str("")
	e.u32(2)
	e.u32(opPutFH)
	e.u32(0)
	e.u32(opGetAttr)
	e.u32(uint32(ErrStale))
	ok, err := decodeCompound(e.b, []op{{num: opPutFH}, {num: opGetAttr}, {num: opGetFH}})
	if !ok {
		t.Error("the first operation succeeded but was not reported so")
	}
	var oe *OpError
	if !errors.As(err, &oe) || oe.Op != "GETATTR" || !errors.Is(err, ErrStale) {
		t.Fatalf("err = %v, want GETATTR failing with NFS4ERR_STALE", err)
	}
	if s, ok := StatusOf(err); !ok || s != ErrStale || s.Error() != "NFS4ERR_STALE" {
		t.Errorf("StatusOf = %v %v", s, ok)
	}
	if _, ok := StatusOf(errShort); ok {
		t.Error("a decoding error has an NFS4 status")
	}
	if Status(99999).Error() != "NFS4ERR 99999" {
		t.Errorf("unnamed status: %s", Status(99999))
	}
}

func TestDecodeOpenResult(t *testing.T) {
	var e enc
	e.u32(1)
	e.fixed(bytes.Repeat([]byte{0xab}, 12))
	e.bool(true)
	e.u64(1)
	e.u64(2)
	e.u32(4) // rflags: OPEN4_RESULT_LOCKTYPE_POSIX
	e.u32(0) // attrset
	e.u32(delegateNoneExt)
	e.u32(wnd4Contention)
	e.bool(false)
	var sid StateID
	d := &dec{b: e.b}
	decodeOpenResult(d, &sid)
	if d.err != nil || len(d.b) != 0 || sid.Seqid != 1 || sid.Other[11] != 0xab {
		t.Fatalf("decoded %+v, err %v, %d bytes left", sid, d.err, len(d.b))
	}
}

func TestAuthSysCred(t *testing.T) {
	cred := authSysCred("m", 999, 998)
	d := &dec{b: cred}
	if flavor := d.u32(); flavor != authSys {
		t.Fatalf("flavor %d", flavor)
	}
	body := &dec{b: d.opaque(400)}
	body.u32() // stamp
	if m, uid, gid, n := body.str(255), body.u32(), body.u32(), body.u32(); m != "m" || uid != 999 || gid != 998 || n != 0 || body.err != nil {
		t.Fatalf("AUTH_SYS body: %q %d %d %d %v", m, uid, gid, n, body.err)
	}
}
