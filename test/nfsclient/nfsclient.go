// Package nfsclient is a small NFS client for tests: it drives the real
// libnfs-utils tools (nfs-cp, nfs-cat, nfs-ls) and, for NFSv3 from Go,
// github.com/willscott/go-nfs-client. Ports are always named explicitly:
// several servers on one machine share one portmapper, so its registrations
// cannot be trusted in tests.
//
// Bulk data should go over NFSv3: the libnfs 4.0 NFSv4 client cannot write
// more than about 3 KB in one call.
package nfsclient

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"strconv"
	"strings"
)

// Target names one export on one server.
type Target struct {
	Host      string // e.g. 127.0.0.1
	NFSPort   int
	MountPort int    // NFSv3 only
	Pseudo    string // export path, e.g. /pv1
	Version   int    // 3 or 4
	UID, GID  uint32 // AUTH_SYS identity; 0 is root
	// Tool picks the client: "" (Go for v3, libnfs for v4), "libnfs" or "go".
	Tool string
}

// MaxV4Write is the largest file WriteFile sends over NFSv4 (libnfs limit).
const MaxV4Write = 3000

func (t Target) validate() error {
	if t.Host == "" || t.NFSPort == 0 {
		return errors.New("nfsclient: Host and NFSPort are required")
	}
	if !strings.HasPrefix(t.Pseudo, "/") {
		return fmt.Errorf("nfsclient: Pseudo %q must be absolute", t.Pseudo)
	}
	switch t.Version {
	case 3:
		if t.MountPort == 0 {
			return errors.New("nfsclient: NFSv3 needs MountPort")
		}
	case 4:
		if t.Tool == "go" {
			return errors.New("nfsclient: the Go client speaks NFSv3 only")
		}
	default:
		return fmt.Errorf("nfsclient: Version %d: want 3 or 4", t.Version)
	}
	return nil
}

func (t Target) useGo() bool { return t.Version == 3 && t.Tool != "libnfs" }

// URL is the libnfs URL of name (relative to the export; "" = the export).
func (t Target) URL(name string) string {
	p := path.Join(t.Pseudo, name)
	if name == "" || strings.HasSuffix(name, "/") {
		p += "/"
	}
	q := fmt.Sprintf("version=%d&nfsport=%d", t.Version, t.NFSPort)
	if t.Version == 3 {
		q += fmt.Sprintf("&mountport=%d", t.MountPort)
	}
	if t.UID != 0 || t.GID != 0 {
		q += fmt.Sprintf("&uid=%d&gid=%d", t.UID, t.GID)
	}
	return fmt.Sprintf("nfs://%s%s?%s", t.Host, p, q)
}

func (t Target) String() string {
	return fmt.Sprintf("nfs v%d %s:%d%s uid %d", t.Version, t.Host, t.NFSPort, t.Pseudo, t.UID)
}

// WriteFile writes data to name in the export. The Go client (NFSv3)
// replaces an existing file; libnfs (nfs-cp) creates exclusively and fails
// if name exists.
func WriteFile(ctx context.Context, t Target, name string, data []byte) error {
	if err := t.validate(); err != nil {
		return err
	}
	if t.useGo() {
		return goWriteFile(ctx, t, name, data)
	}
	if t.Version == 4 && len(data) > MaxV4Write {
		return fmt.Errorf("nfsclient: %d bytes over NFSv4: libnfs cannot write more than ~3 KB, use NFSv3", len(data))
	}
	f, err := os.CreateTemp("", "nfsclient-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if _, err := run(ctx, "nfs-cp", f.Name(), t.URL(name)); err != nil {
		return fmt.Errorf("write %s on %s: %w", name, t, err)
	}
	return nil
}

// ReadFile returns the content of name in the export.
func ReadFile(ctx context.Context, t Target, name string) ([]byte, error) {
	if err := t.validate(); err != nil {
		return nil, err
	}
	if t.useGo() {
		return goReadFile(ctx, t, name)
	}
	out, err := run(ctx, "nfs-cat", t.URL(name))
	if err != nil {
		return nil, fmt.Errorf("read %s on %s: %w", name, t, err)
	}
	return out, nil
}

// Entry is one directory entry.
type Entry struct {
	Name  string
	Mode  string // as nfs-ls prints it for libnfs, os.FileMode string for Go
	UID   uint32
	GID   uint32
	Size  int64
	IsDir bool
}

// List lists dir in the export ("" = the export's root), without . and ..
func List(ctx context.Context, t Target, dir string) ([]Entry, error) {
	if err := t.validate(); err != nil {
		return nil, err
	}
	if t.useGo() {
		return goList(ctx, t, dir)
	}
	u := t.URL(dir)
	if !strings.Contains(u, "/?") {
		u = strings.Replace(u, "?", "/?", 1)
	}
	out, err := run(ctx, "nfs-ls", u)
	if err != nil {
		return nil, fmt.Errorf("list %s on %s: %w", dir, t, err)
	}
	return parseNFSLs(out)
}

// Stat returns the entry of name, found by listing its directory.
func Stat(ctx context.Context, t Target, name string) (Entry, error) {
	dir, base := path.Split(path.Clean("/" + name))
	entries, err := List(ctx, t, strings.TrimPrefix(dir, "/"))
	if err != nil {
		return Entry{}, err
	}
	for _, e := range entries {
		if e.Name == base {
			return e, nil
		}
	}
	return Entry{}, fmt.Errorf("stat %s on %s: %w", name, t, os.ErrNotExist)
}

// parseNFSLs reads lines like "-rw-rw----  1     0     0            3 x.txt".
func parseNFSLs(out []byte) ([]Entry, error) {
	var entries []Entry
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 6 {
			return nil, fmt.Errorf("nfs-ls: unexpected line %q", line)
		}
		uid, err1 := strconv.ParseUint(f[2], 10, 32)
		gid, err2 := strconv.ParseUint(f[3], 10, 32)
		size, err3 := strconv.ParseInt(f[4], 10, 64)
		if err := errors.Join(err1, err2, err3); err != nil {
			return nil, fmt.Errorf("nfs-ls: line %q: %w", line, err)
		}
		// The name is everything after the size column; it may hold spaces.
		idx := 0
		for i := 0; i < 5; i++ {
			idx += strings.Index(line[idx:], f[i]) + len(f[i])
		}
		name := strings.TrimLeft(line[idx:], " ")
		if name == "." || name == ".." {
			continue
		}
		entries = append(entries, Entry{Name: name, Mode: f[0], UID: uint32(uid), GID: uint32(gid), Size: size, IsDir: strings.HasPrefix(f[0], "d")})
	}
	return entries, nil
}

func run(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String() + " " + stdout.String())
		if errors.Is(err, exec.ErrNotFound) {
			return nil, fmt.Errorf("%s not found (install libnfs-utils): %w", name, err)
		}
		return nil, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, msg)
	}
	return stdout.Bytes(), nil
}
