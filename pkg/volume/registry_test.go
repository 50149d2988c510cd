package volume

import (
	"sync"
	"testing"
)

func TestRegistryReserve(t *testing.T) {
	r := newRegistry()
	a, _ := r.reserve("pv-a", "a")
	b, _ := r.reserve("pv-b", "b")
	if a == b || a == 0 || b == 0 {
		t.Fatalf("ids %d and %d", a, b)
	}
	if again, _ := r.reserve("pv-a", "a"); again != a {
		t.Fatalf("second reserve for pv-a gave %d, want %d", again, a)
	}
	r.release("pv-a")
	c, _ := r.reserve("pv-c", "c")
	if c == a {
		t.Fatalf("a just-freed id %d was handed out at once", a)
	}
	r.markForeign(c + 1)
	d, _ := r.reserve("pv-d", "d")
	if d == c+1 {
		t.Fatalf("foreign id %d was handed out", d)
	}
}

func TestRegistryClaimConflict(t *testing.T) {
	r := newRegistry()
	if err := r.claim("old", "o", 7); err != nil {
		t.Fatal(err)
	}
	if err := r.claim("young", "y", 7); err == nil {
		t.Fatal("two PVs could claim export id 7")
	}
	// After a restart, new IDs continue above the highest one in use.
	if id, _ := r.reserve("new", "n"); id != 8 {
		t.Fatalf("reserve after claim(7) gave %d, want 8", id)
	}
}

func TestRegistryExhaustionAndConcurrency(t *testing.T) {
	r := newRegistry()
	var wg sync.WaitGroup
	ids := make([]uint16, 200)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ids[i], _ = r.reserve(string(rune('a'+i%26))+string(rune(i)), "d")
		}()
	}
	wg.Wait()
	seen := map[uint16]bool{}
	for _, id := range ids {
		if seen[id] {
			t.Fatalf("id %d handed out twice", id)
		}
		seen[id] = true
	}
	full := newRegistry()
	for id := 1; id <= 65535; id++ {
		full.owner[uint16(id)] = "x"
	}
	if _, err := full.reserve("one-more", "d"); err == nil {
		t.Fatal("reserve succeeded with every id taken")
	}
}
