// Package exepages gives back the executable's pages that start-up touched.
//
// A Go program's initialisation runs the init functions of every package it
// links (for the provisioner: every API group of client-go's scheme) and so
// touches megabytes of code and read-only data that it never touches again.
// The kernel keeps those file pages mapped, and counted in the process's
// RSS, until memory pressure reclaims them. Release drops the mappings at
// once; a page still needed comes back from the page cache on its next
// touch (a minor fault), exactly as after a reclaim.
package exepages

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// mapping is one line of /proc/self/smaps that maps the executable.
type mapping struct {
	start, end uintptr
	perms      string
	rss, anon  int64 // bytes
}

// Release drops this process's mappings of its executable's read-only
// segments (code and read-only data) and returns how many resident bytes
// they held.
//
// Only pages that are the file's own are dropped: a read-only mapping with
// private (copied) pages is left alone, and so is a position-independent
// executable, whose read-only segments the loader may have relocated in
// memory. Writable segments (data, bss) are never touched.
func Release() (int64, error) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0, fmt.Errorf("find the executable: %w", err)
	}
	if err := checkFixedAddress("/proc/self/exe"); err != nil {
		return 0, fmt.Errorf("%s: %w", exe, err)
	}
	maps, err := readMappings("/proc/self/smaps", exe)
	if err != nil {
		return 0, err
	}
	var released int64
	var errs []error
	for _, m := range maps {
		if !dropsSafely(m) {
			continue
		}
		// MADV_DONTNEED on a private file mapping that holds no copied
		// page unmaps the file's pages; the next touch maps them again.
		if _, _, e := unix.Syscall(unix.SYS_MADVISE, m.start, m.end-m.start, unix.MADV_DONTNEED); e != 0 {
			errs = append(errs, fmt.Errorf("madvise %x-%x: %w", m.start, m.end, e))
			continue
		}
		released += m.rss
	}
	return released, errors.Join(errs...)
}

// checkFixedAddress accepts only an ELF executable of type ET_EXEC, loaded
// at the addresses it was linked for: nothing in its read-only segments is
// relocated in memory. (The two header fields are read by hand: debug/elf
// would add 200 KB to a binary that is here to save memory.)
func checkFixedAddress(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("read the ELF header: %w", err)
	}
	defer f.Close()
	var h [18]byte
	if _, err := io.ReadFull(f, h[:]); err != nil {
		return fmt.Errorf("read the ELF header: %w", err)
	}
	if string(h[:4]) != "\x7fELF" || h[5] != 1 { // little-endian, as every target the image is built for
		return errors.New("not a little-endian ELF file")
	}
	const etExec = 2
	if t := binary.LittleEndian.Uint16(h[16:]); t != etExec {
		return fmt.Errorf("ELF type %d, not a fixed-address executable (%d): its read-only pages may differ from the file's", t, etExec)
	}
	return nil
}

// dropsSafely says whether m is a read-only private mapping whose pages
// are all the file's.
func dropsSafely(m mapping) bool {
	return len(m.perms) == 4 && m.perms[0] == 'r' && m.perms[1] == '-' && m.perms[3] == 'p' && m.anon == 0
}

// readMappings returns the mappings of path in an smaps file.
func readMappings(smaps, path string) ([]mapping, error) {
	f, err := os.Open(smaps)
	if err != nil {
		return nil, fmt.Errorf("read mappings: %w", err)
	}
	defer f.Close()
	var out []mapping
	var cur *mapping
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		if k := fields[0]; strings.HasSuffix(k, ":") {
			if cur == nil || len(fields) != 3 || fields[2] != "kB" {
				continue
			}
			kb, err := strconv.ParseInt(fields[1], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("read mappings: %q: %w", sc.Text(), err)
			}
			switch k {
			case "Rss:":
				cur.rss = kb << 10
			case "Anonymous:":
				cur.anon = kb << 10
			}
			continue
		}
		// A mapping's header: start-end perms offset dev inode [path].
		cur = nil
		if len(fields) < 6 || strings.Join(fields[5:], " ") != path {
			continue
		}
		lo, hi, ok := strings.Cut(fields[0], "-")
		if !ok {
			return nil, fmt.Errorf("read mappings: bad range %q", fields[0])
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("read mappings: bad range %q: %w", fields[0], err)
		}
		out = append(out, mapping{start: uintptr(start), end: uintptr(end), perms: fields[1]})
		cur = &out[len(out)-1]
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read mappings: %w", err)
	}
	return out, nil
}
