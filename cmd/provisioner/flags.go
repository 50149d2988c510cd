package main

import (
	"flag"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// options are the command-line flags. The first group keeps the names,
// meanings and defaults of the upstream nfs-provisioner image, so that
// Kubernetes' storage e2e suite can start this binary in its place.
type options struct {
	provisioner      string
	kubeconfig       string
	master           string
	runServer        bool
	gracePeriod      int
	serverHostname   string
	exportSubnet     string
	maxExports       int
	leaderElect      bool
	deviceBasedFSIDs bool
	enableXFSQuota   bool

	exportDir         string
	nfsPort           int
	mountdPort        int
	nfsVersions       string
	bindAddress       string
	kubeAPIQPS        float64
	kubeAPIBurst      int
	httpAddress       string
	threads           int
	runtimeDir        string
	reconcileInterval time.Duration
	intentGrace       time.Duration
	overcommit        float64
	provisionTimeout  time.Duration
	deletionTimeout   time.Duration

	useNFSv3      bool // derived from nfsVersions
	exportClients []string

	usageScanInterval time.Duration
	usageScanRate     int

	cephConf, cephKeyring, cephUser, cephFS, cephGroup string

	failover failoverOptions
}

func (o *options) register(fs *flag.FlagSet) {
	fs.StringVar(&o.provisioner, "provisioner", "example.com/nfs", "Name of the provisioner; StorageClasses name it in their provisioner field.")
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "Path to a kubeconfig; only for running outside a cluster.")
	fs.StringVar(&o.master, "master", "", "Kubernetes API server address; only for running outside a cluster.")
	fs.BoolVar(&o.runServer, "run-server", true, "Start and supervise the embedded NFS-Ganesha. With false, ganesha is managed elsewhere and only its D-Bus export manager is used.")
	fs.IntVar(&o.gracePeriod, "grace-period", 90, "NFSv4 grace period in seconds after a server start, 0 to 180; 0 skips the grace period.")
	fs.StringVar(&o.serverHostname, "server-hostname", "", "NFS server address written into PVs. Default: the ClusterIP of Service $SERVICE_NAME in $POD_NAMESPACE, else $POD_IP.")
	fs.StringVar(&o.exportSubnet, "export-subnet", "*", "Clients every export is restricted to: *, or a comma list of addresses, CIDRs or host names.")
	fs.IntVar(&o.maxExports, "max-exports", -1, "Most volumes this provisioner makes; negative means no limit.")
	fs.BoolVar(&o.leaderElect, "leader-elect", false, "Take a coordination.k8s.io Lease in $POD_NAMESPACE before provisioning. Not needed for one store: the store's lock already makes one process its only writer. Losing the lease pauses provisioning only; NFS service goes on.")
	fs.BoolVar(&o.deviceBasedFSIDs, "device-based-fsids", true, "Accepted for compatibility and ignored: exports always get stable, device-independent fsids, so file handles survive a move to another node.")
	fs.BoolVar(&o.enableXFSQuota, "enable-xfs-quota", false, "Not supported yet; true fails at start-up.")

	fs.StringVar(&o.exportDir, "export-dir", "/export", "The local store: volumes are directories in it, and the provisioner's state lives in its hidden "+".nfs-provisioner directory.")
	fs.IntVar(&o.nfsPort, "nfs-port", 2049, "NFS port.")
	fs.IntVar(&o.mountdPort, "mountd-port", 20048, "NFSv3 MOUNT protocol port.")
	fs.StringVar(&o.nfsVersions, "nfs-versions", "3,4", "NFS versions served: 3,4 or 4. NFSv4 alone needs no rpcbind.")
	fs.StringVar(&o.bindAddress, "bind-address", "", "Address ganesha listens on; default all.")
	fs.Float64Var(&o.kubeAPIQPS, "kube-api-qps", 100, "Queries per second to the API server (client-go's default of 5 throttles a burst of claims).")
	fs.IntVar(&o.kubeAPIBurst, "kube-api-burst", 200, "Burst of queries to the API server.")
	fs.StringVar(&o.httpAddress, "http-address", ":8080", "Address of /healthz, /readyz and /metrics; empty turns them off.")
	fs.IntVar(&o.threads, "worker-threads", 8, "Claims and volumes worked on at once.")
	fs.StringVar(&o.runtimeDir, "runtime-dir", "", "Where ganesha's D-Bus socket, PID files and capped logs live while it runs; never on an exported filesystem. Default: /run/nfs-provisioner/<hash of the export dir>.")
	fs.DurationVar(&o.reconcileInterval, "reconcile-interval", time.Minute, "How often exports are reconciled with the PVs (also on every PV change). Reconciliation never removes data.")
	fs.DurationVar(&o.intentGrace, "intent-grace", 10*time.Minute, "How long an unfinished provision waits for its PV before what it made may be removed, once its claim is gone or bound elsewhere.")
	fs.Float64Var(&o.overcommit, "overcommit", 1.0, "How many times the store's size the sizes of filesystem volumes (fsType) may add up to; 1 means no overcommit.")
	fs.DurationVar(&o.provisionTimeout, "provision-timeout", 10*time.Minute, "Longest one Provision call may take, a clone's copy included; the library retries after it.")
	fs.DurationVar(&o.deletionTimeout, "deletion-timeout", 5*time.Minute, "Longest one Delete call may take; the library retries after it.")
	fs.DurationVar(&o.usageScanInterval, "volume-usage-scan-interval", 5*time.Minute, "Pause between walks of directory volumes for nfs_provisioner_volume_used_bytes; a value is at most this plus one walk old. 0 turns the walk off (no used-bytes series for directory volumes).")
	fs.IntVar(&o.usageScanRate, "volume-usage-scan-rate", 2000, "Most files per second the directory usage walk looks at.")

	fs.StringVar(&o.cephConf, "ceph-conf", "", "ceph.conf of the Ceph cluster CephFS volumes (fsType: cephfs) are made in; empty: no CephFS volumes. Needs the image variant with Ceph.")
	fs.StringVar(&o.cephKeyring, "ceph-keyring", "", "Keyring of -ceph-user; default: what -ceph-conf says.")
	fs.StringVar(&o.cephUser, "ceph-user", "admin", "cephx id (without \"client.\") the provisioner manages CephFS volumes as; docs/volume-kinds.md lists the caps it needs.")
	fs.StringVar(&o.cephFS, "ceph-fs", "cephfs", "The CephFS volumes are made in.")
	o.failover.register(fs)
	fs.StringVar(&o.cephGroup, "ceph-subvolume-group", "nfs-provisioner", "Subvolume group of this store's volumes, and the prefix of their cephx ids; one per store sharing a cluster.")
}

