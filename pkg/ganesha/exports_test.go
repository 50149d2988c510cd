package ganesha

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
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
