package fsimage

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/storage"
)

// Capability numbers (linux/capability.h).
const (
	capSysAdmin    = 21
	capSysResource = 24
)

// hasCapability reports whether cap is in this process's effective set.
func hasCapability(cap uint) bool {
	eff, err := effectiveCaps()
	return err == nil && eff&(1<<cap) != 0
}

func effectiveCaps() (uint64, error) {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	return 0, errors.New("no CapEff in /proc/self/status")
}

// tools each kind runs.
var tools = map[storage.Kind][]string{
	storage.XFS:  {"mkfs.xfs", "xfs_growfs", "xfs_admin"},
	storage.Ext4: {"mkfs.ext4", "e2fsck", "resize2fs", "tune2fs"},
}

// toolPackage is the Debian package that ships each kind's tools.
var toolPackage = map[storage.Kind]string{storage.XFS: "xfsprogs", storage.Ext4: "e2fsprogs"}

// Available is nil when this node can make filesystem volumes: it needs
// CAP_SYS_ADMIN (loop devices, mount, FIFREEZE), /dev/loop-control, and the
// filesystems' tools. The error names everything that is missing.
func (b *Backend) Available() error {
	var missing []string
	if !hasCapability(capSysAdmin) {
		missing = append(missing, "capability CAP_SYS_ADMIN")
	}
	if f, err := os.OpenFile("/dev/loop-control", os.O_RDWR, 0); err != nil {
		missing = append(missing, fmt.Sprintf("/dev/loop-control (%v)", err))
	} else {
		f.Close()
	}
	for _, k := range b.opts.Kinds {
		var absent []string
		for _, t := range tools[k] {
			if _, err := exec.LookPath(t); err != nil {
				absent = append(absent, t)
			}
		}
		if len(absent) > 0 {
			missing = append(missing, fmt.Sprintf("%s (package %s)", strings.Join(absent, ", "), toolPackage[k]))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: filesystem volumes need %s", storage.ErrUnavailable, strings.Join(missing, "; "))
	}
	return nil
}
