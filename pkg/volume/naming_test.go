package volume

import (
	"strings"
	"testing"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/storage"
)

func TestDirectoryName(t *testing.T) {
	pv := "pvc-0b8c7f2e-6f0e-4c61-9a55-0123456789ab"
	if got, want := DirectoryName("db", "data-mysql-0", pv), "db-data-mysql-0-"+pv; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	// Longest names Kubernetes allows: the result still fits and keeps the PV name whole.
	long := DirectoryName(strings.Repeat("n", 63), strings.Repeat("c", 253), pv)
	if len(long) > 255 || !strings.HasSuffix(long, "-"+pv) {
		t.Fatalf("long name %q (%d bytes) does not fit or lost the PV name", long, len(long))
	}
	for _, name := range []string{
		DirectoryName("ns", "../../etc", pv),
		DirectoryName("..", "x/y", pv),
		DirectoryName("", "", "../pv"),
		DirectoryName("ns", "a\x00b", pv),
	} {
		if err := storage.CheckName(name); err != nil {
			t.Errorf("DirectoryName produced an unsafe name %q: %v", name, err)
		}
	}
}

func TestCheckName(t *testing.T) {
	for _, bad := range []string{"", ".", "..", ".hidden", "a/b", "../x", "a\x00", strings.Repeat("x", 256)} {
		if storage.CheckName(bad) == nil {
			t.Errorf("CheckName(%q) accepted it", bad)
		}
	}
	if err := storage.CheckName("ns-claim-pvc-1"); err != nil {
		t.Errorf("rejected a good name: %v", err)
	}
}

func TestBoundTo(t *testing.T) {
	pv := "pvc-0b8c7f2e"
	if !boundTo(DirectoryName("db", "data", pv), pv) || !boundTo(pv, pv) {
		t.Fatal("a volume named for its PV is not bound to it")
	}
	for _, other := range []string{"db-data-pvc-1111", "pvc-0b8c7f2e-x", "xpvc-0b8c7f2e"} {
		if boundTo(other, pv) {
			t.Errorf("volume %q is taken as made for PV %s", other, pv)
		}
	}
}
