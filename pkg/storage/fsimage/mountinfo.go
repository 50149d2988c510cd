package fsimage

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// mountEntry is one line of /proc/self/mountinfo.
type mountEntry struct {
	Dev    uint64 // st_dev of the filesystem (major:minor)
	Point  string
	FSType string
	Source string
}

// mounts reads /proc/self/mountinfo: the mounts of this process's mount
// namespace, which is where ganesha serves from.
func mounts() ([]mountEntry, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	var out []mountEntry
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		e, ok := parseMountinfoLine(sc.Text())
		if ok {
			out = append(out, e)
		}
	}
	return out, sc.Err()
}

// parseMountinfoLine parses "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw".
func parseMountinfoLine(line string) (mountEntry, bool) {
	fields := strings.Fields(line)
	sep := -1
	for i, f := range fields {
		if f == "-" && i >= 6 {
			sep = i
			break
		}
	}
	if sep < 0 || len(fields) < sep+3 {
		return mountEntry{}, false
	}
	maj, min, ok := strings.Cut(fields[2], ":")
	if !ok {
		return mountEntry{}, false
	}
	ma, err1 := strconv.ParseUint(maj, 10, 32)
	mi, err2 := strconv.ParseUint(min, 10, 32)
	if err1 != nil || err2 != nil {
		return mountEntry{}, false
	}
	return mountEntry{
		Dev:    unix.Mkdev(uint32(ma), uint32(mi)),
		Point:  unescapeMountinfo(fields[4]),
		FSType: fields[sep+1],
		Source: unescapeMountinfo(fields[sep+2]),
	}, true
}

// unescapeMountinfo undoes the kernel's octal escapes (\040 for a space).
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// mountsAt returns the mounts whose mount point is path (stacked mounts
// give several).
func mountsAt(all []mountEntry, path string) []mountEntry {
	var out []mountEntry
	for _, m := range all {
		if m.Point == path {
			out = append(out, m)
		}
	}
	return out
}

// mountsOf returns the mounts of device dev.
func mountsOf(all []mountEntry, dev uint64) []mountEntry {
	var out []mountEntry
	for _, m := range all {
		if m.Dev == dev {
			out = append(out, m)
		}
	}
	return out
}
