package framework

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// CPUOf is the CPU time process pid has used (user and system), from
// /proc/PID/stat.
func CPUOf(pid int) (time.Duration, error) {
	f, err := statFields(pid)
	if err != nil {
		return 0, err
	}
	return ticksOf(fmt.Sprintf("cpu of pid %d", pid), f[11:13]) // utime and stime, fields 14 and 15
}

// TreeCPUOf is the CPU time of pid and its live descendants, each with the
// children it has reaped (cutime and cstime): a provisioner's, its
// ganesha's, and that of every mkfs either waited for.
func TreeCPUOf(pid int) (time.Duration, error) {
	tree, err := ProcessTree(pid)
	if err != nil {
		return 0, err
	}
	var sum time.Duration
	for _, p := range tree {
		f, err := statFields(p)
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
			continue // ended meanwhile
		}
		if err != nil {
			return 0, err
		}
		d, err := ticksOf(fmt.Sprintf("cpu of pid %d", p), f[11:15]) // utime, stime, cutime, cstime
		if err != nil {
			return 0, err
		}
		sum += d
	}
	return sum, nil
}

// ticksOf sums clock ticks, read for what; USER_HZ is 100 on every Linux
// architecture Go supports.
func ticksOf(what string, fields []string) (time.Duration, error) {
	var ticks int64
	for _, s := range fields {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", what, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * (time.Second / 100), nil
}

// MachineCPU is the CPU time the machine's online CPUs have spent busy
// since boot (every state of /proc/stat's cpu line but idle and iowait),
// and how many CPUs that line adds up: all of the machine's, which a
// process confined to some of them (taskset, a cpuset) would not count
// with runtime.NumCPU.
func MachineCPU() (busy time.Duration, cpus int, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, fmt.Errorf("machine cpu: %w", err)
	}
	lines := strings.Split(string(b), "\n")
	f := strings.Fields(lines[0])
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("machine cpu: unexpected first line of /proc/stat %q", lines[0])
	}
	for _, l := range lines[1:] {
		if strings.HasPrefix(l, "cpu") {
			cpus++
		}
	}
	// user nice system idle iowait irq softirq steal (guest times are
	// within user and nice already).
	busy, err = ticksOf("machine cpu", append(append([]string{}, f[1:4]...), f[6:9]...))
	return busy, cpus, err
}

// CPU is the CPU time the control plane's processes (etcd, kube-apiserver,
// kube-controller-manager) have used so far.
func (c *Cluster) CPU() (time.Duration, error) {
	var sum time.Duration
	for _, p := range []*Process{c.etcd, c.apiserver, c.kcm} {
		d, err := CPUOf(p.PID())
		if err != nil {
			return 0, err
		}
		sum += d
	}
	return sum, nil
}
