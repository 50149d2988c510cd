package cephfs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/klog/v2"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/storage"
)

func (b *Backend) checkSpec(spec storage.Spec) error {
	if err := checkName(spec.Name); err != nil {
		return err
	}
	if spec.Kind != storage.CephFS {
		return fmt.Errorf("volume %s: kind %q: %w", spec.Name, spec.Kind, storage.ErrUnsupported)
	}
	if spec.Size < 0 || spec.Size > 1<<60 {
		return fmt.Errorf("volume %s: size %d out of range", spec.Name, spec.Size)
	}
	if spec.UID < 0 || spec.GID < 0 {
		return fmt.Errorf("volume %s: negative owner %d:%d", spec.Name, spec.UID, spec.GID)
	}
	if !b.Configured() {
		return b.Available()
	}
	return nil
}

// caps confine a volume's cephx identity to its subvolume: the MDS refuses
// any inode outside path, whatever file handle an NFS client forges; the
// data pool is reachable only through files the MDS hands out; no "p" (no
// changing the quota or layout) and no "s" (no snapshots).
func (b *Backend) caps(path string) map[string]string {
	return map[string]string{
		"mon": "allow r",
		"mds": "allow rw path=" + path,
		"osd": "allow rw tag cephfs data=" + b.opts.Filesystem,
	}
}

// capArgs are caps as the ceph command takes them, in a fixed order.
func capArgs(caps map[string]string) []string {
	var args []string
	for _, k := range slices.Sorted(maps.Keys(caps)) {
		args = append(args, k, caps[k])
	}
	return args
}

// Create makes a subvolume of spec.Size bytes (its quota), owned and
// moded as spec says, and its cephx identity. A subvolume there already (a
// repeated call) is not touched (`subvolume create` would reset its owner,
// mode and quota); only a missing identity is made.
func (b *Backend) Create(ctx context.Context, spec storage.Spec) (storage.Volume, bool, error) {
	if err := b.checkSpec(spec); err != nil {
		return storage.Volume{}, false, err
	}
	defer b.locks.Lock(spec.Name)()
	logger := klog.FromContext(ctx).WithValues("volume", spec.Name)
	info, err := b.info(ctx, spec.Name)
	created := false
	switch {
	case err == nil:
	case is(err, syscall.ENOENT):
		if err := b.ensureGroup(ctx); err != nil {
			return storage.Volume{}, false, err
		}
		args := []string{b.sub(spec.Name)}
		if spec.Size > 0 {
			args = append(args, "--size", strconv.FormatInt(spec.Size, 10))
		}
		args = append(args, "--uid", strconv.Itoa(spec.UID), "--gid", strconv.Itoa(spec.GID), "--mode", modeString(spec.Mode))
		if _, err := b.fs(ctx, []string{"subvolume", "create"}, append(args, b.group()...)...); err != nil {
			return storage.Volume{}, false, fmt.Errorf("create CephFS volume %s: %w", spec.Name, err)
		}
		created = true
		if info, err = b.info(ctx, spec.Name); err == nil {
			err = b.recordName(ctx, spec.Name)
		}
		if err != nil {
			b.undo(ctx, spec.Name)
			return storage.Volume{}, false, fmt.Errorf("CephFS volume %s: %w", spec.Name, err)
		}
	default:
		return storage.Volume{}, false, fmt.Errorf("CephFS volume %s: %w", spec.Name, err)
	}
	v, err := b.ready(ctx, spec.Name, info, true)
	if err != nil {
		if created {
			b.undo(ctx, spec.Name)
		}
		return storage.Volume{}, false, err
	}
	b.cache.put(b.sub(v.Name), v)
	logger.V(2).Info("Created CephFS volume", "path", v.Path, "size", v.Size, "created", created)
	return v, created, nil
}

// Open finds the subvolume and the key of its identity. It makes nothing:
// a volume whose identity is gone, or whose identity reaches beyond it, is
// an error that says how to repair it, never served.
func (b *Backend) Open(ctx context.Context, name string) (storage.Volume, error) {
	if err := checkName(name); err != nil {
		return storage.Volume{}, err
	}
	if !b.Configured() {
		return storage.Volume{}, b.Available()
	}
	defer b.locks.Lock(name)()
	v, ok, stale := b.cache.get(b.sub(name))
	if stale {
		if _, err := b.listAll(ctx); err == nil {
			v, ok, _ = b.cache.get(b.sub(name))
		}
	}
	if ok {
		return v, nil
	}
	info, err := b.info(ctx, name)
	if is(err, syscall.ENOENT) {
		b.cache.drop(b.sub(name))
		return storage.Volume{}, fmt.Errorf("CephFS volume %s: %w", name, storage.ErrNotFound)
	}
	if err != nil {
		return storage.Volume{}, fmt.Errorf("CephFS volume %s: %w", name, err)
	}
	if v, err = b.ready(ctx, name, info, false); err != nil {
		return storage.Volume{}, err
	}
	b.cache.put(b.sub(v.Name), v)
	return v, nil
}

