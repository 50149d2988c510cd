package metrics

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/ganesha"
	"github.com/nfs-provisioner/nfs-provisioner/pkg/storage"
	"github.com/nfs-provisioner/nfs-provisioner/pkg/volume"
)

// VolumeLister lists the volumes the PVs of this store name; the
// provisioner implements it.
type VolumeLister interface {
	Volumes() []volume.VolumeInfo
}

// Ganesha is the supervised NFS server, as *ganesha.Server offers it.
type Ganesha interface {
	Healthy() error
	Restarts() int
	ExportIO(ctx context.Context, ops bool) ([]ganesha.ExportIO, error)
}

// Sources are what the scrape-time metrics are read from.
type Sources struct {
	// Volumes is required.
	Volumes VolumeLister
	// StoreUsage reports the store's size and free space; nil leaves the
	// store gauges out.
	StoreUsage func(context.Context) (storage.Usage, error)
	// Ganesha is nil when ganesha is managed elsewhere (-run-server=false):
	// then there are no ganesha or NFS I/O series.
	Ganesha Ganesha
	// UsageScanInterval is how often directory volumes are walked for their
	// used bytes; 0 switches the scan off. Default 0.
	UsageScanInterval time.Duration
	// UsageScanRate is the most files per second the scan looks at.
	// Default 2000.
	UsageScanRate int
	// Timeout bounds the reading of all sources in one scrape. Default 10s.
	Timeout time.Duration
}

// Watch serves metrics read from s at every scrape and, when
// s.UsageScanInterval is set, starts the directory usage scan until ctx
// ends. Call it once.
func (m *Metrics) Watch(ctx context.Context, s Sources) error {
	if s.Volumes == nil {
		return errors.New("metrics: Sources.Volumes is required")
	}
	if s.UsageScanInterval < 0 || s.UsageScanRate < 0 {
		return fmt.Errorf("metrics: usage scan interval %v and rate %d must not be negative", s.UsageScanInterval, s.UsageScanRate)
	}
	if s.UsageScanRate == 0 {
		s.UsageScanRate = 2000
	}
	if s.Timeout == 0 {
		s.Timeout = 10 * time.Second
	}
	c := &collector{m: m, src: s, other: map[uint16]opsState{}}
	if s.UsageScanInterval > 0 {
		c.scan = newUsageScanner(s.UsageScanInterval, s.UsageScanRate)
		go c.scan.run(ctx, s.Volumes.Volumes)
	}
	return m.reg.Register(c)
}

var (
	volumeLabels = Names[VolumeCapacityBytes]
	descVolumes  = prometheus.NewDesc(Volumes, "Volumes that PVs of this store name, by StorageClass and kind (directory, xfs, ext4).", Names[Volumes], nil)
	descStoreCap = prometheus.NewDesc(StoreCapacityBytes, "Size of the store's filesystem.", nil, nil)
	descStoreAv  = prometheus.NewDesc(StoreAvailableBytes, "Bytes an unprivileged writer can still store in the store's filesystem.", nil, nil)
	descStoreAl  = prometheus.NewDesc(StoreAllocatedBytes, "Sum of the sizes promised to filesystem volumes (their images, kept and archived ones included).", nil, nil)
	descVolCap   = prometheus.NewDesc(VolumeCapacityBytes, "Capacity the PV states.", volumeLabels, nil)
	descVolUsed  = prometheus.NewDesc(VolumeUsedBytes, "Bytes the volume uses: statfs for filesystem volumes (at scrape), a rate-bounded background scan for directory volumes (see nfs_provisioner_volume_usage_scan_timestamp_seconds).", volumeLabels, nil)
	descScanTime = prometheus.NewDesc(VolumeUsageScanTime, "When the last directory usage scan ended (Unix seconds).", nil, nil)
	descScanDur  = prometheus.NewDesc(VolumeUsageScanSeconds, "How long the last directory usage scan took.", nil, nil)
	descRead     = prometheus.NewDesc(NFSReadBytesTotal, "Bytes NFS clients read from the volume, as NFS-Ganesha counts them (all NFS versions); reset when ganesha restarts.", Names[NFSReadBytesTotal], nil)
	descWrite    = prometheus.NewDesc(NFSWriteBytesTotal, "Bytes NFS clients wrote to the volume, as NFS-Ganesha counts them (all NFS versions); reset when ganesha restarts.", Names[NFSWriteBytesTotal], nil)
	descOps      = prometheus.NewDesc(NFSOperationsTotal, "NFS operations on the volume: op read, write, or other (every other NFS operation; for NFSv4 each operation of a COMPOUND).", Names[NFSOperationsTotal], nil)
	descUp       = prometheus.NewDesc(GaneshaUp, "1 when NFS-Ganesha runs and answers on D-Bus, else 0.", nil, nil)
	descRestarts = prometheus.NewDesc(GaneshaRestartsTotal, "Times the supervisor restarted NFS-Ganesha since the provisioner started.", nil, nil)
)

// collector reads its sources at every scrape.
type collector struct {
	m    *Metrics
	src  Sources
	scan *usageScanner // nil when the scan is off

	mu    sync.Mutex
	other map[uint16]opsState // per export ID
}

