package ganesha

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// ganesha 4.3 counts NFS traffic per export and protocol version and offers
// it on the ExportMgr object, interface org.ganesha.nfsd.exportstats. The
// method names and reply signatures below were read from the introspection
// data of Debian's ganesha.nfsd 4.3 and checked with real traffic:
//
//	StatusStats() -> b status, s error, b(tt) nfs, b(tt) fsal, ...
//	EnableStats(s "nfs") -> b status, s error, (tt) time
//	GetNFSIO() -> b status, s error, (tt) time,
//	              a(qs(tttttt)(tttttt)): export id, "NFSv3"/"NFSv40"/..., read, write
//	GetTotalOPS(q id) -> b status, s error, (tt) time, (stst...): version, operations
//
// An io tuple is (requested bytes, transferred bytes, operations, errors,
// latency ns, queue wait). GetNFSIO lists one entry per export and version
// that has seen traffic since ganesha started, in one call whatever the
// number of exports. GetTotalOPS counts every NFS operation of one export
// (NFSv4: each operation of a COMPOUND); it answers status false, "Export
// does not have any activity", for an export no client has used yet.
// ganesha's Enable_NFSStats is on by default, so EnableStats is needed only
// when someone turned it off; when off, GetNFSIO still answers status true,
// with the text "NFS stat counting disabled".
const (
	exportStatsIface   = "org.ganesha.nfsd.exportstats"
	statsDisabledReply = "NFS stat counting disabled"
	noActivityReply    = "does not have any activity"
)

// BusObserver is told of one D-Bus call to ganesha: the method (interface
// and member), how long the call took, and its error (nil on success). It
// must be cheap and must not block.
type BusObserver func(method string, took time.Duration, err error)

// ExportIO is the NFS traffic ganesha counted for one export since it
// started, all protocol versions together. Counters start again from 0 when
// ganesha restarts.
type ExportIO struct {
	ExportID   uint16
	ReadBytes  uint64 // bytes sent to clients by READ
	WriteBytes uint64 // bytes received from clients by WRITE
	ReadOps    uint64
	WriteOps   uint64
	// Ops counts every NFS operation on the export, READ and WRITE
	// included; 0 unless asked for (one extra D-Bus call per export).
	Ops uint64
}

type ioTuple struct {
	Requested, Transferred, Total, Errors, Latency, QueueWait uint64
}

type nfsIOEntry struct {
	ID      uint16
	Version string
	Read    ioTuple
	Write   ioTuple
}

type timestamp struct{ Sec, Nsec uint64 }

// statsStatus reports whether ganesha counts NFS statistics now.
func (b *busClient) statsStatus(ctx context.Context) (bool, error) {
	call, err := b.call(ctx, exportMgrPath, exportStatsIface+".StatusStats")
	if err != nil {
		return false, err
	}
	if len(call.Body) < 3 {
		return false, fmt.Errorf("StatusStats: reply has %d values, want at least 3", len(call.Body))
	}
	nfs, ok := call.Body[2].([]any)
	if !ok || len(nfs) == 0 {
		return false, fmt.Errorf("StatusStats: unexpected NFS status %T", call.Body[2])
	}
	on, ok := nfs[0].(bool)
	if !ok {
		return false, fmt.Errorf("StatusStats: unexpected NFS status %T", nfs[0])
	}
	return on, nil
}

func (b *busClient) enableNFSStats(ctx context.Context) error {
	call, err := b.call(ctx, exportMgrPath, exportStatsIface+".EnableStats", "nfs")
	if err != nil {
		return err
	}
	var ok bool
	var msg string
	if err := call.Store(&ok, &msg); err != nil && len(call.Body) >= 2 {
		ok, _ = call.Body[0].(bool)
		msg, _ = call.Body[1].(string)
	}
	if !ok {
		return fmt.Errorf("EnableStats(nfs): %s", msg)
	}
	return nil
}