// ready returns the volume of a complete subvolume with its identity's key,
// making the identity when create is set.
func (b *Backend) ready(ctx context.Context, name string, info subvolumeInfo, create bool) (storage.Volume, error) {
	if info.State != cloneComplete {
		return storage.Volume{}, fmt.Errorf("CephFS volume %s is %s, not ready to serve", name, info.State)
	}
	entity, want := b.entity(name), b.caps(info.Path)
	var out []byte
	var err error
	if create {
		out, err = b.ceph.run(ctx, append([]string{"auth", "get-or-create", entity}, capArgs(want)...)...)
		if is(err, syscall.EINVAL) {
			return storage.Volume{}, fmt.Errorf("CephFS volume %s: cephx identity %s exists with other caps than %v, which confine it to the volume; refusing to serve it through that identity: %w", name, entity, want, err)
		}
	} else {
		out, err = b.ceph.run(ctx, "auth", "get", entity)
		if is(err, syscall.ENOENT) {
			return storage.Volume{}, fmt.Errorf("CephFS volume %s has no cephx identity %s (removed by hand?), so it is not served; make it again with: ceph auth get-or-create %s %s",
				name, entity, entity, quoteCaps(want))
		}
	}
	if err != nil {
		return storage.Volume{}, fmt.Errorf("CephFS volume %s: cephx identity: %w", name, err)
	}
	key, caps, err := parseAuth(out, entity)
	if err != nil {
		return storage.Volume{}, fmt.Errorf("CephFS volume %s: %w", name, err)
	}
	// get-or-create answers with the key only; get also tells the caps,
	// which must be exactly the confining ones.
	if caps != nil && !maps.Equal(caps, want) {
		return storage.Volume{}, fmt.Errorf("CephFS volume %s: cephx identity %s has caps %v, not %v that confine it to the volume; it is not served until they are: ceph auth caps %s %s",
			name, entity, caps, want, entity, quoteCaps(want))
	}
	return storage.Volume{
		Name: name, Kind: storage.CephFS, Path: info.Path, Size: int64(info.Quota),
		FSAL: storage.FSAL{Name: storage.FSALCeph, User: b.userID(name), Secret: key, Filesystem: b.opts.Filesystem},
	}, nil
}

// recordName keeps the full name of a volume whose subvolume name is
// shortened in the subvolume's metadata, where List finds it.
func (b *Backend) recordName(ctx context.Context, name string) error {
	if b.sub(name) == name {
		return nil
	}
	if _, err := b.fs(ctx, []string{"subvolume", "metadata", "set"}, b.on(name, nameKey, name)...); err != nil {
		return fmt.Errorf("record the name of CephFS volume %s in its subvolume %s: %w", name, b.sub(name), err)
	}
	return nil
}

// parseAuth reads the key of entity and, when the answer has them, its
// caps (nil when it has none).
func parseAuth(out []byte, entity string) (string, map[string]string, error) {
	key, err := parseKey(out, entity)
	if err != nil {
		return "", nil, err
	}
	var list []struct {
		Entity string            `json:"entity"`
		Caps   map[string]string `json:"caps"`
	}
	if json.Unmarshal(out, &list) == nil {
		for _, e := range list {
			if e.Entity == entity && len(e.Caps) > 0 {
				return key, e.Caps, nil
			}
		}
	}
	return key, nil, nil
}

func quoteCaps(caps map[string]string) string {
	args := capArgs(caps)
	for i := 1; i < len(args); i += 2 {
		args[i] = "'" + args[i] + "'"
	}
	return strings.Join(args, " ")
}

// undo removes what a failed Create or Clone made, with a context of its
// own: ctx may be what failed.
func (b *Backend) undo(ctx context.Context, name string) {
	cleanup, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*b.opts.Timeout)
	defer cancel()
	if err := errors.Join(b.removeSubvolume(cleanup, name), b.removeUser(cleanup, name)); err != nil {
		klog.FromContext(ctx).Error(err, "Could not remove what a failed call made", "volume", name)
	}
	b.cache.drop(b.sub(name))
}

