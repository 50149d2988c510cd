package fsimage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
)

// run runs a filesystem tool and returns its exit code; an error only when
// it could not run or ended with a code not in ok (0 is always ok). The
// error carries the tool's output, which says what was wrong.
func run(ctx context.Context, ok []int, name string, args ...string) (int, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		return -1, fmt.Errorf("%s: %w", name, err)
	}
	if code == 0 {
		return 0, nil
	}
	for _, c := range ok {
		if c == code {
			return code, nil
		}
	}
	return code, fmt.Errorf("%s %s: exit %d: %s", name, strings.Join(args, " "), code, strings.TrimSpace(out.String()))
}

// mkfs formats image as kind, with 4 KiB sectors and blocks: the loop
// device has 4 KiB logical blocks (see attachLoop), which a filesystem with
// 512-byte sectors cannot be mounted on. Both are made cheap: no discard (the image is
// a fresh sparse file, already zero), and ext4 leaves inode tables and the
// journal to be initialised lazily. ext4 reserves no blocks for root: the
// volume's whole size belongs to its users.
func mkfs(ctx context.Context, kind string, image string) error {
	switch kind {
	case "xfs":
		_, err := run(ctx, nil, "mkfs.xfs", "-q", "-f", "-K", "-s", "size=4096", image)
		return err
	case "ext4":
		_, err := run(ctx, nil, "mkfs.ext4", "-q", "-F", "-b", "4096", "-m", "0",
			"-E", "nodiscard,lazy_itable_init=1,lazy_journal_init=1", image)
		return err
	}
	return fmt.Errorf("mkfs: unknown kind %q", kind)
}

// e2fsckPreen checks an ext4 filesystem that is not mounted and repairs
// what is safe to repair without a person (-p). Exit 1 (errors corrected)
// and 2 (corrected, a reboot would be needed for a root filesystem) are
// fine for a filesystem we are about to mount; 4 and up mean it needs a
// person, and it is not mounted.
func e2fsckPreen(ctx context.Context, dev string, force bool) error {
	args := []string{"-p"}
	if force {
		args = append(args, "-f")
	}
	_, err := run(ctx, []int{1, 2}, "e2fsck", append(args, dev)...)
	return err
}
