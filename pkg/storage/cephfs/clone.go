package cephfs

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/klog/v2"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/storage"
)

// Clone makes dst from a snapshot of src (`subvolume snapshot clone`): the
// snapshot is a point in time of the whole volume, so the clone is
// consistent while src stays served. The mgr copies in the background;
// Clone waits for it, then removes the snapshot, grows dst to dst.Size
// when that is more than src's quota, and gives dst its identity.
//
// When ctx ends first, the copy goes on and nothing is undone: a repeated
// call (the library retries a provision that timed out) waits for the same
// copy, and Remove cancels it if the claim goes away. A clone the mgr
// reports failed is removed, with its snapshot. dst keeps the owner and
// mode of src's root: a clone is of the same class, whose parameters cannot
// change.
//
// The mgr of Ceph 16 reports no progress of a copy; progress is told at the
// start (0 of the bytes src holds) and at the end.
func (b *Backend) Clone(ctx context.Context, src string, dst storage.Spec, progress storage.Progress) (storage.Volume, bool, error) {
	if err := checkName(src); err != nil {
		return storage.Volume{}, false, err
	}
	if err := b.checkSpec(dst); err != nil {
		return storage.Volume{}, false, err
	}
	if src == dst.Name {
		return storage.Volume{}, false, fmt.Errorf("clone %s onto itself", src)
	}
	defer b.locks.LockPair(src, dst.Name)()
	if progress == nil {
		progress = func(int64, int64) {}
	}
	info, err := b.info(ctx, dst.Name)
	switch {
	case err == nil: // made by an earlier call
		return b.finishClone(ctx, src, dst, info, false)
	case is(err, syscall.EAGAIN): // an earlier call's copy is still going on
		return b.awaitClone(ctx, src, dst, false, 0, progress)
	case !is(err, syscall.ENOENT):
		return storage.Volume{}, false, fmt.Errorf("clone to CephFS volume %s: %w", dst.Name, err)
	}
	srcInfo, err := b.info(ctx, src)
	if is(err, syscall.ENOENT) {
		return storage.Volume{}, false, fmt.Errorf("clone source CephFS volume %s: %w", src, storage.ErrNotFound)
	}
	if err != nil {
		return storage.Volume{}, false, fmt.Errorf("clone source CephFS volume %s: %w", src, err)
	}
	if srcInfo.State != cloneComplete {
		return storage.Volume{}, false, fmt.Errorf("clone source CephFS volume %s is %s, not ready", src, srcInfo.State)
	}
	if err := b.ensureGroup(ctx); err != nil {
		return storage.Volume{}, false, err
	}
	snap := cloneSnap(dst.Name)
	if err := b.snapshot(ctx, src, snap); err != nil {
		return storage.Volume{}, false, err
	}
	args := append([]string{b.sub(src), snap, b.sub(dst.Name)}, b.group()...)
	args = append(args, "--target_group_name", b.opts.Group)
	if _, err := b.fs(ctx, []string{"subvolume", "snapshot", "clone"}, args...); err != nil {
		if rmErr := b.removeSnapshot(context.WithoutCancel(ctx), src, snap); rmErr != nil {
			klog.FromContext(ctx).Error(rmErr, "Could not remove the snapshot of a clone that did not start", "volume", src)
		}
		return storage.Volume{}, false, fmt.Errorf("clone CephFS volume %s to %s: %w", src, dst.Name, err)
	}
	klog.FromContext(ctx).V(2).Info("Cloning CephFS volume", "source", src, "volume", dst.Name, "snapshot", snap, "bytes", srcInfo.Used)
	progress(0, srcInfo.Used)
	return b.awaitClone(ctx, src, dst, true, srcInfo.Used, progress)
}

// snapshot makes snapshot snap of volume name; one there already is fine.
func (b *Backend) snapshot(ctx context.Context, name, snap string) error {
	_, err := b.fs(ctx, []string{"subvolume", "snapshot", "create"}, b.on(name, snap)...)
	if err != nil && !is(err, syscall.EEXIST) {
		return fmt.Errorf("snapshot CephFS volume %s: %w", name, err)
	}
	return nil
}

