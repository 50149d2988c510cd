package volume

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Provision has returned the PV, and the library has not saved it yet: a
// reconciliation pass in between (another PV's event triggers one) must
// not take the new volume's export for a stray and remove it.
func TestPassBeforeThePVIsSavedKeepsTheExport(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, -1)
	pv, _, err := f.p.Provision(ctx, claimOptions("ns", "c", "1Mi", nil))
	if err != nil {
		t.Fatal(err)
	}
	res, err := f.p.Reconcile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.StrayExports != 0 || len(f.exporter.exports) != 1 {
		t.Fatalf("a pass before the PV was saved: %+v, exports %v", res, f.exporter.exports)
	}
	// Saved: served as every other volume from then on.
	if _, err := f.client.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if res, err := f.p.Reconcile(ctx); err != nil || res.AlreadyExported != 1 {
		t.Fatalf("after the PV was saved: %+v %v", res, err)
	}
	// A PV never saved (the library gave up and called Delete, which
	// failed): after the grace period its export is a stray again.
	if err := f.client.CoreV1().PersistentVolumes().Delete(ctx, pv.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	f.clock.Step(2 * time.Minute)
	if res, err := f.p.Reconcile(ctx); err != nil || res.StrayExports != 1 {
		t.Fatalf("after the grace period: %+v %v", res, err)
	}
}
