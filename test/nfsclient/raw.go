package nfsclient

import (
	"context"
	"fmt"

	"github.com/willscott/go-nfs-client/nfs"
	"github.com/willscott/go-nfs-client/nfs/rpc"
	"github.com/willscott/go-nfs-client/nfs/xdr"
)

// Raw is an NFSv3 mount that sends calls with any file handle the caller
// gives, forged ones included: for tests of what a hostile client reaches.
// Calls return the server's NFS3 status (0 is NFS3_OK) rather than an
// error; err is only for transport and decoding failures.
type Raw struct {
	s *session
	// Root is the export's root file handle, as MOUNT returned it.
	Root []byte
}

// DialRaw mounts t (NFSv3) and returns the raw session.
func DialRaw(ctx context.Context, t Target) (*Raw, error) {
	if t.Version != 3 {
		return nil, fmt.Errorf("nfsclient: Raw speaks NFSv3 only")
	}
	if err := t.validate(); err != nil {
		return nil, err
	}
	s, err := mount(ctx, t)
	if err != nil {
		return nil, err
	}
	return &Raw{s: s, Root: s.root}, nil
}

// Close unmounts.
func (r *Raw) Close() { r.s.close() }

// StatusName names an NFS3 status, e.g. NFS3ERR_STALE.
func StatusName(status uint32) string {
	if status == 0 {
		return "NFS3_OK"
	}
	return nfs.NFS3Error(status).Error()
}

func (r *Raw) header(proc uint32) rpc.Header {
	return rpc.Header{Rpcvers: 2, Prog: nfs.Nfs3Prog, Vers: nfs.Nfs3Vers, Proc: proc, Cred: r.s.auth, Verf: rpc.AuthNull}
}

// call sends args and reads the status; res is read only on NFS3_OK.
func (r *Raw) call(args any, res any) (uint32, error) {
	body, err := r.s.target.Call(args)
	if err != nil {
		return 0, err
	}
	status, err := xdr.ReadUint32(body)
	if err != nil || status != 0 || res == nil {
		return status, err
	}
	return 0, xdr.Read(body, res)
}

// GetAttr sends GETATTR.
func (r *Raw) GetAttr(fh []byte) (uint32, nfs.Fattr, error) {
	type args struct {
		rpc.Header
		FH []byte
	}
	var res struct{ Attr nfs.Fattr }
	status, err := r.call(&args{Header: r.header(nfs.NFSProc3GetAttr), FH: fh}, &res)
	return status, res.Attr, err
}

// Lookup sends LOOKUP of name in directory dir.
func (r *Raw) Lookup(dir []byte, name string) (uint32, []byte, error) {
	type args struct {
		rpc.Header
		What nfs.Diropargs3
	}
	var res struct {
		FH      []byte
		Attr    nfs.PostOpAttr
		DirAttr nfs.PostOpAttr
	}
	status, err := r.call(&args{Header: r.header(nfs.NFSProc3Lookup), What: nfs.Diropargs3{FH: dir, Filename: name}}, &res)
	return status, res.FH, err
}

// ReadDirPlus sends READDIRPLUS for the first 64 KiB of directory dir and
// returns the names in it.
func (r *Raw) ReadDirPlus(dir []byte) (uint32, []string, error) {
	type args struct {
		rpc.Header
		FH         []byte
		Cookie     uint64
		CookieVerf uint64
		DirCount   uint32
		MaxCount   uint32
	}
	body, err := r.s.target.Call(&args{Header: r.header(nfs.NFSProc3ReadDirPlus), FH: dir, DirCount: 8192, MaxCount: 65536})
	if err != nil {
		return 0, nil, err
	}
	status, err := xdr.ReadUint32(body)
	if err != nil || status != 0 {
		return status, nil, err
	}
	var ok struct {
		DirAttrs   nfs.PostOpAttr
		CookieVerf uint64
	}
	if err := xdr.Read(body, &ok); err != nil {
		return 0, nil, err
	}
	var names []string
	for {
		var item struct {
			IsSet bool          `xdr:"union"`
			Entry nfs.EntryPlus `xdr:"unioncase=1"`
		}
		if err := xdr.Read(body, &item); err != nil {
			return 0, names, err
		}
		if !item.IsSet {
			return 0, names, nil
		}
		names = append(names, item.Entry.FileName)
	}
}

// FSStat is what FSSTAT reports of the filesystem behind a handle.
type FSStat struct {
	TotalBytes, FreeBytes, AvailBytes uint64
	TotalFiles, FreeFiles, AvailFiles uint64
}

// FSStat sends FSSTAT for the filesystem of fh.
func (r *Raw) FSStat(fh []byte) (uint32, FSStat, error) {
	type args struct {
		rpc.Header
		FH []byte
	}
	var res struct {
		Attr nfs.PostOpAttr
		FSStat
		Invarsec uint32
	}
	status, err := r.call(&args{Header: r.header(18 /* NFSPROC3_FSSTAT */), FH: fh}, &res)
	return status, res.FSStat, err
}
