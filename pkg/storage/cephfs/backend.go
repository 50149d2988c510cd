package cephfs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nfs-provisioner/nfs-provisioner/internal/keyed"
	"github.com/nfs-provisioner/nfs-provisioner/pkg/storage"
)

// Options configure a Backend. Without Conf the backend exists but is
// unavailable: CephFS claims get an event that says so.
type Options struct {
	// Conf is the cluster's ceph.conf (mon addresses); ganesha's FSAL_CEPH
	// reads it too.
	Conf string
	// Keyring holds the key of User; default: what Conf says.
	Keyring string
	// User is the cephx id this backend works as, without "client."; it
	// needs the caps docs/volume-kinds.md lists. Default "admin".
	User string
	// Filesystem is the CephFS volumes are made in; default "cephfs".
	Filesystem string
	// Group is the subvolume group that holds this store's volumes, and
	// the first part of their cephx ids; default "nfs-provisioner". Give
	// each store sharing a cluster a group of its own.
	Group string
	// Binary is the ceph command; default "ceph" from PATH.
	Binary string
	// Timeout bounds each ceph command; default 60 s.
	Timeout time.Duration
	// MaxCommands is how many ceph commands run at once; default 4.
	MaxCommands int
	// PollInterval is how often a running clone is looked at; default 1 s.
	PollInterval time.Duration
}

// Backend keeps volumes as subvolumes of a CephFS, through the mgr volumes
// module, with a cephx identity per volume confined to its path.
type Backend struct {
	opts  Options
	ceph  runner
	locks keyed.Mutex
	cache *openCache
	// groupMade: the subvolume group exists (made at most once a run).
	groupMu   sync.Mutex
	groupMade bool
}

var _ storage.Backend = (*Backend)(nil)

