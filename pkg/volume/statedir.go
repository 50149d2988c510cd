package volume

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
	"k8s.io/apimachinery/pkg/util/uuid"
)

// StateDirName is the hidden directory inside the export dir that holds the
// provisioner's own state (identity, ganesha config, export files, NFSv4
// recovery records), so that it moves and persists with the data.
const StateDirName = ".nfs-provisioner"

// StateDir is the state directory of the store at exportDir, created if need be.
func StateDir(exportDir string) (string, error) {
	dir := filepath.Join(exportDir, StateDirName)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("state dir: %w", err)
	}
	return dir, nil
}

// LockStateDir takes an exclusive lock on the state dir for as long as the
// process lives. A second provisioner on the same export dir would fight
// the first over ganesha and reap its volumes as orphans, so it is refused.
func LockStateDir(stateDir string) (*os.File, error) {
	path := filepath.Join(stateDir, "lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("export dir is in use by another provisioner (%s holds %s)", strings.TrimSpace(string(holder)), path)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	// The PID is only for the message above; the flock is the lock.
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(fmt.Sprintf("pid %d\n", os.Getpid())), 0)
	return f, nil
}

// LoadIdentity returns the identity of the store, making one on first use.
// It lives in the state dir, so PVs stay deletable after the provisioner
// moves, and another store's PVs are never mistaken for ours.
func LoadIdentity(stateDir string) (string, error) {
	path := filepath.Join(stateDir, "identity")
	data, err := os.ReadFile(path)
	if err == nil {
		id := strings.TrimSpace(string(data))
		if id == "" {
			return "", fmt.Errorf("identity file %s is empty; restore it from a PV's %s annotation", path, AnnIdentity)
		}
		return id, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("read identity: %w", err)
	}
	id := string(uuid.NewUUID())
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(id+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write identity: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", fmt.Errorf("write identity: %w", err)
	}
	return id, nil
}
