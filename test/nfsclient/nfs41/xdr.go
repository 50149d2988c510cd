package nfs41

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// enc appends XDR (RFC 4506) items to a buffer.
type enc struct{ b []byte }

func (e *enc) u32(v uint32) { e.b = binary.BigEndian.AppendUint32(e.b, v) }
func (e *enc) u64(v uint64) { e.b = binary.BigEndian.AppendUint64(e.b, v) }

func (e *enc) bool(v bool) {
	if v {
		e.u32(1)
	} else {
		e.u32(0)
	}
}

// fixed appends fixed-length opaque data, padded to 4 bytes.
func (e *enc) fixed(p []byte) {
	e.b = append(e.b, p...)
	for len(e.b)%4 != 0 {
		e.b = append(e.b, 0)
	}
}

// opaque appends variable-length opaque data: its length, then the bytes.
func (e *enc) opaque(p []byte) {
	e.u32(uint32(len(p)))
	e.fixed(p)
}

func (e *enc) str(s string) { e.opaque([]byte(s)) }

// errShort is a reply shorter than its XDR says.
var errShort = errors.New("nfs41: XDR reply truncated")

// dec reads XDR items; the first error sticks and later reads return zero.
type dec struct {
	b   []byte
	err error
}

func (d *dec) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > len(d.b) {
		d.err = errShort
		return nil
	}
	p := d.b[:n]
	d.b = d.b[n:]
	return p
}

func (d *dec) u32() uint32 {
	p := d.take(4)
	if p == nil {
		return 0
	}
	return binary.BigEndian.Uint32(p)
}

func (d *dec) u64() uint64 {
	p := d.take(8)
	if p == nil {
		return 0
	}
	return binary.BigEndian.Uint64(p)
}

func (d *dec) bool() bool { return d.u32() != 0 }

// fixed reads n bytes of fixed-length opaque data and their padding.
func (d *dec) fixed(n int) []byte {
	p := d.take(n)
	d.take((4 - n%4) % 4)
	if p == nil {
		return nil
	}
	return append([]byte(nil), p...)
}

// opaque reads variable-length opaque data of at most max bytes.
func (d *dec) opaque(max int) []byte {
	n := d.u32()
	if d.err == nil && int64(n) > int64(max) {
		d.err = fmt.Errorf("nfs41: XDR opaque of %d bytes, at most %d allowed", n, max)
		return nil
	}
	return d.fixed(int(n))
}

func (d *dec) str(max int) string { return string(d.opaque(max)) }

// bitmap reads a bitmap4.
func (d *dec) bitmap() []uint32 {
	n := d.u32()
	if d.err == nil && n > 8 {
		d.err = fmt.Errorf("nfs41: bitmap of %d words", n)
		return nil
	}
	m := make([]uint32, n)
	for i := range m {
		m[i] = d.u32()
	}
	return m
}
