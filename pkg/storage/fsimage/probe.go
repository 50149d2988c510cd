package fsimage

import (
	"context"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
)

// probeRanges are the parts of a device that libblkid reads when it probes
// for a filesystem UUID, in 4 KiB pages: a negative first page counts from
// the device's end. Measured with strace on libblkid 2.38 (Debian
// bookworm, ganesha's) for XFS and ext4 of 300 MiB to 5 GiB: 261 pages,
// always these. TestWarmProbeCoversLibblkid fails when a libblkid reads
// others.
var probeRanges = []struct{ first, pages int64 }{
	{0, 129},    // superblocks, and ZFS's first two labels
	{256, 1},    // 1 MiB
	{512, 1},    // 2 MiB
	{1024, 1},   // 4 MiB
	{-386, 1},   // one page near the end, for some signature
	{-128, 128}, // ZFS's last two labels, signatures in the last sectors
}

const pageSize = 4096

// warmProbe reads, on the provisioning worker, what the NFS server will
// read when the new filesystem on fresh loop device dev is exported.
//
// ganesha identifies each filesystem it exports by its UUID, which it asks
// libblkid for when it first sees the filesystem: a full probe of the
// device, some 45 reads. It makes them while handling the AddExport, on the
// one thread that answers every D-Bus call, so the adds of a burst of
// claims wait for each other's probes; and each read of a fresh loop device
// goes through the loop driver's worker to the image, which on a busy node
// made an add about a third longer. Read here first (six reads, 1 MiB),
// those pages are in the device's page cache when ganesha asks for them.
// (A probe run by exec'ing blkid covered them as well, and cost more than it
// saved.) Best effort: what is not cached here, ganesha reads itself.
func warmProbe(ctx context.Context, dev *os.File) {
	if err := readProbeRanges(dev); err != nil {
		klog.FromContext(ctx).V(4).Info("Could not read ahead what the NFS server probes; it reads it itself", "device", dev.Name(), "err", err)
	}
}

func readProbeRanges(dev *os.File) error {
	size, err := dev.Seek(0, 2)
	if err != nil {
		return fmt.Errorf("size of %s: %w", dev.Name(), err)
	}
	fd := int(dev.Fd())
	// Only these pages: without this, readahead reads up to 128 KiB more
	// around each of them.
	if err := unix.Fadvise(fd, 0, 0, unix.FADV_RANDOM); err != nil {
		return fmt.Errorf("fadvise %s: %w", dev.Name(), err)
	}
	buf := make([]byte, 129*pageSize)
	for _, r := range probeRanges {
		off := r.first * pageSize
		if r.first < 0 {
			off += size &^ (pageSize - 1)
		}
		n := min(r.pages*pageSize, size-off)
		if off < 0 || n <= 0 {
			continue
		}
		if _, err := unix.Pread(fd, buf[:n], off); err != nil {
			return fmt.Errorf("read %s at %d: %w", dev.Name(), off, err)
		}
	}
	return nil
}
