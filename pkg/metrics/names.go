package metrics

// The metric names of the contract. Alert rules, the dashboard and the docs
// use these; TestContract checks that what is served matches.
const (
	Volumes                = "nfs_provisioner_volumes"
	StoreCapacityBytes     = "nfs_provisioner_store_capacity_bytes"
	StoreAvailableBytes    = "nfs_provisioner_store_available_bytes"
	StoreAllocatedBytes    = "nfs_provisioner_store_allocated_bytes"
	VolumeCapacityBytes    = "nfs_provisioner_volume_capacity_bytes"
	VolumeUsedBytes        = "nfs_provisioner_volume_used_bytes"
	VolumeUsageScanTime    = "nfs_provisioner_volume_usage_scan_timestamp_seconds"
	VolumeUsageScanSeconds = "nfs_provisioner_volume_usage_scan_duration_seconds"
	NFSReadBytesTotal      = "nfs_provisioner_nfs_read_bytes_total"
	NFSWriteBytesTotal     = "nfs_provisioner_nfs_write_bytes_total"
	NFSOperationsTotal     = "nfs_provisioner_nfs_operations_total"
	GaneshaUp              = "nfs_provisioner_ganesha_up"
	GaneshaRestartsTotal   = "nfs_provisioner_ganesha_restarts_total"
	ReconcileRunsTotal     = "nfs_provisioner_reconcile_runs_total"
	ReconcileCorrected     = "nfs_provisioner_reconcile_corrected_total"
	ReconcileReported      = "nfs_provisioner_reconcile_reported"
	OperationSeconds       = "nfs_provisioner_operation_duration_seconds"
	DBusCallSeconds        = "nfs_provisioner_dbus_call_duration_seconds"
	CollectErrorsTotal     = "nfs_provisioner_collect_errors_total"
)

// Names are the metric names this package serves of its own, with their
// labels. Histograms also serve _bucket, _sum and _count series.
var Names = map[string][]string{
	Volumes:                {"storageclass", "kind"},
	StoreCapacityBytes:     nil,
	StoreAvailableBytes:    nil,
	StoreAllocatedBytes:    nil,
	VolumeCapacityBytes:    {"persistentvolume", "namespace", "persistentvolumeclaim"},
	VolumeUsedBytes:        {"persistentvolume", "namespace", "persistentvolumeclaim"},
	VolumeUsageScanTime:    nil,
	VolumeUsageScanSeconds: nil,
	NFSReadBytesTotal:      {"persistentvolume"},
	NFSWriteBytesTotal:     {"persistentvolume"},
	NFSOperationsTotal:     {"persistentvolume", "op"},
	GaneshaUp:              nil,
	GaneshaRestartsTotal:   nil,
	ReconcileRunsTotal:     nil,
	ReconcileCorrected:     {"action"},
	ReconcileReported:      {"finding"},
	OperationSeconds:       {"operation", "result"},
	DBusCallSeconds:        {"method", "result"},
	CollectErrorsTotal:     {"source"},
}

// LibraryNames are the metrics of sig-storage-lib-external-provisioner's
// controller, served unchanged (subsystem "controller").
var LibraryNames = []string{
	"controller_persistentvolumeclaim_provision_total",
	"controller_persistentvolumeclaim_provision_failed_total",
	"controller_persistentvolumeclaim_provision_duration_seconds",
	"controller_persistentvolume_delete_total",
	"controller_persistentvolume_delete_failed_total",
	"controller_persistentvolume_delete_duration_seconds",
}
