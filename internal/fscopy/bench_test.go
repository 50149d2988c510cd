package fscopy

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkCopyFile copies a 1 GiB sparse image holding 100 MiB of data (25
// extents of 4 MiB spread over the file): sparse copy on the host disk and on
// ext4, reflink on XFS. The source stays in the page cache between
// iterations, so the copy figures are for cached reads.
func BenchmarkCopyFile(b *testing.B) {
	const size, extents, extentLen = 1 << 30, 25, 4 << 20
	var layout []extent
	for i := range extents {
		layout = append(layout, extent{int64(i) * (size / extents), extentLen})
	}
	const data = extents * extentLen
	for _, tc := range []struct{ name, fs string }{
		{"host-disk", ""},
		{"ext4", "ext4"},
		{"xfs-reflink", "xfs"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			dir := b.TempDir()
			if tc.fs != "" {
				dir = mountFS(b, tc.fs, 1200)
			}
			src := filepath.Join(dir, "src")
			writeSparse(b, src, size, layout)
			var reflinked bool
			i := 0
			for b.Loop() {
				dst := filepath.Join(dir, fmt.Sprint("dst", i))
				i++
				var err error
				reflinked, err = CopyFile(context.Background(), dst, src, nil)
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if err := os.Remove(dst); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			sec := b.Elapsed().Seconds() / float64(b.N)
			b.ReportMetric(float64(data)/1e6/sec, "dataMB/s")
			b.ReportMetric(float64(size)/1e6/sec, "imageMB/s")
			if want := tc.fs == "xfs"; reflinked != want {
				b.Fatalf("reflinked = %v, want %v", reflinked, want)
			}
		})
	}
}
