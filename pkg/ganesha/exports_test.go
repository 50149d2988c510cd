package ganesha

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func newTestManager(t *testing.T) (*ExportManager, *fakeBus, string) {
	t.Helper()
	dir := t.TempDir()
	bus := newFakeBus()
	m, err := newExportManager(bus, dir)
	if err != nil {
		t.Fatal(err)
	}
	return m, bus, dir
}

func dirFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestManagerAddIsIdempotent(t *testing.T) {
	m, bus, dir := newTestManager(t)
	ctx := context.Background()
	e := Export{ID: 5, Path: "/srv/a", Pseudo: "/a"}
	for i := 0; i < 2; i++ {
		if err := m.Add(ctx, e); err != nil {
			t.Fatalf("Add #%d: %v", i+1, err)
		}
	}
	// Same export spelled with explicit defaults is still identical.
	explicit := Export{ID: 5, Path: "/srv/a", Pseudo: "/a", Access: AccessRW, Squash: RootSquash, SecType: []string{"sys"}, Clients: []string{"*"}}
	if err := m.Add(ctx, explicit); err != nil {
		t.Fatalf("Add with explicit defaults: %v", err)
	}
	if got := dirFiles(t, filepath.Join(dir, "exports")); !slices.Equal(got, []string{"5.conf"}) {
		t.Errorf("exports dir: %v", got)
	}
	inc, _ := os.ReadFile(filepath.Join(dir, "exports.conf"))
	if strings.Count(string(inc), "%include") != 1 || !strings.Contains(string(inc), `"`+filepath.Join(dir, "exports", "5.conf")+`"`) {
		t.Errorf("exports.conf:\n%s", inc)
	}
	if len(bus.active) != 1 {
		t.Errorf("active: %v", bus.active)
	}
}

func TestManagerAddConflict(t *testing.T) {
	m, _, dir := newTestManager(t)
	ctx := context.Background()
	a := Export{ID: 5, Path: "/srv/a", Pseudo: "/a"}
	if err := m.Add(ctx, a); err != nil {
		t.Fatal(err)
	}
	for _, b := range []Export{
		{ID: 5, Path: "/srv/b", Pseudo: "/b"},
		{ID: 5, Path: "/srv/a", Pseudo: "/a", Squash: NoRootSquash},
		{ID: 5, Path: "/srv/a", Pseudo: "/a", Clients: []string{"10.0.0.0/8"}},
		{ID: 6, Path: "/srv/c", Pseudo: "/a"},
	} {
		err := m.Add(ctx, b)
		if !errors.Is(err, ErrConflict) {
			t.Errorf("Add %s: %v, want ErrConflict", b, err)
			continue
		}
		if !strings.Contains(err.Error(), a.String()) || !strings.Contains(err.Error(), b.Normalized().String()) {
			t.Errorf("error does not name both: %v", err)
		}
	}
	if got := dirFiles(t, filepath.Join(dir, "exports")); !slices.Equal(got, []string{"5.conf"}) {
		t.Errorf("exports dir after conflicts: %v", got)
	}
	// The active export's file is unchanged.
	data, _ := os.ReadFile(filepath.Join(dir, "exports", "5.conf"))
	if got, err := exportFromConfig(data); err != nil || !got.Equal(a) {
		t.Errorf("5.conf now %v, %v", got, err)
	}
}

func TestManagerActiveWithoutFileIsConflict(t *testing.T) {
	m, bus, _ := newTestManager(t)
	bus.active[9] = "/elsewhere"
	err := m.Add(context.Background(), Export{ID: 9, Path: "/srv/a", Pseudo: "/a"})
	if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "/elsewhere") {
		t.Errorf("Add over a foreign export: %v", err)
	}
}

