// Package fscopy copies volume data for clones: one image file (CopyFile) for
// filesystem volumes, or a whole directory tree (CopyTree) for directory
// volumes.
//
// Both reflink (FICLONE) a regular file when source and destination share a
// filesystem that can, and otherwise copy it sparse-aware: only the data
// extents found with SEEK_DATA/SEEK_HOLE are copied (copy_file_range, or
// pread/pwrite where the kernel refuses), so holes stay holes.
//
// Neither follows a symbolic link inside the source: entries are reached with
// *at system calls relative to directory descriptors, directories are opened
// with O_NOFOLLOW, and a regular file is first opened with O_PATH|O_NOFOLLOW,
// checked with fstat and only then reopened for reading through
// /proc/self/fd, so an entry swapped for a symlink, a FIFO or a device node
// after it was listed is never followed, blocked on, or opened.
//
// A copy of a live source is not crash-consistent: files that change while the
// copy runs are copied as they are seen, each at a different moment. Callers
// that need a consistent image freeze the source first (filesystem volumes:
// FIFREEZE) or document that they do not (directory volumes).
package fscopy