// opsState keeps "other" operations from ever going down between scrapes:
// ganesha's totals and its read/write counts come from separate calls, so
// their difference can be a little ahead of what the next scrape sees.
type opsState struct {
	pv    string
	ops   uint64 // last total seen; lower means ganesha restarted
	other uint64 // last value served
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descVolumes, descStoreCap, descStoreAv, descStoreAl, descVolCap, descVolUsed,
		descScanTime, descScanDur, descRead, descWrite, descOps, descUp, descRestarts} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.src.Timeout)
	defer cancel()
	vols := c.src.Volumes.Volumes()

	type classKind struct{ class, kind string }
	counts := map[classKind]int{}
	byExport := make(map[uint16]*volume.VolumeInfo, len(vols))
	for i := range vols {
		v := &vols[i]
		counts[classKind{v.StorageClass, string(v.Kind)}]++
		if v.ExportID != 0 {
			byExport[v.ExportID] = v
		}
		labels := []string{v.PV, v.Namespace, v.Claim}
		ch <- prometheus.MustNewConstMetric(descVolCap, prometheus.GaugeValue, float64(v.Capacity), labels...)
		if used, ok := c.used(v); ok {
			ch <- prometheus.MustNewConstMetric(descVolUsed, prometheus.GaugeValue, float64(used), labels...)
		}
	}
	for k, n := range counts {
		ch <- prometheus.MustNewConstMetric(descVolumes, prometheus.GaugeValue, float64(n), k.class, k.kind)
	}

	if c.scan != nil {
		if end, took, ok := c.scan.last(); ok {
			ch <- prometheus.MustNewConstMetric(descScanTime, prometheus.GaugeValue, float64(end.UnixNano())/1e9)
			ch <- prometheus.MustNewConstMetric(descScanDur, prometheus.GaugeValue, took.Seconds())
		}
	}

	if c.src.StoreUsage != nil {
		if u, err := c.src.StoreUsage(ctx); err != nil {
			c.m.collectFailed("store", err)
		} else {
			ch <- prometheus.MustNewConstMetric(descStoreCap, prometheus.GaugeValue, float64(u.Total))
			ch <- prometheus.MustNewConstMetric(descStoreAv, prometheus.GaugeValue, float64(u.Free))
			ch <- prometheus.MustNewConstMetric(descStoreAl, prometheus.GaugeValue, float64(u.Allocated))
		}
	}

	if c.src.Ganesha != nil {
		c.collectGanesha(ctx, ch, byExport)
	}
}

// used returns a volume's used bytes: statfs of a filesystem volume's root,
// the last scan's result for a directory volume.
func (c *collector) used(v *volume.VolumeInfo) (int64, bool) {
	if v.Kind == storage.Directory || v.Kind == "" {
		if c.scan == nil {
			return 0, false
		}
		return c.scan.get(v.PV)
	}
	// A CephFS volume's path is in the cluster, not on this node.
	if v.Path == "" || v.Kind == storage.CephFS {
		return 0, false
	}
	var st unix.Statfs_t
	if err := unix.Statfs(v.Path, &st); err != nil {
		c.m.collectFailed("volume_statfs", fmt.Errorf("%s: %w", v.Path, err))
		return 0, false
	}
	return int64(st.Blocks-st.Bfree) * st.Bsize, true
}

func (c *collector) collectGanesha(ctx context.Context, ch chan<- prometheus.Metric, byExport map[uint16]*volume.VolumeInfo) {
	g := c.src.Ganesha
	up := 0.0
	if g.Healthy() == nil {
		up = 1
	}
	ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, up)
	ch <- prometheus.MustNewConstMetric(descRestarts, prometheus.CounterValue, float64(g.Restarts()))
	if up == 0 {
		return
	}
	ios, err := g.ExportIO(ctx, true)
	if err != nil {
		c.m.collectFailed("ganesha_stats", err)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	seen := make(map[uint16]bool, len(ios))
	for _, io := range ios {
		v, ok := byExport[io.ExportID]
		if !ok {
			continue // not a volume of ours: no series, so cardinality stays bounded by our volumes
		}
		seen[io.ExportID] = true
		st := c.other[io.ExportID]
		if st.pv != v.PV || io.Ops < st.ops {
			st = opsState{pv: v.PV} // another volume got the ID, or ganesha restarted
		}
		other := uint64(0)
		if io.Ops > io.ReadOps+io.WriteOps {
			other = io.Ops - io.ReadOps - io.WriteOps
		}
		st.ops, st.other = io.Ops, max(st.other, other)
		c.other[io.ExportID] = st

		ch <- prometheus.MustNewConstMetric(descRead, prometheus.CounterValue, float64(io.ReadBytes), v.PV)
		ch <- prometheus.MustNewConstMetric(descWrite, prometheus.CounterValue, float64(io.WriteBytes), v.PV)
		ch <- prometheus.MustNewConstMetric(descOps, prometheus.CounterValue, float64(io.ReadOps), v.PV, "read")
		ch <- prometheus.MustNewConstMetric(descOps, prometheus.CounterValue, float64(io.WriteOps), v.PV, "write")
		ch <- prometheus.MustNewConstMetric(descOps, prometheus.CounterValue, float64(st.other), v.PV, "other")
	}
	for id := range c.other {
		if !seen[id] {
			delete(c.other, id)
		}
	}
}

// StatfsUsage reports the size and free space of the filesystem holding
// path, for Sources.StoreUsage when no storage backend reports it.
func StatfsUsage(path string) func(context.Context) (storage.Usage, error) {
	return func(context.Context) (storage.Usage, error) {
		var st unix.Statfs_t
		if err := unix.Statfs(path, &st); err != nil {
			return storage.Usage{}, fmt.Errorf("statfs %s: %w", path, err)
		}
		return storage.Usage{Total: int64(st.Blocks) * st.Bsize, Free: int64(st.Bavail) * st.Bsize}, nil
	}
}