// awaitClone waits for the copy to dst. started says this call started it.
func (b *Backend) awaitClone(ctx context.Context, src string, dst storage.Spec, started bool, total int64, progress storage.Progress) (storage.Volume, bool, error) {
	st, err := b.waitClone(ctx, dst.Name)
	if err != nil {
		// The copy goes on; a repeated call waits for it.
		return storage.Volume{}, false, fmt.Errorf("clone CephFS volume %s to %s: %w", src, dst.Name, err)
	}
	snap := cloneSnap(dst.Name)
	if st.State != cloneComplete {
		b.undo(ctx, dst.Name)
		if err := b.removeSnapshot(context.WithoutCancel(ctx), src, snap); err != nil {
			klog.FromContext(ctx).Error(err, "Could not remove the snapshot of a failed clone", "volume", src)
		}
		return storage.Volume{}, false, fmt.Errorf("clone CephFS volume %s to %s: the copy %s (%s); removed what it made", src, dst.Name, st.State, st.Failure)
	}
	// Left behind, it would only keep src from being removed, and Remove
	// takes it away then.
	if err := b.removeSnapshot(ctx, src, snap); err != nil {
		klog.FromContext(ctx).Error(err, "Could not remove the snapshot a clone was made from; it goes when its volume does", "volume", src)
	}
	info, err := b.info(ctx, dst.Name)
	if err != nil {
		return storage.Volume{}, false, fmt.Errorf("cloned CephFS volume %s: %w", dst.Name, err)
	}
	v, created, err := b.finishClone(ctx, src, dst, info, started)
	if err == nil {
		progress(total, total)
	}
	return v, created, err
}

// waitClone polls the state of the copy to name until it is over (complete,
// failed or cancelled) or ctx ends.
func (b *Backend) waitClone(ctx context.Context, name string) (cloneState, error) {
	logger := klog.FromContext(ctx)
	last := ""
	for {
		out, err := b.fs(ctx, []string{"clone", "status"}, b.on(name)...)
		if err != nil {
			return cloneState{}, err
		}
		st, err := parseCloneStatus(out)
		if err != nil {
			return cloneState{}, err
		}
		if st.State != last {
			logger.V(2).Info("CephFS clone", "volume", name, "state", st.State)
			last = st.State
		}
		switch st.State {
		case cloneComplete, cloneFailed, cloneCanceled:
			return st, nil
		}
		if err := pollWait(ctx, b.opts.PollInterval); err != nil {
			return cloneState{}, err
		}
	}
}

// finishClone grows a complete clone to dst.Size and gives it its identity.
func (b *Backend) finishClone(ctx context.Context, src string, dst storage.Spec, info subvolumeInfo, created bool) (storage.Volume, bool, error) {
	fail := func(err error) (storage.Volume, bool, error) {
		if created {
			b.undo(ctx, dst.Name)
		}
		return storage.Volume{}, false, err
	}
	if q := int64(info.Quota); q != 0 && dst.Size > q {
		if _, err := b.fs(ctx, []string{"subvolume", "resize"}, b.on(dst.Name, strconv.FormatInt(dst.Size, 10))...); err != nil {
			return fail(fmt.Errorf("grow clone %s of %s: %w", dst.Name, src, err))
		}
		var err error
		if info, err = b.info(ctx, dst.Name); err != nil {
			return fail(fmt.Errorf("cloned CephFS volume %s: %w", dst.Name, err))
		}
	}
	if err := b.recordName(ctx, dst.Name); err != nil {
		return fail(err)
	}
	v, err := b.ready(ctx, dst.Name, info, true)
	if err != nil {
		return fail(err)
	}
	b.cache.put(b.sub(v.Name), v)
	return v, created, nil
}