// validate checks the flags together and fills in the derived fields.
func (o *options) validate() error {
	if o.provisioner == "" {
		return fmt.Errorf("-provisioner must not be empty")
	}
	if o.gracePeriod < 0 || o.gracePeriod > 180 {
		return fmt.Errorf("-grace-period=%d: want 0 to 180 seconds", o.gracePeriod)
	}
	if o.enableXFSQuota {
		return fmt.Errorf("-enable-xfs-quota=true is not supported yet: this provisioner does not enforce per-volume quotas; start without it")
	}
	for _, p := range []struct {
		name string
		v    int
	}{{"-nfs-port", o.nfsPort}, {"-mountd-port", o.mountdPort}} {
		if p.v < 1 || p.v > 65535 {
			return fmt.Errorf("%s=%d: want a port from 1 to 65535", p.name, p.v)
		}
	}
	if o.nfsPort == o.mountdPort {
		return fmt.Errorf("-nfs-port and -mountd-port are both %d", o.nfsPort)
	}
	v3, err := parseVersions(o.nfsVersions)
	if err != nil {
		return err
	}
	o.useNFSv3 = v3
	if o.exportDir == "" {
		return fmt.Errorf("-export-dir must not be empty")
	}
	if o.kubeAPIQPS <= 0 || o.kubeAPIBurst <= 0 {
		return fmt.Errorf("-kube-api-qps and -kube-api-burst must be positive")
	}
	if o.reconcileInterval < time.Second {
		return fmt.Errorf("-reconcile-interval=%s: want at least 1s", o.reconcileInterval)
	}
	if o.intentGrace <= 0 {
		return fmt.Errorf("-intent-grace=%s: want more than 0", o.intentGrace)
	}
	if o.overcommit < 1 || o.overcommit > 100 {
		return fmt.Errorf("-overcommit=%g: want 1 (none) to 100", o.overcommit)
	}
	if o.provisionTimeout < 10*time.Second || o.deletionTimeout < 10*time.Second {
		return fmt.Errorf("-provision-timeout and -deletion-timeout must be at least 10s")
	}
	if o.usageScanInterval < 0 || o.usageScanRate < 1 {
		return fmt.Errorf("-volume-usage-scan-interval=%v must not be negative and -volume-usage-scan-rate=%d must be at least 1", o.usageScanInterval, o.usageScanRate)
	}
	if o.cephConf != "" && !filepath.IsAbs(o.cephConf) || o.cephKeyring != "" && !filepath.IsAbs(o.cephKeyring) {
		return fmt.Errorf("-ceph-conf=%q and -ceph-keyring=%q must be absolute paths", o.cephConf, o.cephKeyring)
	}
	if err := o.failover.validate(o); err != nil {
		return err
	}
	if o.threads < 1 {
		return fmt.Errorf("-worker-threads=%d: want at least 1", o.threads)
	}
	o.exportClients = nil
	for _, c := range strings.Split(o.exportSubnet, ",") {
		if c = strings.TrimSpace(c); c != "" && c != "*" {
			o.exportClients = append(o.exportClients, c)
		}
	}
	return nil
}

// parseVersions reads -nfs-versions and reports whether NFSv3 is on. NFSv4
// is always served: the e2e suite and the shipped StorageClass mount 4.1.
func parseVersions(s string) (v3 bool, err error) {
	v4 := false
	for _, part := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(part))
		switch {
		case err != nil:
			return false, fmt.Errorf("-nfs-versions=%q: %q is not a version number", s, part)
		case n == 3:
			v3 = true
		case n == 4:
			v4 = true
		default:
			return false, fmt.Errorf("-nfs-versions=%q: version %d is not served (want 3 and/or 4)", s, n)
		}
	}
	if !v4 {
		return false, fmt.Errorf("-nfs-versions=%q: NFSv4 cannot be turned off", s)
	}
	return v3, nil
}
