package ganesha

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/godbus/dbus/v5"
)

const (
	ganeshaBusName   = "org.ganesha.nfsd"
	exportMgrPath    = "/org/ganesha/nfsd/ExportMgr"
	exportMgrIface   = "org.ganesha.nfsd.exportmgr"
	adminPath        = "/org/ganesha/nfsd/admin"
	adminIface       = "org.ganesha.nfsd.admin"
	exportIDSelector = "EXPORT(Export_Id=%d)"
)

// Errors of the export bus that the manager's idempotency relies on.
var (
	errExportActive   = errors.New("export already active")
	errExportNotFound = errors.New("export id not found")
)

// activeExport is what ganesha reports about a live export.
type activeExport struct {
	ID   uint16
	Path string
}

// exportBus is the part of ganesha's D-Bus API the export manager needs.
// It is an interface so that idempotency and conflict handling can be unit
// tested without a ganesha.
type exportBus interface {
	AddExport(ctx context.Context, confFile string, id uint16) error
	RemoveExport(ctx context.Context, id uint16) error
	UpdateExport(ctx context.Context, confFile string, id uint16) error
	ShowExports(ctx context.Context) ([]activeExport, error)
}

// busClient talks to ganesha over one private bus connection.
type busClient struct {
	address string
	// observe, when set, is told every call's method, duration and error
	// (for the D-Bus latency histogram); it must not block.
	observe BusObserver

	mu   sync.Mutex
	conn *dbus.Conn
}

func newBusClient(address string) *busClient { return &busClient{address: address} }

// connection returns the current connection, dialling if there is none or it
// broke (the dbus-daemon was restarted).
func (b *busClient) connection() (*dbus.Conn, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.conn != nil && b.conn.Connected() {
		return b.conn, nil
	}
	if b.conn != nil {
		b.conn.Close()
		b.conn = nil
	}
	// Connect, not ConnectSystemBus: the address is ours, never the host's bus.
	conn, err := dbus.Connect(b.address)
	if err != nil {
		return nil, fmt.Errorf("connect to D-Bus %s: %w", b.address, err)
	}
	b.conn = conn
	return conn, nil
}

func (b *busClient) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.conn == nil {
		return nil
	}
	err := b.conn.Close()
	b.conn = nil
	return err
}

// callTimeout bounds every D-Bus call, so a hung ganesha cannot hold a
// provisioning worker for ever. AddExport of a new filesystem takes
// milliseconds; seconds mean ganesha is stuck.
const callTimeout = 30 * time.Second

func (b *busClient) call(ctx context.Context, path dbus.ObjectPath, method string, args ...any) (*dbus.Call, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	conn, err := b.connection()
	if err != nil {
		return nil, err
	}
	start := time.Now()
	call := conn.Object(ganeshaBusName, path).CallWithContext(ctx, method, 0, args...)
	if b.observe != nil {
		b.observe(method, time.Since(start), call.Err)
	}
	if call.Err != nil {
		return nil, classifyBusError(method, call.Err)
	}
	return call, nil
}

// classifyBusError maps ganesha's error texts (measured on 4.3) to sentinels.
func classifyBusError(method string, err error) error {
	text := err.Error()
	var de dbus.Error
	if errors.As(err, &de) {
		text = de.Name + ": " + fmt.Sprint(de.Body...)
	}
	switch {
	case strings.Contains(text, "already active"):
		return fmt.Errorf("%s: %w: %s", method, errExportActive, text)
	case strings.Contains(text, "Export id not found"):
		return fmt.Errorf("%s: %w: %s", method, errExportNotFound, text)
	}
	return fmt.Errorf("%s: %s", method, text)
}

func (b *busClient) AddExport(ctx context.Context, confFile string, id uint16) error {
	_, err := b.call(ctx, exportMgrPath, exportMgrIface+".AddExport", confFile, fmt.Sprintf(exportIDSelector, id))
	return err
}

// UpdateExport re-reads the export's block from confFile and applies its
// options (clients, squash, access) to the live export without removing it.
func (b *busClient) UpdateExport(ctx context.Context, confFile string, id uint16) error {
	_, err := b.call(ctx, exportMgrPath, exportMgrIface+".UpdateExport", confFile, fmt.Sprintf(exportIDSelector, id))
	return err
}

func (b *busClient) RemoveExport(ctx context.Context, id uint16) error {
	_, err := b.call(ctx, exportMgrPath, exportMgrIface+".RemoveExport", id)
	return err
}

// ShowExports decodes only id and path: the tuple of protocol flags that
// follows differs between ganesha releases.
func (b *busClient) ShowExports(ctx context.Context) ([]activeExport, error) {
	call, err := b.call(ctx, exportMgrPath, exportMgrIface+".ShowExports")
	if err != nil {
		return nil, err
	}
	if len(call.Body) < 2 {
		return nil, fmt.Errorf("ShowExports: reply has %d values, want 2", len(call.Body))
	}
	list, ok := call.Body[1].([][]any)
	if !ok {
		return nil, fmt.Errorf("ShowExports: unexpected reply type %T", call.Body[1])
	}
	out := make([]activeExport, 0, len(list))
	for _, entry := range list {
		if len(entry) < 2 {
			continue
		}
		id, ok1 := entry[0].(uint16)
		path, ok2 := entry[1].(string)
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("ShowExports: unexpected entry types %T, %T", entry[0], entry[1])
		}
		out = append(out, activeExport{ID: id, Path: path})
	}
	return out, nil
}

// Shutdown asks ganesha to exit cleanly.
func (b *busClient) Shutdown(ctx context.Context) error {
	_, err := b.call(ctx, adminPath, adminIface+".shutdown")
	return err
}
