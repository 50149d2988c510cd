package volume

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Store is the local directory that holds every volume's directory (the
// -export-dir). All paths it hands out are checked to lie inside it after
// symlinks are resolved.
type Store struct {
	root string // absolute, symlinks resolved
}

// NewStore opens the store at dir, which must exist.
func NewStore(dir string) (*Store, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("export dir %s: %w", dir, err)
	}
	root, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return nil, fmt.Errorf("export dir %s: %w", dir, err)
	}
	if fi, err := os.Stat(root); err != nil {
		return nil, fmt.Errorf("export dir %s: %w", dir, err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("export dir %s: not a directory", dir)
	}
	return &Store{root: root}, nil
}

// Root is the store's absolute path.
func (s *Store) Root() string { return s.root }

// Path is the absolute path of the directory called name.
func (s *Store) Path(name string) (string, error) {
	if err := checkDirectoryName(name); err != nil {
		return "", err
	}
	return filepath.Join(s.root, name), nil
}

// Create makes directory name with the given owner and mode. An existing
// directory is reused as it is (a repeated Provision), and created reports
// whether this call made it, so a failing caller removes only what it made.
func (s *Store) Create(name string, uid, gid int, mode os.FileMode) (created bool, err error) {
	path, err := s.Path(name)
	if err != nil {
		return false, err
	}
	if err := os.Mkdir(path, 0o700); err != nil {
		if !errors.Is(err, fs.ErrExist) {
			return false, fmt.Errorf("create directory %s: %w", path, err)
		}
		if err := s.checkInside(path); err != nil {
			return false, err
		}
		return false, nil
	}
	// From here on a failure removes the directory again: no half-made volume.
	defer func() {
		if err != nil {
			_ = os.Remove(path)
		}
	}()
	if err := s.checkInside(path); err != nil {
		return false, err
	}
	// Owner and mode are set before the directory is exported: ganesha caches
	// attributes, and a change behind its back is seen late.
	if err := os.Lchown(path, uid, gid); err != nil {
		return false, fmt.Errorf("chown %s to %d:%d: %w", path, uid, gid, err)
	}
	// Chmod after creating, because Mkdir's mode is cut by the umask.
	if err := os.Chmod(path, mode); err != nil {
		return false, fmt.Errorf("chmod %s to %o: %w", path, mode, err)
	}
	return true, nil
}

// checkInside fails unless path, symlinks resolved, is a directory directly
// inside the store.
func (s *Store) checkInside(path string) error {
	resolved, err := filepath.EvalSymlinks(path)
	if err != nil {
		return fmt.Errorf("resolve %s: %w", path, err)
	}
	if filepath.Dir(resolved) != s.root {
		return fmt.Errorf("%s resolves to %s, outside the export dir %s", path, resolved, s.root)
	}
	fi, err := os.Lstat(resolved)
	if err != nil {
		return fmt.Errorf("stat %s: %w", resolved, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", resolved)
	}
	return nil
}

// Exists reports whether directory name is there and inside the store.
func (s *Store) Exists(name string) (bool, error) {
	path, err := s.Path(name)
	if err != nil {
		return false, err
	}
	if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err := s.checkInside(path); err != nil {
		return false, err
	}
	return true, nil
}

// Remove deletes directory name and everything in it. It is done when the
// directory is already gone. Symlinks inside are removed, never followed.
func (s *Store) Remove(name string) error {
	ok, err := s.Exists(name)
	if err != nil || !ok {
		return err
	}
	path, _ := s.Path(name)
	if err := os.RemoveAll(path); err != nil {
		return fmt.Errorf("remove %s: %w", path, err)
	}
	return nil
}

// Archive renames directory name to archived-<name>, or, when that is taken,
// archived-<name>-<time>. It returns the new name; "" when there was nothing
// to archive.
func (s *Store) Archive(name string, now time.Time) (string, error) {
	ok, err := s.Exists(name)
	if err != nil || !ok {
		return "", err
	}
	path, _ := s.Path(name)
	target := archivePrefix + name
	if len(target) > maxNameBytes {
		target = target[:maxNameBytes]
	}
	if _, err := os.Lstat(filepath.Join(s.root, target)); err == nil {
		suffix := "-" + now.UTC().Format("20060102T150405.000000000")
		target = target[:min(len(target), maxNameBytes-len(suffix))] + suffix
	}
	// RENAME_NOREPLACE: never overwrite an archive that appeared meanwhile.
	if err := unix.Renameat2(unix.AT_FDCWD, path, unix.AT_FDCWD, filepath.Join(s.root, target), unix.RENAME_NOREPLACE); err != nil {
		return "", fmt.Errorf("archive %s as %s: %w", path, target, err)
	}
	return target, nil
}

// IsEmpty reports whether directory name holds nothing.
func (s *Store) IsEmpty(name string) (bool, error) {
	path, err := s.Path(name)
	if err != nil {
		return false, err
	}
	f, err := os.Open(path)
	if err != nil {
		return false, fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	if len(names) > 0 {
		return false, nil
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return false, fmt.Errorf("read %s: %w", path, err)
	}
	return true, nil
}

// VolumeDirectories lists the directories that may belong to volumes: every
// visible directory that is not an archive.
func (s *Store) VolumeDirectories() ([]string, error) {
	entries, err := os.ReadDir(s.root)
	if err != nil {
		return nil, fmt.Errorf("list export dir %s: %w", s.root, err)
	}
	var names []string
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() || strings.HasPrefix(name, ".") || strings.HasPrefix(name, archivePrefix) {
			continue
		}
		names = append(names, name)
	}
	return names, nil
}

// Free is the number of bytes an unprivileged writer can still store.
func (s *Store) Free() (uint64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(s.root, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", s.root, err)
	}
	return st.Bavail * uint64(st.Bsize), nil
}
