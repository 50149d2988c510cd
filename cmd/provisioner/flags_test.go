package main

import (
	"flag"
	"io"
	"slices"
	"strings"
	"testing"
)

func parse(t *testing.T, args ...string) (*options, error) {
	t.Helper()
	var o options
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	o.register(fs)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	return &o, o.validate()
}

func TestFlagDefaultsMatchUpstream(t *testing.T) {
	o, err := parse(t)
	if err != nil {
		t.Fatal(err)
	}
	if o.provisioner != "example.com/nfs" || !o.runServer || o.gracePeriod != 90 || o.exportSubnet != "*" ||
		o.maxExports != -1 || o.leaderElect || o.exportDir != "/export" || o.nfsPort != 2049 || o.mountdPort != 20048 ||
		!o.useNFSv3 || o.exportClients != nil {
		t.Fatalf("defaults differ from the upstream contract: %+v", o)
	}
}

func TestFlagsBothDashStyles(t *testing.T) {
	// Kubernetes' storage e2e suite passes -provisioner=... -grace-period=0.
	o, err := parse(t, "-provisioner=example.com/nfs-e2e", "--grace-period=0", "-export-subnet=10.0.0.0/8, 192.168.1.5")
	if err != nil {
		t.Fatal(err)
	}
	if o.provisioner != "example.com/nfs-e2e" || o.gracePeriod != 0 || !slices.Equal(o.exportClients, []string{"10.0.0.0/8", "192.168.1.5"}) {
		t.Fatalf("%+v", o)
	}
}

func TestFlagValidation(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-grace-period=-1"}, "want 0 to 180"},
		{[]string{"-grace-period=181"}, "want 0 to 180"},
		{[]string{"-enable-xfs-quota=true"}, "not supported yet"},
		{[]string{"-nfs-versions=4,5"}, "version 5 is not served"},
		{[]string{"-nfs-versions=3"}, "NFSv4 cannot be turned off"},
		{[]string{"-nfs-versions=x"}, "not a version number"},
		{[]string{"-nfs-port=0"}, "want a port"},
		{[]string{"-nfs-port=2049", "-mountd-port=2049"}, "both 2049"},
		{[]string{"-provisioner="}, "must not be empty"},
		{[]string{"-export-dir="}, "must not be empty"},
		{[]string{"-ceph-conf=ceph.conf"}, "must be absolute paths"},
		{[]string{"-ceph-conf=/etc/ceph/ceph.conf", "-ceph-keyring=keyring"}, "must be absolute paths"},
		{[]string{"-kube-api-qps=0"}, "must be positive"},
		{[]string{"-worker-threads=0"}, "at least 1"},
		{[]string{"-volume-usage-scan-interval=-1s"}, "must not be negative"},
		{[]string{"-volume-usage-scan-rate=0"}, "must be at least 1"},
	} {
		_, err := parse(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want one containing %q", tc.args, err, tc.want)
		}
	}
	o, err := parse(t, "-nfs-versions=4")
	if err != nil || o.useNFSv3 {
		t.Fatalf("-nfs-versions=4: %v, v3=%v", err, o.useNFSv3)
	}
}

func TestFailoverFlags(t *testing.T) {
	ceph := "-ceph-conf=/etc/ceph/ceph.conf"
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-failover", ceph}, "needs -leader-elect"},
		{[]string{"-failover", "-leader-elect"}, "needs -ceph-conf"},
		{[]string{"-failover", "-leader-elect", ceph, "-run-server=false"}, "needs -run-server"},
		{[]string{"-failover", "-leader-elect", ceph, "-failover-renew-deadline=5s"}, "must hold"},
		{[]string{"-failover", "-leader-elect", ceph, "-failover-retry-period=3s"}, "must hold"},
		{[]string{"-failover", "-leader-elect", ceph, "-failover-retry-period=0"}, "must hold"},
	} {
		if _, err := parse(t, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want %q", tc.args, err, tc.want)
		}
	}
	o, err := parse(t, "-failover", "-leader-elect", ceph, "-ceph-subvolume-group=team-a")
	if err != nil {
		t.Fatal(err)
	}
	f := o.failover
	if f.stateSubvolume != "team-a-state" || f.leaseDuration.Seconds() != 5 || f.renewDeadline.Seconds() != 3 ||
		f.retryPeriod.Seconds() != 1 || f.radosPool != "nfs-ganesha" {
		t.Fatalf("defaults: %+v", f)
	}
	if o, err := parse(t, ceph); err != nil || o.failover.enabled {
		t.Fatalf("failover on by default: %+v %v", o, err)
	}
}
