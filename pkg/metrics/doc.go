// Package metrics serves the provisioner's Prometheus metrics: the
// provisioning library's own counters, Go runtime and process collectors,
// and the nfs_provisioner_* metrics listed in Names.
//
// The names and labels are a contract: the alert rules and the dashboard
// under deploy/monitoring use them, and a test checks that they use nothing
// else. Label cardinality is bounded by the number of volumes: per-volume
// series carry only the PV, its claim's namespace and name.
//
// Everything lives in a registry of its own (no global state). The library
// registers its metrics on prometheus' global registry only when it serves
// them itself (controller.MetricsPort); the provisioner never asks it to,
// and hands it Library() through controller.MetricsInstance instead, so one
// endpoint serves everything.
//
// How fresh the values are:
//   - store, volume capacity, filesystem volumes' used bytes (statfs), the
//     ganesha gauges and the NFS I/O counters are read when scraped;
//   - directory volumes' used bytes come from a background scan that walks
//     every directory volume at a bounded rate (files per second), once per
//     interval. A value is at most interval + the duration of one full scan
//     old; nfs_provisioner_volume_usage_scan_timestamp_seconds says when the
//     last scan ended and nfs_provisioner_volume_usage_scan_duration_seconds
//     how long it took. With the scan switched off (interval 0) directory
//     volumes have no used-bytes series at all, rather than a stale one.
package metrics
