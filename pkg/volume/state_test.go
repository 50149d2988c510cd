package volume

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/storage"
)

// The longest volume name there is gets a ledger record, and a temporary
// file a crash left behind is never read as a volume's record.
func TestLedgerLongNamesAndLeftoverTemps(t *testing.T) {
	s, err := OpenState(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	name := strings.Repeat("n", storage.MaxNameBytes)
	if err := s.SetOwner(name, Owner{PV: "pvc-1", Kind: storage.CephFS, Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if o, ok, err := s.Owner(name); err != nil || !ok || o.PV != "pvc-1" {
		t.Fatalf("Owner: %+v %v %v", o, ok, err)
	}
	if err := os.WriteFile(filepath.Join(s.Dir(), "owners", ".tmp-123"), []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	if names, err := s.Owners(); err != nil || len(names) != 1 || names[0] != name {
		t.Fatalf("Owners: %v %v", names, err)
	}
}
