package ganesha

import (
	"bytes"
	"crypto/rand"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nfs-provisioner/nfs-provisioner/test/nfsclient"
)

// TestExportIOCountsRealTraffic moves known bytes through real NFSv3 and
// NFSv4 clients on two exports and checks that ganesha's per-export
// statistics, read over D-Bus, attribute at least those bytes to the right
// export and nothing to the idle one; and that counting turned off by
// someone is turned back on.
func TestExportIOCountsRealTraffic(t *testing.T) {
	var mu sync.Mutex
	calls := map[string]int{}
	cfg := testConfig(t, t.TempDir(), true)
	cfg.BusObserver = func(method string, took time.Duration, err error) {
		mu.Lock()
		defer mu.Unlock()
		calls[method]++
	}
	s := startServer(t, cfg)
	ctx := testContext(t)
	root := t.TempDir()
	for id, name := range map[uint16]string{11: "busy", 12: "idle"} {
		if err := s.Exports().Add(ctx, Export{ID: id, Path: exportDir(t, root, name), Pseudo: "/" + name, Squash: NoRootSquash}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.EnableStats(ctx); err != nil {
		t.Fatal(err)
	}

	big := make([]byte, 3<<20+123)
	rand.Read(big)
	small := bytes.Repeat([]byte("v4"), 1000)
	v3, v4 := target(s, "/busy", 3), target(s, "/busy", 4)
	if err := nfsclient.WriteFile(ctx, v3, "big", big); err != nil {
		t.Fatal(err)
	}
	if err := nfsclient.WriteFile(ctx, v4, "small", small); err != nil {
		t.Fatal(err)
	}
	if got, err := nfsclient.ReadFile(ctx, v3, "big"); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("read back big: %d bytes, %v", len(got), err)
	}
	if got, err := nfsclient.ReadFile(ctx, v4, "small"); err != nil || !bytes.Equal(got, small) {
		t.Fatalf("read back small: %d bytes, %v", len(got), err)
	}

	ios, err := s.ExportIO(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	var busy *ExportIO
	for i := range ios {
		switch ios[i].ExportID {
		case 11:
			busy = &ios[i]
		case 12:
			t.Errorf("idle export has counts: %+v", ios[i])
		}
	}
	if busy == nil {
		t.Fatalf("no counts for export 11: %+v", ios)
	}
	wantW, wantR := uint64(len(big)+len(small)), uint64(len(big)+len(small))
	if busy.WriteBytes < wantW || busy.ReadBytes < wantR {
		t.Errorf("export 11: wrote %d read %d bytes, want at least %d and %d", busy.WriteBytes, busy.ReadBytes, wantW, wantR)
	}
	// Clients may read ahead or retry, but not move several times the data.
	if busy.WriteBytes > 2*wantW || busy.ReadBytes > 2*wantR {
		t.Errorf("export 11: wrote %d read %d bytes, far more than the %d and %d moved", busy.WriteBytes, busy.ReadBytes, wantW, wantR)
	}
	if busy.WriteOps < 2 || busy.ReadOps < 2 || busy.Ops < busy.ReadOps+busy.WriteOps {
		t.Errorf("export 11 operations: %+v", *busy)
	}
	t.Logf("export 11: %+v", *busy)

	// Someone turns counting off: the next read turns it on again, and
	// counting goes on from then.
	if _, err := s.bus.call(ctx, exportMgrPath, exportStatsIface+".DisableStats", "nfs"); err != nil {
		t.Fatal(err)
	}
	if on, err := s.bus.statsStatus(ctx); err != nil || on {
		t.Fatalf("after DisableStats: on=%v err=%v", on, err)
	}
	if _, err := s.ExportIO(ctx, false); err != nil {
		t.Fatal(err)
	}
	if on, err := s.bus.statsStatus(ctx); err != nil || !on {
		t.Fatalf("ExportIO did not turn counting back on: on=%v err=%v", on, err)
	}
	if err := nfsclient.WriteFile(ctx, v3, "again", small); err != nil {
		t.Fatal(err)
	}
	ios, err = s.ExportIO(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(ios) == 0 || ios[0].ExportID != 11 || ios[0].WriteBytes < uint64(len(small)) {
		t.Errorf("after re-enabling: %+v, want export 11 with at least %d bytes written", ios, len(small))
	}

	mu.Lock()
	defer mu.Unlock()
	for _, m := range []string{"GetNFSIO", "GetTotalOPS", "AddExport", "StatusStats"} {
		found := false
		for k, n := range calls {
			if strings.HasSuffix(k, "."+m) && n > 0 {
				found = true
			}
		}
		if !found {
			t.Errorf("BusObserver never told of %s: %v", m, calls)
		}
	}
}
