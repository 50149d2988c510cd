package e2e

import (
	"fmt"
	"testing"

	"github.com/nfs-provisioner/nfs-provisioner/test/framework"
	"github.com/nfs-provisioner/nfs-provisioner/test/nfsclient"
)

// TestExportSubnet: -export-subnet restricts every export to its clients. A
// real client from 127.0.0.1 writes when the subnet holds it and is refused
// when the subnet names another client (192.0.2.1 is a documentation
// address: only a config value here, nothing is sent to it).
func TestExportSubnet(t *testing.T) {
	for _, tc := range []struct {
		subnet  string
		allowed bool
	}{
		{"127.0.0.0/8", true},
		{"192.0.2.1", false},
	} {
		t.Run(tc.subnet, func(t *testing.T) {
			env := newTestEnv(t, "-export-subnet="+tc.subnet)
			createClaim(t, env.c, framework.Claim(env.ns, "subnet", env.class, "1Mi"))
			pv := waitBound(t, env.c, env.ns, "subnet")
			exports := env.p.exports(t.Context())
			if len(exports) != 1 || len(exports[0].Clients) != 1 || exports[0].Clients[0] != tc.subnet {
				t.Fatalf("exports %+v, want one restricted to %s", exports, tc.subnet)
			}
			for _, version := range []int{3, 4} {
				name := fmt.Sprintf("probe-v%d", version) // libnfs creates exclusively: one name per write
				err := nfsclient.WriteFile(t.Context(), env.p.target(pv, version), name, []byte("x"))
				if tc.allowed && err != nil {
					t.Errorf("NFSv%d client in %s refused: %v", version, tc.subnet, err)
				}
				if !tc.allowed && err == nil {
					t.Errorf("NFSv%d client from 127.0.0.1 could write to an export restricted to %s", version, tc.subnet)
				}
			}
		})
	}
}
