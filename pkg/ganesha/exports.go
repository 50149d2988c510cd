package ganesha

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"sync"

	"k8s.io/klog/v2"
)

// ExportManager adds, removes and lists ganesha exports. Every export is a
// file exports/<id>.conf, listed in exports.conf, which the main config
// %includes; so a restarted ganesha serves every export before the first
// D-Bus call. Methods are safe for concurrent use; the AddExport calls of
// different local exports are made together (see addUnlocked).
type ExportManager struct {
	bus          exportBus
	dir          string // exports/
	includesFile string // exports.conf

	closeBus func() error // set when the manager owns its bus connection

	mu    sync.Mutex
	known map[uint16]Export // contents of exports/<id>.conf
	// adding holds the Adds whose AddExport is on the bus, by ID: until
	// done is closed, their ID and pseudo path are taken.
	adding map[uint16]*pendingAdd
}

// pendingAdd is an Add waiting for ganesha's answer.
type pendingAdd struct {
	e    Export
	done chan struct{}
}

// Close releases the D-Bus connection of a manager made by
// ConnectExportManager; for a Server's manager it does nothing.
func (m *ExportManager) Close() error {
	if m.closeBus == nil {
		return nil
	}
	return m.closeBus()
}

var exportFileRE = regexp.MustCompile(`^([0-9]{1,5})\.conf$`)

// ConnectExportManager manages the exports of a ganesha that runs elsewhere
// (-run-server=false) but shares stateDir: only D-Bus calls and export files.
// busAddress is a D-Bus address such as "unix:path=/state/run/dbus.sock".
func ConnectExportManager(busAddress, stateDir string) (*ExportManager, error) {
	if busAddress == "" {
		return nil, errors.New("connect export manager: empty D-Bus address")
	}
	if !filepath.IsAbs(stateDir) {
		return nil, fmt.Errorf("connect export manager: state dir %q is not absolute", stateDir)
	}
	bus := newBusClient(busAddress)
	if _, err := bus.connection(); err != nil {
		return nil, fmt.Errorf("connect export manager: %w", err)
	}
	m, err := newExportManager(bus, stateDir)
	if err != nil {
		bus.Close()
		return nil, err
	}
	m.closeBus = bus.Close
	return m, nil
}

// newExportManager loads the export files already in stateDir/exports.
func newExportManager(bus exportBus, stateDir string) (*ExportManager, error) {
	m := &ExportManager{
		bus:          bus,
		dir:          filepath.Join(stateDir, "exports"),
		includesFile: filepath.Join(stateDir, "exports.conf"),
		known:        map[uint16]Export{},
		adding:       map[uint16]*pendingAdd{},
	}
	if err := os.MkdirAll(m.dir, 0o755); err != nil {
		return nil, fmt.Errorf("export manager: %w", err)
	}
	if err := m.load(); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *ExportManager) fileOf(id uint16) string {
	return filepath.Join(m.dir, strconv.Itoa(int(id))+".conf")
}

// load reads every export file. A file that does not parse is left alone
// (and not included), so one damaged file cannot hide the others.
func (m *ExportManager) load() error {
	entries, err := os.ReadDir(m.dir)
	if err != nil {
		return fmt.Errorf("read exports dir: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, de := range entries {
		match := exportFileRE.FindStringSubmatch(de.Name())
		if match == nil || !de.Type().IsRegular() {
			continue
		}
		p := filepath.Join(m.dir, de.Name())
		data, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("read export file: %w", err)
		}
		e, err := exportFromConfig(data)
		if err != nil {
			klog.ErrorS(err, "Ignoring export file that does not parse", "file", p)
			continue
		}
		if strconv.Itoa(int(e.ID)) != match[1] {
			klog.ErrorS(nil, "Ignoring export file whose name does not match its Export_Id", "file", p, "exportID", e.ID)
			continue
		}
		m.known[e.ID] = e
	}
	return m.writeIncludesLocked()
}

// writeIncludes rewrites exports.conf from the known export files.
func (m *ExportManager) writeIncludes() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.writeIncludesLocked()
}

func (m *ExportManager) writeIncludesLocked() error {
	ids := slices.Sorted(maps.Keys(m.known))
	files := make([]string, 0, len(ids))
	for _, id := range ids {
		// An export whose directory is gone (a filesystem volume that could
		// not be mounted again) is left out until it is back: ganesha would
		// refuse to start, or serve the empty mount point's filesystem.
		k := m.known[id]
		if !k.Local() {
			// A CephFS export is never started with ganesha: its start
			// would wait for the cluster, and NFS service of every other
			// export with it. It is added over D-Bus once the cluster
			// answers (Unserved).
			continue
		}
		if _, err := os.Lstat(k.Path); err != nil {
			klog.ErrorS(err, "Not serving an export whose directory is missing; its file is kept", "exportID", id, "path", k.Path)
			continue
		}
		files = append(files, m.fileOf(id))
	}
	// Derived from the export files, so not fsynced: a torn write after a
	// power loss is repaired on the next start (load rewrites it).
	return writeFileAtomic(m.includesFile, renderIncludes(files), 0o644, false)
}

