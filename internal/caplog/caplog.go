// Package caplog is a log file that cannot grow without bound: when a write
// would take it past its cap, it is renamed to <name>.1 (the older .1 to .2,
// and so on, up to Keep files) and a new one is started. The children the
// provisioner supervises write their logs through it, so a chatty or
// looping ganesha never fills the disk it serves from.
package caplog

import (
	"fmt"
	"os"
	"sync"
)

// File is a capped, rotated log file. It is safe for concurrent use.
type File struct {
	path string
	max  int64 // bytes per file
	keep int   // rotated files kept besides the current one

	mu   sync.Mutex
	f    *os.File
	size int64
}

// Open opens (appending to) the log at path, capped at max bytes per file,
// keeping keep rotated files.
func Open(path string, max int64, keep int) (*File, error) {
	if max <= 0 || keep < 0 {
		return nil, fmt.Errorf("caplog %s: cap %d or keep %d out of range", path, max, keep)
	}
	l := &File{path: path, max: max, keep: keep}
	if err := l.open(); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *File) open() error {
	f, err := os.OpenFile(l.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open log: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("open log: %w", err)
	}
	l.f, l.size = f, fi.Size()
	return nil
}

// Write appends p, rotating first when p would pass the cap. A single write
// larger than the cap is cut to it: a log line that long is noise.
func (l *File) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(p)
	if int64(len(p)) > l.max {
		p = p[:l.max]
	}
	if l.size+int64(len(p)) > l.max {
		if err := l.rotate(); err != nil {
			return 0, err
		}
	}
	w, err := l.f.Write(p)
	l.size += int64(w)
	if err != nil {
		return w, err
	}
	return n, nil
}

func (l *File) rotate() error {
	if err := l.f.Close(); err != nil {
		return err
	}
	if l.keep == 0 {
		if err := os.Remove(l.path); err != nil && !os.IsNotExist(err) {
			return err
		}
	}
	for i := l.keep; i >= 1; i-- {
		from := l.path
		if i > 1 {
			from = fmt.Sprintf("%s.%d", l.path, i-1)
		}
		if err := os.Rename(from, fmt.Sprintf("%s.%d", l.path, i)); err != nil && !os.IsNotExist(err) {
			return err
		}
	}
	return l.open()
}

// Close closes the current file.
func (l *File) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Close()
}
