package fscopy

import (
	"context"
	"fmt"

	"golang.org/x/sys/unix"
)

// chunk is the most one copy_file_range or pread/pwrite step moves: it bounds
// how long a cancellation waits and how stale progress gets.
const chunk = 8 << 20

// bufSize is the buffer of the pread/pwrite fallback.
const bufSize = 1 << 20

// copyContents gives the empty file dfd the contents of sfd, whose size was
// size when it was opened. It reflinks where the filesystem can, and copies
// the data extents otherwise. It reports whether it reflinked and how many
// bytes of data it wrote (0 for a reflink).
func copyContents(ctx context.Context, dfd, sfd int, size int64, p *progress) (reflinked bool, written int64, err error) {
	if err := ctx.Err(); err != nil {
		return false, 0, err
	}
	err = unix.IoctlFileClone(dfd, sfd)
	if err == nil {
		p.add(size)
		return true, 0, nil
	}
	if !cloneUnsupported(err) {
		return false, 0, fmt.Errorf("reflink (FICLONE): %w", err)
	}
	written, err = copySparse(ctx, dfd, sfd, size, p)
	return false, written, err
}

// cloneUnsupported tells the errors of FICLONE that mean "not here" (the
// filesystem cannot share extents, or the two files are on different
// filesystems) from real failures.
func cloneUnsupported(err error) bool {
	switch err {
	case unix.EOPNOTSUPP, unix.EXDEV, unix.EINVAL, unix.ENOTTY, unix.ENOSYS:
		return true
	}
	return false
}

// copyRangeUnsupported tells the errors of copy_file_range after which the
// pread/pwrite fallback is worth trying: old kernels, cross-filesystem copies
// the kernel refuses, and filesystems without support.
func copyRangeUnsupported(err error) bool {
	switch err {
	case unix.EXDEV, unix.EINVAL, unix.ENOSYS, unix.EOPNOTSUPP, unix.EBADF:
		return true
	}
	return false
}

// copySparse copies the data extents of sfd's first size bytes into dfd at the
// same offsets, skipping holes, into a dfd of the same size, so holes stay
// holes.
// Holes count as done for progress. A source that shrinks meanwhile (a live
// volume) is copied up to where its data ended; the result has the size seen
// at open.
func copySparse(ctx context.Context, dfd, sfd int, size int64, p *progress) (written int64, err error) {
	// Size first: writes below EOF keep XFS from preallocating past each
	// write's end, which would turn the holes between extents into
	// allocated (unwritten) blocks.
	if err := unix.Ftruncate(dfd, size); err != nil {
		return 0, fmt.Errorf("truncate to %d: %w", size, err)
	}
	useRange := true
	var buf []byte
	off := int64(0)
extents:
	for off < size {
		if err := ctx.Err(); err != nil {
			return written, err
		}
		data, err := unix.Seek(sfd, off, unix.SEEK_DATA)
		if err == unix.ENXIO {
			break // only a hole after off
		}
		if err != nil {
			return written, fmt.Errorf("seek data at %d: %w", off, err)
		}
		if data >= size {
			break
		}
		hole, err := unix.Seek(sfd, data, unix.SEEK_HOLE)
		if err != nil {
			return written, fmt.Errorf("seek hole at %d: %w", data, err)
		}
		hole = min(hole, size)
		p.add(data - off)
		off = data
		for off < hole {
			if err := ctx.Err(); err != nil {
				return written, err
			}
			n := int(min(hole-off, chunk))
			var w int
			if useRange {
				roff, woff := off, off
				w, err = unix.CopyFileRange(sfd, &roff, dfd, &woff, n, 0)
				if err != nil && copyRangeUnsupported(err) {
					// Nothing was copied (the call failed as a whole):
					// continue from off with pread/pwrite.
					useRange = false
					continue
				}
			} else {
				if buf == nil {
					buf = make([]byte, bufSize)
				}
				w, err = copyBuf(dfd, sfd, off, buf[:min(n, bufSize)])
			}
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				return written, fmt.Errorf("copy at %d: %w", off, err)
			}
			if w == 0 {
				// End of the source before size: it shrank under us.
				p.add(size - off)
				off = size
				break extents
			}
			off += int64(w)
			written += int64(w)
			p.add(int64(w))
		}
	}
	p.add(size - off)
	return written, nil
}

// copyBuf copies up to len(buf) bytes at off from sfd to dfd; 0 means the
// source ended.
func copyBuf(dfd, sfd int, off int64, buf []byte) (int, error) {
	n, err := unix.Pread(sfd, buf, off)
	if err != nil || n == 0 {
		return 0, err
	}
	for done := 0; done < n; {
		w, err := unix.Pwrite(dfd, buf[done:n], off+int64(done))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return done, err
		}
		done += w
	}
	return n, nil
}