// appendIncludeLocked adds one %include line to exports.conf. Rewriting the
// whole list on every Add made 1000 adds take seconds; a line appended with
// O_APPEND is as good, and a torn append (crash mid-write) is repaired by the
// full rewrite in load on the next start.
func (m *ExportManager) appendIncludeLocked(id uint16) error {
	f, err := os.OpenFile(m.includesFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(renderIncludes([]string{m.fileOf(id)})[len(includesHeader):])
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Add makes e an active export and persists it.
//
// Idempotent: if an identical export with e.ID is already active, Add
// returns nil. If e.ID is active with other content, or another active
// export has the same Pseudo path, the error wraps ErrConflict and names
// both. Invalid input returns an error wrapping ErrInvalid and leaves no file
// behind.
func (m *ExportManager) Add(ctx context.Context, e Export) error {
	logger := klog.FromContext(ctx)
	if err := e.Validate(); err != nil {
		return err
	}
	e = e.Normalized()
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.waitTurnLocked(ctx, e.ID, e.Pseudo); err != nil {
		return fmt.Errorf("export %d %s: %w", e.ID, e.Path, err)
	}

	if err := m.checkPseudoLocked(ctx, e); err != nil {
		return err
	}
	// ganesha refuses an AddExport of an ID it serves only after the FSAL
	// made the export anew. For FSAL_CEPH that is a second CephFS mount,
	// whose reclaim reset (same node ID, same export ID) evicts the live
	// export's session: from then on the live export answers every
	// request with ESHUTDOWN. So a remote export that may be served (by an
	// earlier Add that raced with this one, say ServeRemote's and
	// reconciliation's) is looked up first and never added twice.
	if !e.Local() {
		active, err := m.bus.ShowExports(ctx)
		if err != nil {
			return fmt.Errorf("export %d %s: %w", e.ID, e.Path, err)
		}
		if slices.ContainsFunc(active, func(a activeExport) bool { return a.ID == e.ID }) {
			return m.compareActiveLocked(ctx, e)
		}
	}

	// ganesha parses the file during AddExport; it becomes <id>.conf only
	// if ganesha accepted it, so a rejected export leaves nothing behind.
	tmp, err := os.CreateTemp(m.dir, fmt.Sprintf(".%d.conf.new-*", e.ID))
	if err != nil {
		return fmt.Errorf("export %d %s: %w", e.ID, e.Path, err)
	}
	tmpName := tmp.Name()
	keep := false
	defer func() {
		if !keep {
			os.Remove(tmpName)
		}
	}()
	// Not fsynced: at 1 ms per file it would double the cost of an Add, and
	// a file lost to a power cut is re-created by the provisioner's
	// reconciliation (a damaged one is skipped by load, never fatal).
	_, werr := tmp.Write(renderExport(e))
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return fmt.Errorf("export %d %s: write config: %w", e.ID, e.Path, werr)
	}

	if e.Local() {
		err = m.addUnlocked(ctx, tmpName, e)
	} else {
		err = m.bus.AddExport(ctx, tmpName, e.ID)
	}
	switch {
	case errors.Is(err, errExportActive):
		return m.compareActiveLocked(ctx, e)
	case err != nil:
		return fmt.Errorf("export %d %s: %w", e.ID, e.Path, err)
	}

	final := m.fileOf(e.ID)
	if err := os.Rename(tmpName, final); err != nil {
		m.rollback(ctx, e.ID)
		return fmt.Errorf("export %d %s: %w", e.ID, e.Path, err)
	}
	keep = true
	_, included := m.known[e.ID]
	m.known[e.ID] = e
	if !included && e.Local() {
		if err := m.appendIncludeLocked(e.ID); err != nil {
			delete(m.known, e.ID)
			os.Remove(final)
			m.rollback(ctx, e.ID)
			return fmt.Errorf("export %d %s: %w", e.ID, e.Path, err)
		}
	}
	logger.V(2).Info("Export added", "exportID", e.ID, "path", e.Path, "pseudo", e.Pseudo)
	return nil
}

// addUnlocked makes the AddExport call of local export e without holding
// m.mu (held on entry and on return), with e's ID and pseudo path taken
// meanwhile. ganesha answers D-Bus calls one at a time; what the lock
// serialised besides its work was each call's round trip through the bus
// daemon and back: during a burst of filesystem volumes, some 6 ms of a
// 16 ms call. With the calls of several provisions queued at the bus, ganesha
// goes from one to the next. Remote (CephFS) exports keep the lock: their
// Add asks ganesha first whether the export is served (see Add).
func (m *ExportManager) addUnlocked(ctx context.Context, confFile string, e Export) error {
	p := &pendingAdd{e: e, done: make(chan struct{})}
	m.adding[e.ID] = p
	m.mu.Unlock()
	// Deferred, so that m.mu is held again, and the waiters let go, even
	// if the call panics.
	defer func() {
		m.mu.Lock()
		delete(m.adding, e.ID)
		close(p.done)
	}()
	return m.bus.AddExport(ctx, confFile, e.ID)
}

// waitTurnLocked returns, with m.mu held as on entry, once no Add on the
// bus holds export ID id or pseudo path pseudo ("" for none), or when ctx
// ends. A second Add of the same export then finds the first one's result,
// and Remove and Update never overtake the Add of their export.
func (m *ExportManager) waitTurnLocked(ctx context.Context, id uint16, pseudo string) error {
	for {
		var wait chan struct{}
		for _, p := range m.adding {
			if p.e.ID == id || (pseudo != "" && p.e.Pseudo == pseudo) {
				wait = p.done
				break
			}
		}
		if wait == nil {
			return nil
		}
		m.mu.Unlock()
		select {
		case <-wait:
			m.mu.Lock()
		case <-ctx.Done():
			m.mu.Lock()
			return ctx.Err()
		}
	}
}

// Update changes the options of live export e.ID (clients, squash, access,
// security, protocols) in place, over ganesha's UpdateExport, so clients keep
// their mounts. Its path and pseudo path cannot change in place: that, or an
// export this manager has no file for, is an error wrapping ErrUnsupported.
func (m *ExportManager) Update(ctx context.Context, e Export) error {
	if err := e.Validate(); err != nil {
		return err
	}
	e = e.Normalized()
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.waitTurnLocked(ctx, e.ID, ""); err != nil {
		return fmt.Errorf("export %d: %w", e.ID, err)
	}
	old, ok := m.known[e.ID]
	// ganesha keeps an export's FSAL (and its CephFS mount) for the
	// export's life: another user or key needs the export added again.
	if !ok || old.Path != e.Path || old.Pseudo != e.Pseudo || old.FSAL != e.FSAL {
		return fmt.Errorf("export %d: %w", e.ID, ErrUnsupported)
	}
	if old.Equal(e) {
		return nil
	}
	tmp, err := os.CreateTemp(m.dir, fmt.Sprintf(".%d.conf.new-*", e.ID))
	if err != nil {
		return fmt.Errorf("export %d %s: %w", e.ID, e.Path, err)
	}
	tmpName := tmp.Name()
	defer os.Remove(tmpName)
	_, werr := tmp.Write(renderExport(e))
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return fmt.Errorf("export %d %s: write config: %w", e.ID, e.Path, werr)
	}
	if err := m.bus.UpdateExport(ctx, tmpName, e.ID); err != nil {
		if errors.Is(err, errExportNotFound) {
			return fmt.Errorf("export %d: %w: %w", e.ID, ErrUnsupported, err)
		}
		return fmt.Errorf("export %d %s: %w", e.ID, e.Path, err)
	}
	if err := os.Rename(tmpName, m.fileOf(e.ID)); err != nil {
		return fmt.Errorf("export %d %s: %w", e.ID, e.Path, err)
	}
	m.known[e.ID] = e
	klog.FromContext(ctx).V(2).Info("Export updated", "exportID", e.ID, "export", e.String())
	return nil
}

