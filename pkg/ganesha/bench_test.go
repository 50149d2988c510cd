package ganesha

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Benchmarks against the real ganesha.nfsd. Run:
//
//	go test -run '^$' -bench . -benchtime 1x ./pkg/ganesha/
//
// Targets (issue 3): 1000 adds within 2 s; start-up with 1000 exports
// within 1 s. Nothing here asserts a time.

const benchExports = 1000

func benchExport(root string, id int) Export {
	return Export{ID: uint16(id), Path: filepath.Join(root, "data", strconv.Itoa(id)), Pseudo: fmt.Sprintf("/b%d", id), Squash: NoRootSquash}
}

func makeBenchDirs(b *testing.B, root string, n int) {
	b.Helper()
	for id := 1; id <= n; id++ {
		if err := os.MkdirAll(benchExport(root, id).Path, 0o777); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAddRemove(b *testing.B) {
	root := b.TempDir()
	s := startServer(b, testConfig(b, filepath.Join(root, "state"), false))
	makeBenchDirs(b, root, 1)
	ctx := context.Background()
	e := benchExport(root, 1)
	for b.Loop() {
		if err := s.Exports().Add(ctx, e); err != nil {
			b.Fatal(err)
		}
		if err := s.Exports().Remove(ctx, e.ID); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAdd1000(b *testing.B) {
	root := b.TempDir()
	s := startServer(b, testConfig(b, filepath.Join(root, "state"), false))
	makeBenchDirs(b, root, benchExports)
	ctx := context.Background()
	var total time.Duration
	for b.Loop() {
		t0 := time.Now()
		for id := 1; id <= benchExports; id++ {
			if err := s.Exports().Add(ctx, benchExport(root, id)); err != nil {
				b.Fatal(err)
			}
		}
		total += time.Since(t0)
		b.StopTimer()
		for id := 1; id <= benchExports; id++ {
			if err := s.Exports().Remove(ctx, uint16(id)); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "s/1000adds")
}

// stateWith1000 prepares a state dir whose config holds 1000 exports.
func stateWith1000(b *testing.B) (Config, string) {
	root := b.TempDir()
	cfg := testConfig(b, filepath.Join(root, "state"), false)
	makeBenchDirs(b, root, benchExports)
	s := startServer(b, cfg)
	ctx := context.Background()
	for id := 1; id <= benchExports; id++ {
		if err := s.Exports().Add(ctx, benchExport(root, id)); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.Stop(ctx); err != nil {
		b.Fatal(err)
	}
	return cfg, root
}

func BenchmarkStartup1000(b *testing.B) {
	needGanesha(b)
	cfg, _ := stateWith1000(b)
	ctx := context.Background()
	var total time.Duration
	for b.Loop() {
		s, err := NewServer(cfg)
		if err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		if err := s.Start(ctx); err != nil {
			b.Fatal(err)
		}
		total += time.Since(t0)
		b.StopTimer()
		list, err := s.Exports().List(ctx)
		if err != nil || len(list) != benchExports {
			b.Fatalf("after start: %d exports, %v", len(list), err)
		}
		if err := s.Stop(ctx); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "s/start")
}

func BenchmarkRSS1000(b *testing.B) {
	needGanesha(b)
	cfg, _ := stateWith1000(b)
	ctx := context.Background()
	for b.Loop() {
		s, err := NewServer(cfg)
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Start(ctx); err != nil {
			b.Fatal(err)
		}
		rss, err := vmRSSKiB(s.GaneshaPID())
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(rss)/1024, "MiB-RSS")
		if err := s.Stop(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

func vmRSSKiB(pid int) (int, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			return strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", pid)
}
