package caplog

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestCapAndRotate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ganesha.log")
	l, err := Open(path, 100, 2)
	if err != nil {
		t.Fatal(err)
	}
	line := bytes.Repeat([]byte("x"), 39)
	line = append(line, '\n')
	for range 50 { // 2000 bytes through a 100-byte cap
		if n, err := l.Write(line); err != nil || n != len(line) {
			t.Fatalf("Write: %d %v", n, err)
		}
	}
	if _, err := l.Write(bytes.Repeat([]byte("y"), 500)); err != nil {
		t.Fatal(err)
	}
	l.Close()
	var total int64
	for _, name := range []string{"ganesha.log", "ganesha.log.1", "ganesha.log.2"} {
		fi, err := os.Stat(filepath.Join(filepath.Dir(path), name))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if fi.Size() > 100 {
			t.Fatalf("%s has %d bytes, over the cap", name, fi.Size())
		}
		total += fi.Size()
	}
	if _, err := os.Stat(path + ".3"); !os.IsNotExist(err) {
		t.Fatalf("more rotated files than kept: %v", err)
	}
	if total > 300 {
		t.Fatalf("%d bytes kept in all, want at most 300", total)
	}
	// Reopening appends within the cap.
	l, err = Open(path, 100, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := l.Write(line); err != nil {
		t.Fatal(err)
	}
}
