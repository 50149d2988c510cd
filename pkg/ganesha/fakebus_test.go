package ganesha

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
)

// fakeBus behaves like ganesha's export manager for the parts the
// ExportManager relies on: it parses the file it is given, refuses an active
// ID, and reports unknown IDs on removal.
type fakeBus struct {
	mu      sync.Mutex
	active  map[uint16]string // id -> path
	failAdd error             // returned by the next AddExport
	calls   []string
	// When hold is set, each AddExport sends its ID on started and waits
	// for hold before it takes effect: a call ganesha has not answered yet.
	hold    chan struct{}
	started chan uint16
}

func newFakeBus() *fakeBus { return &fakeBus{active: map[uint16]string{}} }

func (f *fakeBus) AddExport(_ context.Context, confFile string, id uint16) error {
	if f.hold != nil {
		f.started <- id
		<-f.hold
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf("add %d", id))
	if err := f.failAdd; err != nil {
		f.failAdd = nil
		return err
	}
	data, err := os.ReadFile(confFile)
	if err != nil {
		return err
	}
	e, err := exportFromConfig(data)
	if err != nil {
		return fmt.Errorf("InvalidFileContent: %w", err)
	}
	if e.ID != id {
		return fmt.Errorf("InvalidFileContent: 0 exports added")
	}
	if _, ok := f.active[id]; ok {
		return fmt.Errorf("AddExport: %w: Selected entries already active", errExportActive)
	}
	f.active[id] = e.Path
	return nil
}

func (f *fakeBus) RemoveExport(_ context.Context, id uint16) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf("remove %d", id))
	if _, ok := f.active[id]; !ok {
		return fmt.Errorf("RemoveExport: %w", errExportNotFound)
	}
	delete(f.active, id)
	return nil
}

func (f *fakeBus) UpdateExport(_ context.Context, confFile string, id uint16) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf("update %d", id))
	data, err := os.ReadFile(confFile)
	if err != nil {
		return err
	}
	e, err := exportFromConfig(data)
	if err != nil {
		return fmt.Errorf("InvalidFileContent: %w", err)
	}
	if path, ok := f.active[id]; !ok || path != e.Path {
		return fmt.Errorf("UpdateExport: %w", errExportNotFound)
	}
	return nil
}

func (f *fakeBus) ShowExports(context.Context) ([]activeExport, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := []activeExport{{ID: 0, Path: "/"}}
	for id, p := range f.active {
		out = append(out, activeExport{ID: id, Path: p})
	}
	return out, nil
}

var errInjected = errors.New("injected D-Bus failure")
