package framework

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// ProcessTree returns pid and all its descendants, parents before
// children, read from /proc at the time of the call.
func ProcessTree(pid int) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	children := map[int][]int{}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		f, err := statFields(p)
		if err != nil {
			continue // gone meanwhile
		}
		ppid, err := strconv.Atoi(f[1])
		if err != nil {
			continue
		}
		children[ppid] = append(children[ppid], p)
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
		return nil, fmt.Errorf("process %d: %w", pid, err)
	}
	tree := []int{pid}
	for i := 0; i < len(tree); i++ {
		tree = append(tree, children[tree[i]]...)
	}
	return tree, nil
}

// statFields are the fields of /proc/PID/stat after the command name,
// from field 3 (state) on: the name may hold spaces and parentheses, the
// fields after it do not.
func statFields(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, fmt.Errorf("stat of pid %d: %w", pid, err)
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return nil, fmt.Errorf("stat of pid %d: unexpected %q", pid, b)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 15 {
		return nil, fmt.Errorf("stat of pid %d: unexpected %q", pid, b)
	}
	return f, nil
}

// SignalTree sends sig to pid and every descendant, by PID: the whole of
// one replica (provisioner, ganesha, dbus-daemon, ceph-fuse), as a node
// failure or a frozen VM would hit it.
func SignalTree(pid int, sig syscall.Signal) ([]int, error) {
	tree, err := ProcessTree(pid)
	if err != nil {
		return nil, err
	}
	for _, p := range tree {
		if err := syscall.Kill(p, sig); err != nil && err != syscall.ESRCH {
			return tree, fmt.Errorf("signal %v to %d: %w", sig, p, err)
		}
	}
	return tree, nil
}
