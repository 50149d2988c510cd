package volume

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/storage"
)

// StateDirName is the hidden directory inside the export dir that holds the
// provisioner's own state (identity, lock, ownership ledger, export ID mark,
// ganesha's config and export files, NFSv4 recovery records), so that it
// moves and persists with the data. It is root-only.
const StateDirName = ".nfs-provisioner"

// State is the provisioner's persistent state in the store. Methods are
// safe for concurrent use on different volume names.
type State struct {
	dir string
}

// OpenState opens (creating if need be) the state directory of the store at
// exportDir and makes it root-only.
func OpenState(exportDir string) (*State, error) {
	dir := filepath.Join(exportDir, StateDirName)
	if err := os.MkdirAll(filepath.Join(dir, "owners"), 0o700); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	// A release before this one made it 0755; nothing in it is for others.
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	return &State{dir: dir}, nil
}

// Dir is the state directory's path.
func (s *State) Dir() string { return s.dir }

// Lock takes an exclusive lock on the store for as long as the process
// lives. The lock is what makes this process the store's only writer and
// server; a second provisioner on the same export dir is refused.
func (s *State) Lock() (*os.File, error) {
	path := filepath.Join(s.dir, "lock")
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

func (s *State) identityPath() string { return filepath.Join(s.dir, "identity") }

// Identity returns the store's identity; ok is false when there is none yet.
func (s *State) Identity() (id string, ok bool, err error) {
	data, err := os.ReadFile(s.identityPath())
	if errors.Is(err, fs.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("read identity: %w", err)
	}
	id = strings.TrimSpace(string(data))
	if id == "" {
		return "", false, fmt.Errorf("identity file %s is empty; restore it from a PV's %s annotation", s.identityPath(), AnnIdentity)
	}
	return id, true, nil
}

// SetIdentity records the store's identity.
func (s *State) SetIdentity(id string) error {
	if err := writeFileSync(s.identityPath(), []byte(id+"\n")); err != nil {
		return fmt.Errorf("write identity: %w", err)
	}
	return nil
}

// Owner is the ledger's record of one volume: which PV it was made for. It is
// written, and synced, before the volume is made, so it is also the intent
// of an unfinished provision: a volume whose record is still Provisioning
// was never handed over in a PV (Provision did not return it), so no client
// can have received it.
type Owner struct {
	PV    string       `json:"pv"`
	Kind  storage.Kind `json:"kind"`
	Claim string       `json:"claim,omitempty"` // namespace/name
	// ClaimUID is the claim the volume was made for.
	ClaimUID string    `json:"claimUID,omitempty"`
	Created  time.Time `json:"created"`
	// Provisioning is true until Provision returned the volume's PV (or a
	// PV naming it has been seen).
	Provisioning bool `json:"provisioning,omitempty"`
	// Released is set when the PV was deleted under onDelete=retain: the
	// data is kept and no longer served.
	Released bool `json:"released,omitempty"`
}

func (s *State) ownerPath(name string) (string, error) {
	if err := storage.CheckName(name); err != nil {
		return "", err
	}
	return filepath.Join(s.dir, "owners", name), nil
}

// Owner returns the ledger record of volume name; ok is false when there is
// none (a volume made by a release before the ledger, or none at all).
func (s *State) Owner(name string) (o Owner, ok bool, err error) {
	path, err := s.ownerPath(name)
	if err != nil {
		return Owner{}, false, err
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Owner{}, false, nil
	}
	if err != nil {
		return Owner{}, false, fmt.Errorf("read owner of %s: %w", name, err)
	}
	if err := json.Unmarshal(data, &o); err != nil || o.PV == "" {
		return Owner{}, false, fmt.Errorf("owner record %s is damaged (%v); it names the PV that owns volume %s: restore it or remove it to let that PV adopt the volume", path, err, name)
	}
	return o, true, nil
}

// SetOwner records (synced) that volume name belongs to o.PV.
func (s *State) SetOwner(name string, o Owner) error {
	path, err := s.ownerPath(name)
	if err != nil {
		return err
	}
	data, err := json.Marshal(o)
	if err != nil {
		return err
	}
	if err := writeFileSync(path, append(data, '\n')); err != nil {
		return fmt.Errorf("record owner of %s: %w", name, err)
	}
	return nil
}

// DropOwner forgets volume name, once its data is gone or renamed.
func (s *State) DropOwner(name string) error {
	path, err := s.ownerPath(name)
	if err != nil {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("drop owner of %s: %w", name, err)
	}
	return nil
}

// Owners lists the volume names the ledger has records for.
func (s *State) Owners() ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(s.dir, "owners"))
	if err != nil {
		return nil, fmt.Errorf("list owners: %w", err)
	}
	var names []string
	for _, e := range entries {
		if e.Type().IsRegular() && storage.CheckName(e.Name()) == nil {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

func (s *State) markPath() string { return filepath.Join(s.dir, "export-id-mark") }

// ExportIDMark is the export ID handed out last, as far as the store knows;
// 0 when none was recorded.
func (s *State) ExportIDMark() (uint16, error) {
	data, err := os.ReadFile(s.markPath())
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read export ID mark: %w", err)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(data)), 10, 16)
	if err != nil {
		return 0, fmt.Errorf("export ID mark %s: %w", s.markPath(), err)
	}
	return uint16(n), nil
}

// SetExportIDMark records the highest export ID that may have been handed out.
func (s *State) SetExportIDMark(id uint16) error {
	return writeFileSync(s.markPath(), []byte(strconv.Itoa(int(id))+"\n"))
}

// LeftoversFile is the listing of volumes no PV names, for the operator.
func (s *State) LeftoversFile() string { return filepath.Join(s.dir, "leftovers") }

// WriteLeftovers replaces the listing of leftovers: one volume a line, with
// its kind and why it is kept.
func (s *State) WriteLeftovers(lines []string) error {
	slices.Sort(lines)
	var b strings.Builder
	b.WriteString("# Volumes in this store that no PersistentVolume names. They are kept, never\n")
	b.WriteString("# deleted by the provisioner: remove one by hand once you know its data is not needed.\n")
	for _, l := range lines {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return writeFileSync(s.LeftoversFile(), []byte(b.String()))
}

// writeFileSync replaces path atomically and durably.
func writeFileSync(path string, data []byte) error {
	// Not <path>.tmp: for a volume name of 252 bytes or more that name is
	// too long, and a leftover of a crash would read as a volume's record.
	// A dot-name is neither.
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}