// Expand raises the volume's quota to size; the volume stays served, and
// ganesha's clients see the new size at once.
func (b *Backend) Expand(ctx context.Context, name string, size int64, _ storage.ExpandMode) (int64, error) {
	if err := checkName(name); err != nil {
		return 0, err
	}
	if !b.Configured() {
		return 0, b.Available()
	}
	defer b.locks.Lock(name)()
	info, err := b.info(ctx, name)
	if is(err, syscall.ENOENT) {
		return 0, fmt.Errorf("CephFS volume %s: %w", name, storage.ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("CephFS volume %s: %w", name, err)
	}
	current := int64(info.Quota)
	switch {
	case current == 0:
		return 0, fmt.Errorf("CephFS volume %s has no quota; setting one would shrink it: %w", name, storage.ErrUnsupported)
	case size < current:
		return 0, fmt.Errorf("CephFS volume %s: %w: %d bytes is less than its quota of %d", name, storage.ErrUnsupported, size, current)
	case size == current:
		return current, nil
	}
	if _, err := b.fs(ctx, []string{"subvolume", "resize"}, b.on(name, strconv.FormatInt(size, 10))...); err != nil {
		return 0, fmt.Errorf("grow CephFS volume %s: %w", name, err)
	}
	if info, err = b.info(ctx, name); err != nil {
		return 0, fmt.Errorf("CephFS volume %s: %w", name, err)
	}
	b.cache.drop(b.sub(name)) // the next Open reads the new size
	b.cache.setSize(b.sub(name), int64(info.Quota))
	klog.FromContext(ctx).V(2).Info("Grew CephFS volume", "volume", name, "from", current, "to", int64(info.Quota))
	return int64(info.Quota), nil
}

// Remove deletes the subvolume (the mgr purges its data in the background)
// and its cephx identity. Snapshots this backend made go with it; a
// subvolume with anyone else's snapshots is kept, with an error that says
// so. A clone still being made is cancelled first.
func (b *Backend) Remove(ctx context.Context, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	if !b.Configured() {
		return b.Available()
	}
	defer b.locks.Lock(name)()
	b.cache.drop(b.sub(name))
	if err := b.removeSubvolume(ctx, name); err != nil {
		return err
	}
	if err := b.removeUser(ctx, name); err != nil {
		return err
	}
	klog.FromContext(ctx).V(2).Info("Removed CephFS volume", "volume", name)
	return nil
}

func (b *Backend) removeSubvolume(ctx context.Context, name string) error {
	rm := func(force bool) error {
		args := b.on(name)
		if force {
			args = append(args, "--force")
		}
		_, err := b.fs(ctx, []string{"subvolume", "rm"}, args...)
		if is(err, syscall.ENOENT) {
			return nil
		}
		return err
	}
	err := rm(false)
	switch {
	case err == nil:
		return nil
	case is(err, syscall.EAGAIN):
		// A clone not complete (being made, failed or cancelled) is
		// removed only by force, once it no longer runs.
		if _, cerr := b.fs(ctx, []string{"clone", "cancel"}, b.on(name)...); cerr != nil {
			klog.FromContext(ctx).V(2).Info("Cancelling a clone before removing it", "volume", name, "err", cerr)
		}
		err = rm(true)
	case is(err, syscall.ENOTEMPTY):
		if err := b.removeOwnSnapshots(ctx, name); err != nil {
			return err
		}
		err = rm(false)
	}
	if err != nil {
		return fmt.Errorf("remove CephFS volume %s: %w", name, err)
	}
	return nil
}

// removeOwnSnapshots removes the snapshots this backend made of a volume;
// with anyone else's there, it removes nothing and says so.
func (b *Backend) removeOwnSnapshots(ctx context.Context, name string) error {
	snaps, err := b.snapshots(ctx, name)
	if err != nil {
		return err
	}
	if foreign := foreignSnapshots(snaps); len(foreign) > 0 {
		return fmt.Errorf("CephFS volume %s has snapshots not made by the provisioner (%s); it is kept: remove them to let it go", name, strings.Join(foreign, ", "))
	}
	for _, s := range snaps {
		if err := b.removeSnapshot(ctx, name, s); err != nil {
			return err
		}
	}
	return nil
}

func foreignSnapshots(snaps []string) []string {
	var out []string
	for _, s := range snaps {
		if !strings.HasPrefix(s, snapPrefix) {
			out = append(out, s)
		}
	}
	return sortedCopy(out)
}

func (b *Backend) snapshots(ctx context.Context, name string) ([]string, error) {
	out, err := b.fs(ctx, []string{"subvolume", "snapshot", "ls"}, b.on(name)...)
	if err != nil {
		return nil, fmt.Errorf("list snapshots of CephFS volume %s: %w", name, err)
	}
	return parseNames(out)
}

func (b *Backend) removeSnapshot(ctx context.Context, name, snap string) error {
	_, err := b.fs(ctx, []string{"subvolume", "snapshot", "rm"}, b.on(name, snap)...)
	if err != nil && !is(err, syscall.ENOENT) {
		return fmt.Errorf("remove snapshot %s of CephFS volume %s: %w", snap, name, err)
	}
	return nil
}

// removeUser deletes a volume's cephx identity; a missing one is gone.
func (b *Backend) removeUser(ctx context.Context, name string) error {
	_, err := b.ceph.run(ctx, "auth", "del", b.entity(name))
	if err != nil && !is(err, syscall.ENOENT) {
		return fmt.Errorf("remove cephx identity of CephFS volume %s: %w", name, err)
	}
	return nil
}

// pollWait waits d or until ctx ends.
func pollWait(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
