package e2e

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/metrics"
	"github.com/nfs-provisioner/nfs-provisioner/test/framework"
)

// TestMetricsScrapedByPrometheus: a real prometheus scrapes the
// provisioner's /metrics while known NFS traffic goes through real clients
// (NFSv3 from Go, NFSv4 from libnfs) to one provisioned volume and none to
// another. PromQL over prometheus' HTTP API must then show at least those
// bytes for the busy volume and none for the idle one, the volume and store
// gauges, ganesha up, D-Bus latencies, and the library's provisioning
// counter.
func TestMetricsScrapedByPrometheus(t *testing.T) {
	env := newTestEnv(t, "-volume-usage-scan-interval=1s")
	c, ns, p := env.c, env.ns, env.p
	createClaim(t, c, framework.Claim(ns, "busy", env.class, "100Mi"))
	createClaim(t, c, framework.Claim(ns, "idle", env.class, "100Mi"))
	busy := waitBound(t, c, ns, "busy")
	idle := waitBound(t, c, ns, "idle")

	prom := framework.StartPrometheus(t, fmt.Sprintf("127.0.0.1:%d", p.httpPort))

	big := make([]byte, 4<<20+17)
	rand.Read(big)
	small := bytes.Repeat([]byte("4.1"), 900)
	nfsWrite(t, p, busy, "big", big, 3)
	nfsWrite(t, p, busy, "small", small, 4)
	if got := nfsRead(t, p, busy, "big", 3); !bytes.Equal(got, big) {
		t.Fatalf("read back %d bytes, want the %d written", len(got), len(big))
	}
	if got := nfsRead(t, p, busy, "small", 4); !bytes.Equal(got, small) {
		t.Fatalf("NFSv4 read back %d bytes, want %d", len(got), len(small))
	}
	moved := float64(len(big) + len(small))

	pv := func(q string, v *v1.PersistentVolume) string { return fmt.Sprintf(q, v.Name) }
	for _, c := range []struct {
		query string
		ok    func(float64) bool
		want  string
	}{
		{`up{job="nfs-provisioner"}`, eq(1), "1: the target is scraped"},
		{pv(`nfs_provisioner_nfs_write_bytes_total{persistentvolume="%s"}`, busy), atLeast(moved), fmt.Sprintf(">= %v bytes written", moved)},
		{pv(`nfs_provisioner_nfs_read_bytes_total{persistentvolume="%s"}`, busy), atLeast(moved), fmt.Sprintf(">= %v bytes read", moved)},
		{pv(`nfs_provisioner_nfs_write_bytes_total{persistentvolume="%s"}`, busy), atMost(2 * moved), "not several times the bytes moved"},
		{pv(`nfs_provisioner_nfs_operations_total{persistentvolume="%s",op="write"}`, busy), atLeast(2), ">= 2 WRITE operations"},
		{pv(`nfs_provisioner_nfs_operations_total{persistentvolume="%s",op="other"}`, busy), atLeast(1), ">= 1 other operation"},
		{pv(`sum(nfs_provisioner_nfs_write_bytes_total{persistentvolume="%s"}) or vector(0)`, idle), eq(0), "0 bytes on the idle volume"},
		{`sum(nfs_provisioner_volumes{kind="directory"})`, eq(2), "2 volumes"},
		{`nfs_provisioner_store_capacity_bytes`, atLeast(1), "> 0"},
		{`nfs_provisioner_store_available_bytes`, atLeast(1), "> 0"},
		{`nfs_provisioner_store_capacity_bytes - nfs_provisioner_store_available_bytes`, atLeast(0), ">= 0"},
		{pv(`nfs_provisioner_volume_used_bytes{persistentvolume="%s"}`, busy), atLeast(moved), fmt.Sprintf(">= %v bytes used (usage scan)", moved)},
		{`nfs_provisioner_ganesha_up`, eq(1), "1"},
		{`nfs_provisioner_ganesha_restarts_total`, eq(0), "0"},
		{`sum(nfs_provisioner_dbus_call_duration_seconds_count{method="AddExport",result="success"})`, atLeast(2), ">= 2 AddExport calls timed"},
		{`sum(nfs_provisioner_dbus_call_duration_seconds_count{method="GetNFSIO"})`, atLeast(1), ">= 1 GetNFSIO call timed"},
		{fmt.Sprintf(`sum(controller_persistentvolumeclaim_provision_total{class=%q})`, env.class), eq(2), "2 claims provisioned (the library's counter)"},
		{`go_goroutines`, atLeast(1), "> 0 (Go collector)"},
		{`process_resident_memory_bytes`, atLeast(1), "> 0 (process collector)"},
	} {
		var last string
		deadline := time.Now().Add(60 * time.Second)
		for {
			samples, err := prom.Query(t.Context(), c.query)
			if err != nil {
				t.Fatal(err)
			}
			if len(samples) == 1 && c.ok(samples[0].Value) {
				break
			}
			last = fmt.Sprint(samples)
			if time.Now().After(deadline) {
				t.Errorf("%s = %s after 60s, want %s", c.query, last, c.want)
				break
			}
			time.Sleep(500 * time.Millisecond)
		}
	}

	// The endpoint serves only contract names besides the library's, Go's,
	// process and promhttp's own.
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", p.httpPort))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, line := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(line, "# TYPE nfs_provisioner_") {
			continue
		}
		name := strings.Fields(line)[2]
		if _, ok := metrics.Names[name]; !ok {
			t.Errorf("served %s, which is not in the contract", name)
		}
	}
}

func eq(want float64) func(float64) bool      { return func(v float64) bool { return v == want } }
func atLeast(want float64) func(float64) bool { return func(v float64) bool { return v >= want } }
func atMost(want float64) func(float64) bool  { return func(v float64) bool { return v <= want } }
