package nfsclient

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"syscall"
	"time"

	"github.com/willscott/go-nfs-client/nfs"
	"github.com/willscott/go-nfs-client/nfs/rpc"
	"github.com/willscott/go-nfs-client/nfs/xdr"
)

// session is one NFSv3 mount made over explicit ports.
type session struct {
	mnt    *rpc.Client
	target *nfs.Target
	auth   rpc.Auth
	dir    string
	root   []byte // the export's root file handle
}

// dial retries the random local port the client binds: it picks one and
// fails with EADDRINUSE when that is taken.
func dial(ctx context.Context, host string, port int) (*rpc.Client, error) {
	var last error
	for attempt := 0; attempt < 20; attempt++ {
		c, err := nfs.DialServiceAtPort(host, port)
		if err == nil {
			return c, nil
		}
		last = err
		if !errors.Is(err, syscall.EADDRINUSE) && !strings.Contains(err.Error(), "address already in use") {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Duration(attempt+1) * 5 * time.Millisecond):
		}
	}
	return nil, last
}

// mount sends MOUNT3 MNT itself: the library's Mount would run NFS calls
// over the mount port's connection.
func mount(ctx context.Context, t Target) (*session, error) {
	mnt, err := dial(ctx, t.Host, t.MountPort)
	if err != nil {
		return nil, fmt.Errorf("dial mountd %s:%d: %w", t.Host, t.MountPort, err)
	}
	auth := rpc.NewAuthUnix("nfsclient", t.UID, t.GID).Auth()
	type mntArgs struct {
		rpc.Header
		Dirpath string
	}
	res, err := mnt.Call(&mntArgs{
		Header:  rpc.Header{Rpcvers: 2, Prog: nfs.MountProg, Vers: nfs.MountVers, Proc: nfs.MountProc3MNT, Cred: auth, Verf: rpc.AuthNull},
		Dirpath: t.Pseudo,
	})
	if err != nil {
		mnt.Close()
		return nil, fmt.Errorf("mount %s: %w", t.Pseudo, err)
	}
	status, err := xdr.ReadUint32(res)
	if err != nil {
		mnt.Close()
		return nil, fmt.Errorf("mount %s: %w", t.Pseudo, err)
	}
	if status != nfs.MNT3Ok {
		mnt.Close()
		return nil, fmt.Errorf("mount %s: %w", t.Pseudo, &MountError{Status: status})
	}
	fh, err := xdr.ReadOpaque(res)
	if err != nil {
		mnt.Close()
		return nil, fmt.Errorf("mount %s: %w", t.Pseudo, err)
	}
	nc, err := dial(ctx, t.Host, t.NFSPort)
	if err != nil {
		mnt.Close()
		return nil, fmt.Errorf("dial nfs %s:%d: %w", t.Host, t.NFSPort, err)
	}
	target, err := nfs.NewTargetWithClient(nc, auth, fh, t.Pseudo, time.Second)
	if err != nil {
		nc.Close()
		mnt.Close()
		return nil, fmt.Errorf("nfs %s: %w", t.Pseudo, err)
	}
	return &session{mnt: mnt, target: target, auth: auth, dir: t.Pseudo, root: fh}, nil
}

// MountError is a MOUNT3 status other than OK; 13 is MNT3ERR_ACCES.
type MountError struct{ Status uint32 }

func (e *MountError) Error() string { return fmt.Sprintf("MOUNT3 status %d", e.Status) }

func (s *session) close() {
	type umntArgs struct {
		rpc.Header
		Dirpath string
	}
	s.mnt.Call(&umntArgs{
		Header:  rpc.Header{Rpcvers: 2, Prog: nfs.MountProg, Vers: nfs.MountVers, Proc: nfs.MountProc3UMNT, Cred: s.auth, Verf: rpc.AuthNull},
		Dirpath: s.dir,
	})
	s.target.Close()
	s.mnt.Close()
}