// rollback undoes an AddExport whose file could not be kept, so that ganesha
// and the files on disk agree.
func (m *ExportManager) rollback(ctx context.Context, id uint16) {
	if err := m.bus.RemoveExport(ctx, id); err != nil && !errors.Is(err, errExportNotFound) {
		klog.FromContext(ctx).Error(err, "Rollback of AddExport failed", "exportID", id)
	}
}

// serves reports whether live export a is the one k describes. ganesha 4.3
// reports an export's pseudo path where there is one (mount_path_pseudo),
// else its path.
func (k Export) serves(a activeExport) bool {
	return a.Path == k.Pseudo || a.Path == k.Path
}

// compareActiveLocked decides an Add whose ID ganesha already serves. Our
// file for the ID is trusted only when ganesha serves the same path: with a
// shared ganesha, someone may have replaced our export while we were away,
// and then our file is stale and is dropped.
func (m *ExportManager) compareActiveLocked(ctx context.Context, e Export) error {
	active, err := m.bus.ShowExports(ctx)
	if err != nil {
		return fmt.Errorf("export %d: %w: requested %s, active with unknown content (%v)", e.ID, ErrConflict, e, err)
	}
	for _, a := range active {
		if a.ID != e.ID {
			continue
		}
		old, ok := m.known[e.ID]
		switch {
		case ok && old.serves(a) && old.Equal(e):
			return nil
		case ok && old.serves(a):
			return fmt.Errorf("export %d: %w: requested %s, active %s", e.ID, ErrConflict, e, old)
		case ok:
			klog.FromContext(ctx).Info("Our file for an export ID describes another path than ganesha serves under it; dropping the stale file", "exportID", e.ID, "file", old.Path, "served", a.Path)
			delete(m.known, e.ID)
			os.Remove(m.fileOf(e.ID))
			if err := m.writeIncludesLocked(); err != nil {
				return fmt.Errorf("export %d: %w", e.ID, err)
			}
		}
		return fmt.Errorf("export %d: %w: requested %s, active export %d %s not managed by this state dir", e.ID, ErrConflict, e, a.ID, a.Path)
	}
	return fmt.Errorf("export %d: %w: requested %s, ganesha reports it active", e.ID, ErrConflict, e)
}

