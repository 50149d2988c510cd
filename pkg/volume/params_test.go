package volume

import (
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/storage"
)

func TestParseParams(t *testing.T) {
	tests := []struct {
		name    string
		in      map[string]string
		want    Params
		wantErr string
	}{
		{name: "defaults", in: nil, want: Params{Mode: 0o777, OnDelete: OnDeleteDelete, Kind: storage.Directory}},
		{name: "all set", in: map[string]string{"uid": "999", "gid": "999", "mode": "0770", "rootSquash": "true", "onDelete": "archive", "mountOptions": "vers=4.1, hard ,,noatime"},
			want: Params{UID: 999, GID: 999, GIDSet: true, Mode: 0o770, RootSquash: true, OnDelete: OnDeleteArchive, MountOptions: []string{"vers=4.1", "hard", "noatime"}, Kind: storage.Directory}},
		{name: "upstream spelling", in: map[string]string{"gid": "none", "rootsquash": "false", "MOUNTOPTIONS": "vers=3"},
			want: Params{Mode: 0o777, OnDelete: OnDeleteDelete, MountOptions: []string{"vers=3"}, Kind: storage.Directory}},
		{name: "setgid mode", in: map[string]string{"mode": "2770"}, want: Params{Mode: 0o770 | os.ModeSetgid, OnDelete: OnDeleteDelete, Kind: storage.Directory}},
		{name: "xfs", in: map[string]string{"fsType": "XFS"}, want: Params{Mode: 0o777, OnDelete: OnDeleteDelete, Kind: storage.XFS}},
		{name: "ext4", in: map[string]string{"fstype": "ext4"}, want: Params{Mode: 0o777, OnDelete: OnDeleteDelete, Kind: storage.Ext4}},
		{name: "cephfs", in: map[string]string{"fsType": "cephfs"}, want: Params{Mode: 0o777, OnDelete: OnDeleteDelete, Kind: storage.CephFS}},
		{name: "fsType unknown", in: map[string]string{"fsType": "btrfs"}, wantErr: "want xfs, ext4 or cephfs"},
		{name: "unknown", in: map[string]string{"archiveOnDelete": "true"}, wantErr: `unknown StorageClass parameter "archiveOnDelete"`},
		{name: "negative uid", in: map[string]string{"uid": "-1"}, wantErr: `uid="-1"`},
		{name: "uid too big", in: map[string]string{"uid": "4294967295"}, wantErr: "0 to 4294967294"},
		{name: "gid text", in: map[string]string{"gid": "mysql"}, wantErr: `gid="mysql"`},
		{name: "mode not octal", in: map[string]string{"mode": "0789"}, wantErr: "octal"},
		{name: "mode too big", in: map[string]string{"mode": "17777"}, wantErr: "octal"},
		{name: "squash", in: map[string]string{"rootSquash": "yes"}, wantErr: "true or false"},
		{name: "onDelete", in: map[string]string{"onDelete": "keep"}, wantErr: "delete, retain or archive"},
		{name: "mount option space", in: map[string]string{"mountOptions": "vers=4.1,a b"}, wantErr: "space"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseParams(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}
