package framework

import (
	"os"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// MountsUnder lists the mount points at or below dir in this process's mount
// namespace, deepest first.
func MountsUnder(dir string) ([]string, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			out = append(out, f[4])
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out, nil
}

// UnmountUnderOnCleanup unmounts, when the test ends, whatever a process the
// test started mounted below dir (a provisioner's filesystem volumes), even
// when the test failed; the loop devices behind them go with their last
// mount (they are attached with autoclear). Register it before the cleanup
// that stops that process, so it runs after it.
func UnmountUnderOnCleanup(t testing.TB, dir string) {
	t.Cleanup(func() {
		points, err := MountsUnder(dir)
		if err != nil {
			t.Errorf("list mounts under %s: %v", dir, err)
			return
		}
		for _, mp := range points {
			if err := unix.Unmount(mp, 0); err != nil {
				t.Errorf("unmount %s: %v", mp, err)
			}
		}
	})
}
