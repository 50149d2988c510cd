package framework

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Memory is a process's memory as /proc/PID/status reports it, in bytes.
// RSS is Anon + File + Shmem: Anon is the heap, stacks and the runtime's
// own memory (what GOMEMLIMIT governs in a Go program); File is the pages
// of the mapped executable and libraries, clean and shared with the page
// cache, which the kernel reclaims under pressure.
type Memory struct {
	RSS, PeakRSS, Anon, File int64
}

// MemoryOf reads the memory of process pid.
func MemoryOf(pid int) (Memory, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return Memory{}, fmt.Errorf("memory of pid %d: %w", pid, err)
	}
	var m Memory
	fields := map[string]*int64{"VmRSS:": &m.RSS, "VmHWM:": &m.PeakRSS, "RssAnon:": &m.Anon, "RssFile:": &m.File}
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 || f[2] != "kB" {
			continue
		}
		if dst, ok := fields[f[0]]; ok {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return Memory{}, fmt.Errorf("memory of pid %d: parse %q: %w", pid, line, err)
			}
			*dst = kb * 1024
		}
	}
	if m.RSS == 0 {
		return Memory{}, fmt.Errorf("memory of pid %d: no VmRSS in its status", pid)
	}
	return m, nil
}

// ChildNamed returns the PID of a direct child of pid whose command name
// (/proc/PID/comm, at most 15 characters) is comm.
func ChildNamed(pid int, comm string) (int, error) {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return 0, fmt.Errorf("children of pid %d: %w", pid, err)
	}
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, t.Name()))
		if err != nil {
			continue // the thread ended meanwhile
		}
		for _, c := range strings.Fields(string(b)) {
			name, err := os.ReadFile("/proc/" + c + "/comm")
			if err == nil && strings.TrimSpace(string(name)) == comm {
				return strconv.Atoi(c)
			}
		}
	}
	return 0, fmt.Errorf("pid %d has no child named %q", pid, comm)
}