// Archive keeps the volume's data under a new name, archived-<name>-<time>,
// and removes the volume and its identity. The mgr volumes module of Ceph
// 16 cannot rename a subvolume, so the archive is a clone of a snapshot of
// it, and the volume is removed only once the clone is complete: data is
// never in one place only while it moves. It takes as long as copying the
// volume, and room for a second copy meanwhile. The snapshot names the
// archive, so a repeated call (after a timeout) goes on with the same copy.
func (b *Backend) Archive(ctx context.Context, name string, now time.Time) (string, error) {
	if err := checkName(name); err != nil {
		return "", err
	}
	if !b.Configured() {
		return "", b.Available()
	}
	defer b.locks.Lock(name)()
	logger := klog.FromContext(ctx).WithValues("volume", name)
	b.cache.drop(b.sub(name))
	if _, err := b.info(ctx, name); is(err, syscall.ENOENT) {
		return "", b.removeUser(ctx, name)
	} else if err != nil {
		return "", fmt.Errorf("archive CephFS volume %s: %w", name, err)
	}
	snaps, err := b.snapshots(ctx, name)
	if err != nil {
		return "", err
	}
	// Checked first: the volume could not be removed after the copy, and
	// each retry would make another archive.
	if foreign := foreignSnapshots(snaps); len(foreign) > 0 {
		return "", fmt.Errorf("CephFS volume %s has snapshots not made by the provisioner (%s); it is kept, not archived: remove them to let it go", name, strings.Join(foreign, ", "))
	}
	var snap string
	for _, s := range sortedCopy(snaps) {
		if strings.HasPrefix(s, archiveSnapPrefix) {
			snap = s
			break
		}
	}
	if snap == "" {
		snap = archiveSnap(now)
		if err := b.snapshot(ctx, name, snap); err != nil {
			return "", err
		}
	}
	target := b.sub(archiveTarget(name, snap))
	info, err := b.info(ctx, target)
	switch {
	case err == nil && info.State == cloneComplete:
	case err == nil || is(err, syscall.EAGAIN):
		if err := b.awaitArchive(ctx, name, target); err != nil {
			return "", err
		}
	case is(err, syscall.ENOENT):
		args := append([]string{b.sub(name), snap, target}, b.group()...)
		args = append(args, "--target_group_name", b.opts.Group)
		if _, err := b.fs(ctx, []string{"subvolume", "snapshot", "clone"}, args...); err != nil {
			return "", fmt.Errorf("archive CephFS volume %s as %s: %w", name, target, err)
		}
		logger.V(2).Info("Archiving CephFS volume", "archive", target)
		if err := b.awaitArchive(ctx, name, target); err != nil {
			return "", err
		}
	default:
		return "", fmt.Errorf("archive CephFS volume %s as %s: %w", name, target, err)
	}
	// The archive is complete: now, and only now, the volume may go.
	if err := b.removeSnapshot(ctx, name, snap); err != nil {
		return "", err
	}
	if err := b.removeSubvolume(ctx, name); err != nil {
		return "", err
	}
	if err := b.removeUser(ctx, name); err != nil {
		return "", err
	}
	logger.V(2).Info("Archived CephFS volume", "archive", target)
	return target, nil
}

// awaitArchive waits for the copy to an archive; a failed one is removed
// (the volume is untouched), so a retry copies again.
func (b *Backend) awaitArchive(ctx context.Context, name, target string) error {
	st, err := b.waitClone(ctx, target)
	if err != nil {
		return fmt.Errorf("archive CephFS volume %s as %s: %w", name, target, err)
	}
	if st.State != cloneComplete {
		if err := b.removeSubvolume(context.WithoutCancel(ctx), target); err != nil {
			klog.FromContext(ctx).Error(err, "Could not remove a failed archive copy", "archive", target)
		}
		return fmt.Errorf("archive CephFS volume %s as %s: the copy %s (%s); the volume is kept", name, target, st.State, st.Failure)
	}
	return nil
}