// checkPseudoLocked refuses a Pseudo path that another active export uses;
// ganesha would accept the second and shadow one of them.
func (m *ExportManager) checkPseudoLocked(ctx context.Context, e Export) error {
	var clash *Export
	for id, k := range m.known {
		if id != e.ID && k.Pseudo == e.Pseudo {
			clash = &k
			break
		}
	}
	if clash == nil {
		return nil
	}
	active, err := m.bus.ShowExports(ctx)
	if err != nil {
		return fmt.Errorf("export %d: check pseudo %s: %w", e.ID, e.Pseudo, err)
	}
	for _, a := range active {
		if a.ID == clash.ID {
			return fmt.Errorf("export %d: %w: pseudo %s of requested %s is used by active %s", e.ID, ErrConflict, e.Pseudo, e, *clash)
		}
	}
	return nil
}

// Remove withdraws export id and deletes its file. Removing an export that
// is not active succeeds (and still deletes a leftover file).
func (m *ExportManager) Remove(ctx context.Context, id uint16) error {
	if id == 0 {
		return fmt.Errorf("export 0: %w: the pseudo root cannot be removed", ErrInvalid)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.waitTurnLocked(ctx, id, ""); err != nil {
		return fmt.Errorf("export %d: %w", id, err)
	}
	// D-Bus first: if it fails, the file stays and a retry finds the same state.
	if err := m.bus.RemoveExport(ctx, id); err != nil && !errors.Is(err, errExportNotFound) {
		return fmt.Errorf("export %d: %w", id, err)
	}
	if err := os.Remove(m.fileOf(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("export %d: %w", id, err)
	}
	delete(m.known, id)
	if err := m.writeIncludesLocked(); err != nil {
		return fmt.Errorf("export %d: %w", id, err)
	}
	klog.FromContext(ctx).V(2).Info("Export removed", "exportID", id)
	return nil
}

// Unserved returns the exports this manager has files for that ganesha
// does not serve now, sorted by ID: remote (CephFS) exports after a start
// of ganesha, which never starts with them, and exports whose Add failed.
func (m *ExportManager) Unserved(ctx context.Context) ([]Export, error) {
	active, err := m.bus.ShowExports(ctx)
	if err != nil {
		return nil, fmt.Errorf("list exports: %w", err)
	}
	live := map[uint16]bool{}
	for _, a := range active {
		live[a.ID] = true
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Export
	for _, id := range slices.Sorted(maps.Keys(m.known)) {
		if !live[id] {
			out = append(out, m.known[id])
		}
	}
	return out, nil
}

// List returns the exports ganesha serves now, sorted by ID, without the
// pseudo root. Fields come from the export file when there is one; otherwise
// only ID and Path are set.
func (m *ExportManager) List(ctx context.Context) ([]Export, error) {
	active, err := m.bus.ShowExports(ctx)
	if err != nil {
		return nil, fmt.Errorf("list exports: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Export, 0, len(active))
	for _, a := range active {
		if a.ID == 0 || a.ID == SentinelExportID {
			continue
		}
		// Our file describes the live export only if ganesha serves its
		// path: with a shared ganesha, someone may have replaced it.
		if k, ok := m.known[a.ID]; ok && k.serves(a) {
			out = append(out, k)
			continue
		}
		// Added, and about to be recorded by the Add in flight.
		if p, ok := m.adding[a.ID]; ok && p.e.serves(a) {
			out = append(out, p.e)
			continue
		}
		out = append(out, Export{ID: a.ID, Path: a.Path})
	}
	slices.SortFunc(out, func(a, b Export) int { return int(a.ID) - int(b.ID) })
	return out, nil
}
