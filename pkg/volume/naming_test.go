package volume

import (
	"strings"
	"testing"
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
		if err := checkDirectoryName(name); err != nil {
			t.Errorf("DirectoryName produced an unsafe name %q: %v", name, err)
		}
	}
}

func TestCheckDirectoryName(t *testing.T) {
	for _, bad := range []string{"", ".", "..", ".hidden", "a/b", "../x", "a\x00", strings.Repeat("x", 256)} {
		if checkDirectoryName(bad) == nil {
			t.Errorf("checkDirectoryName(%q) accepted it", bad)
		}
	}
	if err := checkDirectoryName("ns-claim-pvc-1"); err != nil {
		t.Errorf("rejected a good name: %v", err)
	}
}