func TestManagerFailedAddLeavesNothing(t *testing.T) {
	m, bus, dir := newTestManager(t)
	ctx := context.Background()
	bus.failAdd = errInjected
	if err := m.Add(ctx, Export{ID: 1, Path: "/srv/a", Pseudo: "/a"}); !errors.Is(err, errInjected) {
		t.Errorf("Add: %v", err)
	}
	if err := m.Add(ctx, Export{ID: 2, Path: "/srv/a;", Pseudo: "/a"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("Add: %v", err)
	}
	if got := dirFiles(t, filepath.Join(dir, "exports")); len(got) != 0 {
		t.Errorf("exports dir: %v", got)
	}
	if len(bus.calls) != 1 {
		t.Errorf("invalid input reached D-Bus: %v", bus.calls)
	}
}

func TestManagerRemoveIsIdempotent(t *testing.T) {
	m, bus, dir := newTestManager(t)
	ctx := context.Background()
	if err := m.Add(ctx, Export{ID: 3, Path: "/srv/a", Pseudo: "/a"}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := m.Remove(ctx, 3); err != nil {
			t.Fatalf("Remove #%d: %v", i+1, err)
		}
	}
	if err := m.Remove(ctx, 4); err != nil {
		t.Errorf("Remove of an unknown id: %v", err)
	}
	if got := dirFiles(t, filepath.Join(dir, "exports")); len(got) != 0 {
		t.Errorf("exports dir: %v", got)
	}
	if len(bus.active) != 0 {
		t.Errorf("still active: %v", bus.active)
	}
	if err := m.Remove(ctx, 0); !errors.Is(err, ErrInvalid) {
		t.Errorf("Remove(0): %v", err)
	}
}

func TestManagerRemoveKeepsFileWhenBusFails(t *testing.T) {
	m, _, dir := newTestManager(t)
	ctx := context.Background()
	if err := m.Add(ctx, Export{ID: 3, Path: "/srv/a", Pseudo: "/a"}); err != nil {
		t.Fatal(err)
	}
	m.bus = failingBus{m.bus}
	if err := m.Remove(ctx, 3); !errors.Is(err, errInjected) {
		t.Errorf("Remove: %v", err)
	}
	if got := dirFiles(t, filepath.Join(dir, "exports")); !slices.Equal(got, []string{"3.conf"}) {
		t.Errorf("exports dir: %v", got)
	}
}

type failingBus struct{ exportBus }

func (failingBus) RemoveExport(context.Context, uint16) error { return errInjected }

func TestManagerListAndReload(t *testing.T) {
	m, bus, dir := newTestManager(t)
	ctx := context.Background()
	want := []Export{
		{ID: 2, Path: "/srv/b", Pseudo: "/b", Squash: AllSquash, Access: AccessRO},
		{ID: 1, Path: "/srv/a", Pseudo: "/a", Clients: []string{"10.0.0.0/8", "@ops"}, Protocols: []int{4}},
	}
	for _, e := range want {
		if err := m.Add(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	bus.active[77] = "/foreign"
	// A file that does not parse is ignored, not fatal.
	os.WriteFile(filepath.Join(dir, "exports", "50.conf"), []byte("EXPORT { bogus"), 0o644)
	m2, err := newExportManager(bus, dir)
	if err != nil {
		t.Fatal(err)
	}
	got, err := m2.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || !got[0].Equal(want[1]) || !got[1].Equal(want[0]) || got[2].ID != 77 || got[2].Path != "/foreign" {
		t.Errorf("List: %v", got)
	}
	inc, _ := os.ReadFile(filepath.Join(dir, "exports.conf"))
	if strings.Contains(string(inc), "50.conf") {
		t.Errorf("a broken file is included:\n%s", inc)
	}
}

// A second Add of a served CephFS export must not reach ganesha's
// AddExport: there FSAL_CEPH would mount the export again, and that
// mount's reclaim reset evicts the live export's CephFS session (seen on
// a real cluster: every request of the live export then failed with
// ESHUTDOWN until ganesha restarted).
func TestManagerNeverAddsServedRemoteExportAgain(t *testing.T) {
	m, bus, _ := newTestManager(t)
	ctx := context.Background()
	e := Export{ID: 7, Path: "/volumes/g/v/uuid", Pseudo: "/v",
		FSAL: FSAL{Name: FSALCeph, UserID: "g.v", Secret: "c2VjcmV0", Filesystem: "cephfs"}}
	for i := range 3 {
		if err := m.Add(ctx, e); err != nil {
			t.Fatalf("Add #%d: %v", i+1, err)
		}
	}
	adds := 0
	for _, c := range bus.calls {
		if c == "add 7" {
			adds++
		}
	}
	if adds != 1 {
		t.Errorf("AddExport called %d times for a served CephFS export, want once: %v", adds, bus.calls)
	}
	// A different export under the served ID is still a conflict.
	other := e
	other.Path = "/volumes/g/w/uuid"
	if err := m.Add(ctx, other); !errors.Is(err, ErrConflict) {
		t.Errorf("Add of another path under a served ID: %v, want ErrConflict", err)
	}
	// A local export keeps the one-call path: ganesha's VFS refuses a
	// served ID without side effects.
	l := Export{ID: 8, Path: "/srv/l", Pseudo: "/l"}
	for range 2 {
		if err := m.Add(ctx, l); err != nil {
			t.Fatal(err)
		}
	}
	if got := strings.Count(strings.Join(bus.calls, ","), "add 8"); got != 2 {
		t.Errorf("AddExport called %d times for a local export, want 2 (no lookup first): %v", got, bus.calls)
	}
}

// holdAdds makes every AddExport of bus wait until the returned release is
// called; started receives the ID of each call that reached the bus.
func holdAdds(bus *fakeBus) (started <-chan uint16, release func()) {
	bus.hold = make(chan struct{})
	bus.started = make(chan uint16, 16)
	return bus.started, func() { close(bus.hold) }
}

// addOnTheBus starts m.Add(e) and returns once its AddExport is on the bus,
// not answered until release is called; its result comes on addErr.
func addOnTheBus(ctx context.Context, m *ExportManager, bus *fakeBus, e Export) (release func(), addErr <-chan error) {
	started, release := holdAdds(bus)
	errs := make(chan error, 1)
	go func() { errs <- m.Add(ctx, e) }()
	<-started
	return release, errs
}

// The AddExports of different exports are on the bus together: what the
// lock serialised besides ganesha's work was each call's round trip.
func TestManagerAddsOfDifferentExportsOverlap(t *testing.T) {
	m, bus, dir := newTestManager(t)
	ctx := context.Background()
	started, release := holdAdds(bus)
	errs := make(chan error, 2)
	for _, id := range []uint16{5, 6} {
		go func() {
			errs <- m.Add(ctx, Export{ID: id, Path: "/srv/" + string(rune('a'+id)), Pseudo: "/" + string(rune('a'+id))})
		}()
	}
	// Both calls reach the bus before either is answered; with the lock
	// held across the call, the second would not.
	got := []uint16{<-started}
	select {
	case id := <-started:
		got = append(got, id)
	case <-time.After(10 * time.Second):
		t.Errorf("only export %d reached the bus; the other Add waits for its answer", got[0])
	}
	release()
	if len(got) == 1 {
		got = append(got, <-started)
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, []uint16{5, 6}) {
		t.Errorf("calls on the bus: %v", got)
	}
	if files := dirFiles(t, filepath.Join(dir, "exports")); !slices.Equal(files, []string{"5.conf", "6.conf"}) {
		t.Errorf("exports dir: %v", files)
	}
	inc, _ := os.ReadFile(filepath.Join(dir, "exports.conf"))
	if strings.Count(string(inc), "%include") != 2 {
		t.Errorf("exports.conf:\n%s", inc)
	}
}

// notBefore fails the test if op returns within a while: it should wait
// for the Add on the bus, which is not answered before the test says so.
// (Passing proves nothing on a slow machine; failing proves the wait is
// missing.)
func notBefore(t *testing.T, done chan error, op string) {
	t.Helper()
	select {
	case err := <-done:
		done <- err
		t.Errorf("%s returned (%v) while the Add it should wait for was on the bus", op, err)
	case <-time.After(200 * time.Millisecond):
	}
}

// A Remove waits for the Add of its export on the bus: else it would find
// nothing to remove, succeed, and leave the export served.
func TestManagerRemoveWaitsForAddOnTheBus(t *testing.T) {
	m, bus, dir := newTestManager(t)
	ctx := context.Background()
	release, addErr := addOnTheBus(ctx, m, bus, Export{ID: 5, Path: "/srv/a", Pseudo: "/a"})
	removed := make(chan error, 1)
	go func() { removed <- m.Remove(ctx, 5) }()
	notBefore(t, removed, "Remove")
	release()
	if err := <-addErr; err != nil {
		t.Fatal(err)
	}
	if err := <-removed; err != nil {
		t.Fatal(err)
	}
	if _, ok := bus.active[5]; ok {
		t.Errorf("export 5 is served after its Remove returned: %v", bus.calls)
	}
	if files := dirFiles(t, filepath.Join(dir, "exports")); len(files) != 0 {
		t.Errorf("exports dir after Remove: %v", files)
	}
}

// An Add of a pseudo path that an Add on the bus has waits for it, and is
// then refused: else both would be served, one hiding the other.
func TestManagerPseudoPathOfAddOnTheBusIsTaken(t *testing.T) {
	m, bus, _ := newTestManager(t)
	ctx := context.Background()
	release, addErr := addOnTheBus(ctx, m, bus, Export{ID: 5, Path: "/srv/a", Pseudo: "/a"})
	clash := make(chan error, 1)
	go func() { clash <- m.Add(ctx, Export{ID: 6, Path: "/srv/b", Pseudo: "/a"}) }()
	notBefore(t, clash, "Add of the same pseudo path")
	release()
	if err := <-addErr; err != nil {
		t.Fatal(err)
	}
	if err := <-clash; !errors.Is(err, ErrConflict) {
		t.Errorf("Add of a pseudo path being added under another ID: %v, want ErrConflict", err)
	}
	if _, ok := bus.active[6]; ok {
		t.Errorf("two exports serve pseudo path /a: %v", bus.calls)
	}
}

// An Update waits for the Add of its export on the bus: else it would find
// no file for it and refuse (ErrUnsupported) an export about to be served.
func TestManagerUpdateWaitsForAddOnTheBus(t *testing.T) {
	m, bus, _ := newTestManager(t)
	ctx := context.Background()
	a := Export{ID: 5, Path: "/srv/a", Pseudo: "/a"}
	release, addErr := addOnTheBus(ctx, m, bus, a)
	ro := a
	ro.Access = AccessRO
	updated := make(chan error, 1)
	go func() { updated <- m.Update(ctx, ro) }()
	notBefore(t, updated, "Update")
	release()
	if err := <-addErr; err != nil {
		t.Fatal(err)
	}
	if err := <-updated; err != nil {
		t.Errorf("Update of an export whose Add was on the bus: %v", err)
	}
}
