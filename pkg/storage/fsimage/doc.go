// Package fsimage keeps filesystem volumes (kinds storage.XFS and
// storage.Ext4): each volume is a sparse image file in the store, formatted
// with its own filesystem, attached to a loop device and mounted, so that a
// client reaches only its own volume's inodes (FSAL_VFS opens NFS handles
// with open_by_handle_at, which reaches any inode of the handle's
// filesystem) and cannot write past the volume's size.
//
// Layout (both directories 0700, root only, and never exported):
//
//	<ImageDir>/<name>              the image of volume <name>
//	<ImageDir>/archived-<name>[-<time>]  an archived image; never listed
//	<ImageDir>/.tmp-<random>       an image being made (Create, Clone)
//	<MountDir>/<name>              its mount point: exists only while the
//	                               volume is (or should be) mounted
//	<MountDir>/.tmp-<random>       a clone mounted once to replay its log
//
// Loop devices are global and outlive this process. They are attached with
// LOOP_CONFIGURE and LO_FLAGS_AUTOCLEAR, so that the kernel detaches them
// when the mount goes (and when a process dies between attaching and
// mounting), found again by their backing file's device and inode, and
// never attached twice. Mounts are found in /proc/self/mountinfo. After a
// restart or kill -9, New removes temporary images and mount points, and
// Open reuses what is attached and mounted, or checks (ext4: e2fsck -p;
// XFS: the mount replays the log) and mounts.
package fsimage