// New checks the options; it does not contact the cluster, which may be
// away while the node starts.
func New(opts Options) (*Backend, error) {
	if opts.User == "" {
		opts.User = "admin"
	}
	if opts.Filesystem == "" {
		opts.Filesystem = "cephfs"
	}
	if opts.Group == "" {
		opts.Group = "nfs-provisioner"
	}
	if opts.Binary == "" {
		opts.Binary = "ceph"
	}
	if opts.Timeout == 0 {
		opts.Timeout = time.Minute
	}
	if opts.MaxCommands == 0 {
		opts.MaxCommands = 4
	}
	if opts.PollInterval == 0 {
		opts.PollInterval = time.Second
	}
	var errs []error
	for what, v := range map[string]string{"filesystem": opts.Filesystem, "subvolume group": opts.Group, "user": opts.User} {
		if err := checkCephName("CephFS "+what, v); err != nil {
			errs = append(errs, err)
		}
	}
	if strings.HasPrefix(opts.User, "client.") {
		errs = append(errs, fmt.Errorf("CephFS user %q: give the id without \"client.\"", opts.User))
	}
	if len(opts.Group) > 100 {
		// Subvolume names get what the group leaves of 255 bytes.
		errs = append(errs, fmt.Errorf("CephFS subvolume group %q is longer than 100 bytes", opts.Group))
	}
	if opts.Timeout < time.Second || opts.MaxCommands < 1 || opts.PollInterval <= 0 {
		errs = append(errs, fmt.Errorf("CephFS: timeout %s (want at least 1s), %d commands at once (want at least 1), poll interval %s", opts.Timeout, opts.MaxCommands, opts.PollInterval))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	b := &Backend{opts: opts, cache: newOpenCache()}
	b.ceph = &cli{binary: opts.Binary, conf: opts.Conf, user: opts.User, keyring: opts.Keyring,
		timeout: opts.Timeout, sem: make(chan struct{}, opts.MaxCommands)}
	return b, nil
}

// Kinds returns storage.CephFS.
func (b *Backend) Kinds() []storage.Kind { return []storage.Kind{storage.CephFS} }

// Configured reports whether a cluster was given.
func (b *Backend) Configured() bool { return b.opts.Conf != "" }

// Conf is the cluster's ceph.conf, for ganesha.
func (b *Backend) Conf() string { return b.opts.Conf }

// Available is nil when a cluster is configured and what reaching it needs
// is here: the ceph command (ceph-common), a readable ceph.conf and
// keyring. It does not ask the cluster: a claim made while it is away gets
// the cluster's own error.
func (b *Backend) Available() error {
	if b.opts.Conf == "" {
		return fmt.Errorf("%w: CephFS volumes need a Ceph cluster: start the provisioner with -ceph-conf (and -ceph-keyring, -ceph-user)", storage.ErrUnavailable)
	}
	var missing []string
	if _, err := exec.LookPath(b.opts.Binary); err != nil {
		missing = append(missing, fmt.Sprintf("the ceph command (package ceph-common; use the image variant with Ceph): %v", err))
	}
	for _, f := range []string{b.opts.Conf, b.opts.Keyring} {
		if f == "" {
			continue
		}
		if fh, err := os.Open(f); err != nil {
			missing = append(missing, err.Error())
		} else {
			fh.Close()
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: CephFS volumes need %s", storage.ErrUnavailable, strings.Join(missing, "; "))
	}
	return nil
}

// Serving reports whether the cluster can serve the filesystem now: the
// mons answer and say it has an active MDS. A CephFS export added while it
// cannot would hold ganesha's D-Bus thread for libcephfs's mount timeout.
func (b *Backend) Serving(ctx context.Context) error {
	if !b.Configured() {
		return b.Available()
	}
	out, err := b.ceph.run(ctx, "fs", "dump")
	if err != nil {
		return fmt.Errorf("CephFS %s: %w", b.opts.Filesystem, err)
	}
	return parseActiveMDS(out, b.opts.Filesystem)
}

// fs runs a ceph command of the mgr volumes module on this backend's
// filesystem: "fs <verb...> <filesystem> <args...>".
func (b *Backend) fs(ctx context.Context, verb []string, args ...string) ([]byte, error) {
	full := append(append(append([]string{"fs"}, verb...), b.opts.Filesystem), args...)
	return b.ceph.run(ctx, full...)
}

// group is the --group_name argument every subvolume command takes.
func (b *Backend) group() []string { return []string{"--group_name", b.opts.Group} }

// on is the arguments of a command on volume name's subvolume: its name,
// then args, then the group.
func (b *Backend) on(name string, args ...string) []string {
	return append(append([]string{b.sub(name)}, args...), b.group()...)
}

// ensureGroup makes the subvolume group (idempotent in Ceph) once a run.
func (b *Backend) ensureGroup(ctx context.Context) error {
	b.groupMu.Lock()
	defer b.groupMu.Unlock()
	if b.groupMade {
		return nil
	}
	if _, err := b.fs(ctx, []string{"subvolumegroup", "create"}, b.opts.Group); err != nil {
		return fmt.Errorf("make subvolume group %s: %w", b.opts.Group, err)
	}
	b.groupMade = true
	return nil
}

// List names the subvolumes of the group: every volume, open or not, not
// archives. A group not made yet holds none.
func (b *Backend) List(ctx context.Context) ([]string, error) {
	if !b.Configured() {
		return nil, nil
	}
	names, err := b.listAll(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, n := range names {
		if b.shortened(n) {
			n = b.fullName(ctx, n)
		}
		if checkName(n) == nil {
			out = append(out, n)
		}
	}
	return out, nil
}

// fullName is the name of the volume whose subvolume name sub is shortened,
// from the subvolume's metadata; sub itself when that cannot be read (the
// volume is then listed under its subvolume's name, and kept).
func (b *Backend) fullName(ctx context.Context, sub string) string {
	out, err := b.fs(ctx, []string{"subvolume", "metadata", "get"}, append([]string{sub, nameKey}, b.group()...)...)
	name := strings.TrimSpace(string(out))
	if err != nil || b.sub(name) != sub {
		return sub
	}
	return name
}

// listAll names every subvolume of the group, archives included, and
// remembers the answer for Open.
func (b *Backend) listAll(ctx context.Context) ([]string, error) {
	out, err := b.fs(ctx, []string{"subvolume", "ls"}, b.group()...)
	if is(err, syscall.ENOENT) {
		b.cache.listed(nil)
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list CephFS volumes: %w", err)
	}
	names, err := parseNames(out)
	if err != nil {
		return nil, err
	}
	b.cache.listed(names)
	return names, nil
}

// Usage is the data pool's size and room, in bytes of user data, and the
// quotas of every subvolume of the group (archives too: they keep their
// data) as what is promised.
func (b *Backend) Usage(ctx context.Context) (storage.Usage, error) {
	if !b.Configured() {
		return storage.Usage{}, nil
	}
	out, err := b.ceph.run(ctx, "fs", "ls")
	if err != nil {
		return storage.Usage{}, fmt.Errorf("CephFS usage: %w", err)
	}
	pool, err := parseDataPool(out, b.opts.Filesystem)
	if err != nil {
		return storage.Usage{}, err
	}
	if out, err = b.ceph.run(ctx, "df"); err != nil {
		return storage.Usage{}, fmt.Errorf("CephFS usage: %w", err)
	}
	space, err := parseDF(out, pool)
	if err != nil {
		return storage.Usage{}, err
	}
	u := storage.Usage{Total: space.Stored + space.MaxAvail, Free: space.MaxAvail}
	names, err := b.listAll(ctx)
	if err != nil {
		return storage.Usage{}, err
	}
	for _, n := range names {
		size, ok := b.cache.size(n)
		if !ok {
			info, err := b.info(ctx, n)
			if err != nil {
				// A clone being made cannot be asked; it is counted once done.
				continue
			}
			size = int64(info.Quota)
			b.cache.setSize(n, size)
		}
		u.Allocated += size
	}
	return u, nil
}

// info asks for a subvolume's path, quota and state; ENOENT when there is
// none, EAGAIN while it is a clone being made.
func (b *Backend) info(ctx context.Context, name string) (subvolumeInfo, error) {
	out, err := b.fs(ctx, []string{"subvolume", "info"}, b.on(name)...)
	if err != nil {
		return subvolumeInfo{}, err
	}
	return parseInfo(out)
}

// Close has nothing to undo on this node: ganesha's export is the only
// mount, and the caller removed it.
func (b *Backend) Close(ctx context.Context, name string) error {
	return checkName(name)
}

// openCache keeps what Open found, so that a reconciliation pass, which
// opens every volume, costs one `subvolume ls` rather than two commands a
// volume. An entry is trusted while the volume appears in a listing younger
// than listTTL and the entry is younger than entryTTL; after that it is
// looked up afresh (a key rotated by hand is picked up then).
type openCache struct {
	mu       sync.Mutex
	vols     map[string]cachedVolume
	sizes    map[string]int64 // quotas, for Usage; archives and clones too
	names    map[string]bool
	listedAt time.Time
	now      func() time.Time
}

type cachedVolume struct {
	v  storage.Volume
	at time.Time
}

const (
	listTTL  = 30 * time.Second
	entryTTL = 10 * time.Minute
)

func newOpenCache() *openCache {
	return &openCache{vols: map[string]cachedVolume{}, sizes: map[string]int64{}, now: time.Now}
}

func (c *openCache) listed(names []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.names = map[string]bool{}
	for _, n := range names {
		c.names[n] = true
	}
	for n := range c.sizes {
		if !c.names[n] {
			delete(c.sizes, n)
		}
	}
	c.listedAt = c.now()
}

// get returns the cached volume when it may be trusted; stale reports that
// the listing needs refreshing first.
func (c *openCache) get(name string) (v storage.Volume, ok, stale bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, have := c.vols[name]
	now := c.now()
	if !have || now.Sub(e.at) > entryTTL {
		return storage.Volume{}, false, false
	}
	if c.names == nil || now.Sub(c.listedAt) > listTTL {
		return storage.Volume{}, false, true
	}
	return e.v, c.names[name], false
}

// put remembers volume v, whose subvolume is sub. Entries are keyed by
// subvolume, as listings name them.
func (c *openCache) put(sub string, v storage.Volume) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.vols[sub] = cachedVolume{v: v, at: c.now()}
	c.sizes[sub] = v.Size
	if c.names != nil {
		c.names[sub] = true
	}
}

func (c *openCache) drop(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.vols, name)
	delete(c.sizes, name)
	if c.names != nil {
		delete(c.names, name)
	}
}

func (c *openCache) size(name string) (int64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.sizes[name]
	return s, ok
}

func (c *openCache) setSize(name string, size int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sizes[name] = size
}

// sortedCopy is for deterministic messages.
func sortedCopy(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}
