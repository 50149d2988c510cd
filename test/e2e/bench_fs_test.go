package e2e

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/storage"
	"github.com/nfs-provisioner/nfs-provisioner/pkg/storage/fsimage"
	"github.com/nfs-provisioner/nfs-provisioner/test/framework"
)

// BenchmarkFilesystemVolumes300 (issue 14's targets, reported, never
// asserted): 300 fsType: xfs claims Bound, against the control plane's floor
// measured just before in the same run (300 claims bound to 300 PVs made
// beforehand, so only the binder works; see bindFloor); then a restart
// after SIGKILL until all 300 volumes are mounted and served again.
func BenchmarkFilesystemVolumes300(b *testing.B) {
	const n = 300
	for range b.N {
		env := fsBenchEnv(b, n)
		c, ns, p := env.c, env.ns, env.p
		b.Cleanup(func() { deletePVsOf(b, c, p.cfg.Name) })

		floor := bindFloor(b, env, n)
		class := ns + "-xfs"
		storageClass(b, c, class, p.cfg.Name, map[string]string{"fsType": "xfs"}, v1.PersistentVolumeReclaimDelete)
		r := burst(b, env, class, n)
		b.Logf("%d xfs claims: %s", n, reportBurst(b, r, floor))

		// What bounds the burst: the provisioner's own time per volume,
		// and ganesha's AddExport of a new filesystem, which ganesha
		// handles one at a time. A call's time includes its wait behind
		// the calls of other provisions at the bus.
		m := metricSamples(b, p, "nfs_provisioner_")
		prov, nprov := meanSeconds(m, "operation_duration_seconds", `operation="provision"`)
		add, nadd := meanSeconds(m, "dbus_call_duration_seconds", `method="AddExport"`)
		b.ReportMetric(float64(prov.Milliseconds()), "ms-provision-mean")
		b.ReportMetric(float64(add.Microseconds())/1000, "ms-AddExport-mean")
		b.Logf("provision: mean %v over %d; AddExport call, queueing included: mean %v over %d",
			prov.Round(time.Millisecond), nprov, add.Round(10*time.Microsecond), nadd)

		p.kill9()
		start := time.Now()
		p.restart()
		if got := len(p.exports(context.Background())); got != n {
			b.Fatalf("after restart ganesha serves %d exports, want %d", got, n)
		}
		served := time.Since(start)
		b.ReportMetric(served.Seconds(), "s-served-after-SIGKILL")
		b.Logf("restart after SIGKILL with %d xfs volumes: all served in %v", n, served.Round(time.Millisecond))
	}
}

// fsBenchEnv is newTestEnv with its store on an XFS filesystem of its own
// (on which a clone is a reflink, as docs/volume-kinds.md assumes), big
// enough for n volumes of the smallest size at -overcommit=1, on a loop
// device over a sparse image. BENCH_STORE=tmp puts the store in a
// directory of $TMPDIR instead. On this project's test machines that is an
// ext4 without a journal, whose inode allocator skips recently deleted
// inodes one by one (find_inode_bit): there 13% of the provisioner's CPU
// in this benchmark went to creating files, and the result depends on what
// ran before.
func fsBenchEnv(b *testing.B, n int) testEnv {
	b.Helper()
	if os.Getenv("BENCH_STORE") == "tmp" {
		return newTestEnv(b)
	}
	size := int64(n+8) * fsimage.RoundSize(storage.XFS, 0) * 11 / 10
	store := framework.NewLoopStore(b, size, "xfs")
	// Direct I/O, as a disk's: a buffered store device copies each write of
	// the volumes' loop devices (2 MiB at each XFS mount) into the page
	// cache a second time, kernel work a store on a disk does not cost.
	// Three alternated pairs of runs: 1.30–1.50 times the floor with it,
	// 1.76–2.04 without.
	if out, err := exec.Command("losetup", "--direct-io=on", store.Device).CombinedOutput(); err != nil {
		b.Fatalf("losetup --direct-io=on %s: %v: %s", store.Device, err, out)
	}
	c := framework.Shared(b)
	ns := c.Namespace(b)
	p := startProvisioner(b, c, provisionerConfig{Namespace: ns, ExportDir: store.Dir})
	b.Logf("store: XFS on %s, %d GiB", store.Device, size>>30)
	return testEnv{c: c, ns: ns, p: p}
}