// nfsIO returns GetNFSIO's entries and whether counting is on.
func (b *busClient) nfsIO(ctx context.Context) ([]nfsIOEntry, bool, error) {
	call, err := b.call(ctx, exportMgrPath, exportStatsIface+".GetNFSIO")
	if err != nil {
		return nil, false, err
	}
	var (
		ok      bool
		msg     string
		ts      timestamp
		entries []nfsIOEntry
	)
	if err := call.Store(&ok, &msg, &ts, &entries); err != nil {
		return nil, false, fmt.Errorf("GetNFSIO: unexpected reply: %w", err)
	}
	if !ok {
		return nil, false, fmt.Errorf("GetNFSIO: %s", msg)
	}
	return entries, !strings.Contains(msg, statsDisabledReply), nil
}

// totalOps sums GetTotalOPS of export id over all protocol versions.
func (b *busClient) totalOps(ctx context.Context, id uint16) (uint64, error) {
	call, err := b.call(ctx, exportMgrPath, exportStatsIface+".GetTotalOPS", id)
	if err != nil {
		return 0, err
	}
	if len(call.Body) < 2 {
		return 0, fmt.Errorf("GetTotalOPS(%d): reply has %d values", id, len(call.Body))
	}
	if ok, _ := call.Body[0].(bool); !ok {
		msg, _ := call.Body[1].(string)
		if strings.Contains(msg, noActivityReply) {
			return 0, nil
		}
		return 0, fmt.Errorf("GetTotalOPS(%d): %s", id, msg)
	}
	if len(call.Body) < 4 {
		return 0, fmt.Errorf("GetTotalOPS(%d): reply has %d values, want 4", id, len(call.Body))
	}
	// Declared a(st) in the introspection data, sent as one struct of
	// alternating version names and counts: decode either.
	var sum uint64
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case uint64:
			sum += x
		case []any:
			for _, e := range x {
				walk(e)
			}
		case [][]any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(call.Body[3])
	return sum, nil
}

// EnableStats makes sure ganesha counts NFS statistics per export: they are
// on by default, and this turns them back on if someone turned them off.
func (s *Server) EnableStats(ctx context.Context) error {
	on, err := s.bus.statsStatus(ctx)
	if err != nil {
		return err
	}
	if on {
		return nil
	}
	return s.bus.enableNFSStats(ctx)
}

// ExportIO returns the traffic of every export that has seen any, sorted by
// export ID. With ops it also counts all operations per export, at one more
// D-Bus call per active export. When counting was found off it is turned
// on, and the counts start from then.
func (s *Server) ExportIO(ctx context.Context, ops bool) ([]ExportIO, error) {
	entries, on, err := s.bus.nfsIO(ctx)
	if err != nil {
		return nil, err
	}
	if !on {
		if err := s.bus.enableNFSStats(ctx); err != nil {
			return nil, fmt.Errorf("NFS statistics are off and could not be turned on: %w", err)
		}
	}
	byID := map[uint16]*ExportIO{}
	for _, e := range entries {
		if e.ID == 0 {
			continue // the NFSv4 pseudo root, no volume of ours
		}
		io := byID[e.ID]
		if io == nil {
			io = &ExportIO{ExportID: e.ID}
			byID[e.ID] = io
		}
		io.ReadBytes += e.Read.Transferred
		io.WriteBytes += e.Write.Transferred
		io.ReadOps += e.Read.Total
		io.WriteOps += e.Write.Total
	}
	out := make([]ExportIO, 0, len(byID))
	for _, io := range byID {
		if ops {
			n, err := s.bus.totalOps(ctx, io.ExportID)
			if err != nil {
				return nil, err
			}
			io.Ops = n
		}
		out = append(out, *io)
	}
	slices.SortFunc(out, func(a, b ExportIO) int { return int(a.ExportID) - int(b.ExportID) })
	return out, nil
}
