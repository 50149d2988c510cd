package cephbed

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/template"
	"time"
)

// Names of the daemons the bed runs: one of each, as in ceph's own
// qa/standalone helpers.
const (
	monID = "a"
	mgrID = "x"
	osdID = "0"
	mdsID = "a"
)

// confTemplate is the cluster's ceph.conf. Every path points into the bed's
// directory, so that nothing lands in /etc/ceph, /var/lib/ceph, /var/run/ceph
// or /var/log/ceph, and two beds on one machine share nothing but the
// kernel. The values that are not Ceph's defaults say why.
var confTemplate = template.Must(template.New("ceph.conf").Parse(`# written by test/framework/cephbed
[global]
fsid = {{.FSID}}
mon_host = [v2:127.0.0.1:{{.MonV2Port}},v1:127.0.0.1:{{.MonV1Port}}]
# Only loopback: the daemons pick ports in ms_bind_port_min..max, skipping
# ports in use, so several beds can run at once.
public_addr = 127.0.0.1
cluster_addr = 127.0.0.1
ms_bind_ipv6 = false
auth_cluster_required = cephx
auth_service_required = cephx
auth_client_required = cephx
auth_allow_insecure_global_id_reclaim = false
keyring = {{.Dir}}/ceph.client.admin.keyring
run_dir = {{.Dir}}/run
crash_dir = {{.Dir}}/crash
log_file = {{.Dir}}/log/$name.log
admin_socket = {{.Dir}}/run/$name.asok
# A single OSD: no replication, no failure domain above the OSD.
osd_pool_default_size = 1
osd_pool_default_min_size = 1
mon_allow_pool_size_one = true
osd_crush_chooseleaf_type = 0
# Few PGs, so that pools are created and peered at once.
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
mon_allow_pool_delete = true
# The root disk of a CI machine is often fuller than Ceph likes.
mon_data_avail_warn = 2
mon_data_avail_crit = 1
mon_warn_on_pool_no_redundancy = false
mon_warn_on_insecure_global_id_reclaim_allowed = false
# volumes (ceph fs subvolume) is always on; nothing else is needed, and
# nothing that listens on a port (dashboard, prometheus).
mgr_initial_modules = iostat
# The mgr imports every module it finds, enabled or not: ~15 s of CPU on a
# 2-core machine, in the middle of the bootstrap. Only the always-on ones
# (without them health is HEALTH_ERR) and iostat are loaded.
mgr_disabled_modules = {{.DisabledMgrModules}}
# PG states reach the mgr every mgr_stats_period: 5 s by default, the
# longest wait of a bootstrap.
mgr_stats_period = 1
mgr_tick_period = 1

[mon]
# Each map change (a pool, the file system, an OSD) waits for the next
# proposal: every second by default.
paxos_propose_interval = 0.1
mon_data = {{.Dir}}/mon/$id
keyring = $mon_data/keyring
mon_cluster_log_file = {{.Dir}}/log/cluster.log

[mgr]
mgr_data = {{.Dir}}/mgr/$id
keyring = $mgr_data/keyring

[osd]
osd_data = {{.Dir}}/osd/$id
keyring = $osd_data/keyring
osd_objectstore = bluestore
# Outside osd_data: bluestore's own "block" symlink to a file inside the
# data dir fails mkfs ("Too many levels of symbolic links").
bluestore_block_path = {{.Dir}}/osd/block.$id
bluestore_block_create = true
# A sparse file: only what is written takes disk space.
bluestore_block_size = {{.BlockSize}}
bluestore_fsck_on_mkfs = false
bluestore_fsck_on_mount = false
osd_memory_target = 1073741824
# Fewer op shards than the 5 of a "rotational" device: each one costs
# start-up time, and one client does not need them.
osd_op_num_shards = 2
osd_op_num_threads_per_shard = 1

[mds]
mds_data = {{.Dir}}/mds/$id
keyring = $mds_data/keyring
mds_cache_memory_limit = 268435456
# The MDS reports state changes (creating -> active) and its exit in
# beacons: every 4 s by default, which is what a bootstrap and a stop
# waited for. The mon still waits mds_beacon_grace (15 s) for a silent one.
mds_beacon_interval = 1

[client]
# Per process: the ceph CLI, ceph-fuse and every libcephfs user (ganesha)
# would otherwise fight over one socket.
admin_socket = {{.Dir}}/run/$name.$pid.asok
client_oc_size = 33554432
`))

type confParams struct {
	Dir                  string
	FSID                 string
	MonV2Port, MonV1Port int
	BlockSize            int64
	DisabledMgrModules   string
}

func writeConf(path string, p confParams) error {
	var b bytes.Buffer
	if err := confTemplate.Execute(&b, p); err != nil {
		return err
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}

// newCephxKey returns a fresh cephx secret in the form ceph-authtool
// --gen-print-key prints: base64 of a CryptoKey (type AES, creation time,
// length, 16 random bytes). Making it here saves a process per key.
func newCephxKey() (string, error) {
	secret := make([]byte, 16)
	if _, err := rand.Read(secret); err != nil {
		return "", err
	}
	now := time.Now()
	b := make([]byte, 0, 28)
	b = binary.LittleEndian.AppendUint16(b, 1) // CEPH_CRYPTO_AES
	b = binary.LittleEndian.AppendUint32(b, uint32(now.Unix()))
	b = binary.LittleEndian.AppendUint32(b, uint32(now.Nanosecond()))
	b = binary.LittleEndian.AppendUint16(b, uint16(len(secret)))
	b = append(b, secret...)
	return base64.StdEncoding.EncodeToString(b), nil
}

// entity is one cephx identity with its capabilities, as a keyring holds it.
type entity struct {
	name string            // "mon.", "client.admin", "osd.0"
	key  string            // newCephxKey
	caps map[string]string // service -> cap string
}

// writeKeyring writes entities in ceph's keyring format, readable only by
// the owner (ceph warns about, and some tools refuse, looser modes).
func writeKeyring(path string, entities ...entity) error {
	var b strings.Builder
	for _, e := range entities {
		fmt.Fprintf(&b, "[%s]\n\tkey = %s\n", e.name, e.key)
		services := make([]string, 0, len(e.caps))
		for s := range e.caps {
			services = append(services, s)
		}
		sort.Strings(services)
		for _, s := range services {
			fmt.Fprintf(&b, "\tcaps %s = %q\n", s, e.caps[s])
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(b.String()), 0o600)
}