// withSession runs fn on a fresh mount; the go client has no context, so
// ctx only bounds the connection set-up.
func withSession(ctx context.Context, t Target, fn func(*nfs.Target) error) error {
	s, err := mount(ctx, t)
	if err != nil {
		return err
	}
	defer s.close()
	return fn(s.target)
}

func goWriteFile(ctx context.Context, t Target, name string, data []byte) error {
	err := withSession(ctx, t, func(v *nfs.Target) error {
		p := path.Clean("/" + name)
		// OpenFile does not truncate an existing file.
		if _, _, err := v.Lookup(p); err == nil {
			if err := v.Remove(p); err != nil {
				return err
			}
		}
		f, err := v.OpenFile(p, 0o644)
		if err != nil {
			return err
		}
		if _, err := io.Copy(f, bytes.NewReader(data)); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	})
	if err != nil {
		return fmt.Errorf("write %s on %s: %w", name, t, err)
	}
	return nil
}

func goReadFile(ctx context.Context, t Target, name string) ([]byte, error) {
	var out []byte
	err := withSession(ctx, t, func(v *nfs.Target) error {
		f, err := v.Open(path.Clean("/" + name))
		if err != nil {
			return err
		}
		defer f.Close()
		out, err = io.ReadAll(f)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read %s on %s: %w", name, t, err)
	}
	return out, nil
}

func goList(ctx context.Context, t Target, dir string) ([]Entry, error) {
	var out []Entry
	err := withSession(ctx, t, func(v *nfs.Target) error {
		entries, err := v.ReadDirPlus(path.Clean("/" + dir))
		if err != nil {
			return err
		}
		for _, e := range entries {
			if e.FileName == "." || e.FileName == ".." {
				continue
			}
			en := Entry{Name: e.FileName, Mode: e.Mode().String(), Size: e.Size(), IsDir: e.IsDir()}
			if e.Attr.Attr.FileMode != 0 || e.Attr.Attr.UID != 0 || e.Attr.Attr.GID != 0 {
				en.UID, en.GID = e.Attr.Attr.UID, e.Attr.Attr.GID
			}
			out = append(out, en)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %s on %s: %w", dir, t, err)
	}
	return out, nil
}

// IsNotExist reports whether err means the file or export does not exist.
func IsNotExist(err error) bool {
	return errors.Is(err, os.ErrNotExist) || strings.Contains(fmt.Sprint(err), "NOENT")
}

// SyncedWrites writes block n times, one after another, to a new file name
// over NFSv3 with the Go client. Each WRITE is FILE_SYNC: the server has the
// data on stable storage before it answers, as after a local write+fsync.
func SyncedWrites(ctx context.Context, t Target, name string, block []byte, n int) error {
	if err := t.validate(); err != nil {
		return err
	}
	if t.Version != 3 {
		return fmt.Errorf("nfsclient: SyncedWrites needs NFSv3 (the Go client), not v%d", t.Version)
	}
	return withSession(ctx, t, func(v *nfs.Target) error {
		f, err := v.OpenFile(path.Clean("/"+name), 0o644)
		if err != nil {
			return err
		}
		for range n {
			if _, err := f.Write(block); err != nil {
				f.Close()
				return fmt.Errorf("synced write to %s on %s: %w", name, t, err)
			}
		}
		return f.Close()
	})
}

// ReadFiles reads several files of one export over a single NFSv3 mount.
// Every mount costs the Go client two privileged source ports (1-1023),
// which stay in TIME_WAIT for a minute after it closes them; reading
// hundreds of files one mount each runs out of them.
func ReadFiles(ctx context.Context, t Target, names []string) (map[string][]byte, error) {
	if err := t.validate(); err != nil {
		return nil, err
	}
	if !t.useGo() {
		return nil, fmt.Errorf("nfsclient: ReadFiles needs the Go client (NFSv3)")
	}
	out := make(map[string][]byte, len(names))
	err := withSession(ctx, t, func(v *nfs.Target) error {
		for _, name := range names {
			f, err := v.Open(path.Clean("/" + name))
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			data, err := io.ReadAll(f)
			f.Close()
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			out[name] = data
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read files on %s: %w", t, err)
	}
	return out, nil
}
