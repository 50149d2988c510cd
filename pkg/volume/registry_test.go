package volume

import (
	"fmt"
	"sync"
	"testing"
)

func rec(name string) volumeRecord { return volumeRecord{name: name} }

func TestRegistryReserve(t *testing.T) {
	var marks []uint16
	r := newRegistry(0, func(id uint16) error { marks = append(marks, id); return nil })
	a, _ := r.reserve("pv-a", rec("a"), -1)
	b, _ := r.reserve("pv-b", rec("b"), -1)
	if a == b || a == 0 || b == 0 {
		t.Fatalf("ids %d and %d", a, b)
	}
	if again, _ := r.reserve("pv-a", rec("a"), -1); again != a {
		t.Fatalf("second reserve for pv-a gave %d, want %d", again, a)
	}
	r.release("pv-a")
	c, _ := r.reserve("pv-c", rec("c"), -1)
	if c == a {
		t.Fatalf("a just-freed id %d was handed out at once", a)
	}
	r.markForeign(c + 1)
	d, _ := r.reserve("pv-d", rec("d"), -1)
	if d == c+1 {
		t.Fatalf("foreign id %d was handed out", d)
	}
	if len(marks) != 1 || marks[0] < d {
		t.Fatalf("high-water marks recorded %v: want one, covering every ID handed out (up to %d)", marks, d)
	}
	// After a restart, IDs go on from the mark: the freed a is not reused.
	r2 := newRegistry(marks[0], nil)
	if e, _ := r2.reserve("pv-e", rec("e"), -1); e != marks[0]+1 {
		t.Fatalf("after a restart the next ID is %d, want %d", e, marks[0]+1)
	}
	// Past the mark, a new one is recorded before the ID is handed out.
	for i := range markStep {
		id, _ := r.reserve(fmt.Sprintf("pv-%d", i), rec("x"), -1)
		if id > marks[len(marks)-1] {
			t.Fatalf("ID %d handed out above the recorded mark %d", id, marks[len(marks)-1])
		}
	}
	if len(marks) != 2 {
		t.Fatalf("marks %v, want a second one after %d more IDs", marks, markStep)
	}
}

func TestRegistryMaxIsAtomic(t *testing.T) {
	r := newRegistry(0, nil)
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := r.reserve(fmt.Sprintf("pv-%d", i), rec("x"), 2); err == nil {
				mu.Lock()
				ok++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if ok != 2 {
		t.Fatalf("%d of 50 concurrent reserves passed -max-exports=2", ok)
	}
}

func TestRegistryClaimConflict(t *testing.T) {
	r := newRegistry(0, nil)
	if err := r.claim("old", volumeRecord{id: 7, name: "o"}); err != nil {
		t.Fatal(err)
	}
	if err := r.claim("young", volumeRecord{id: 7, name: "y"}); err == nil {
		t.Fatal("two PVs could claim export id 7")
	}
	// A store from before the mark: new IDs continue above the highest in use.
	if id, _ := r.reserve("new", rec("n"), -1); id != 8 {
		t.Fatalf("reserve after claim(7) gave %d, want 8", id)
	}
}

func TestRegistryExhaustionAndConcurrency(t *testing.T) {
	r := newRegistry(0, nil)
	var wg sync.WaitGroup
	ids := make([]uint16, 200)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ids[i], _ = r.reserve(fmt.Sprintf("pv-%d", i), rec("d"), -1)
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
	full := newRegistry(0, nil)
	for id := 1; id <= 65535; id++ {
		full.owner[uint16(id)] = "x"
	}
	if _, err := full.reserve("one-more", rec("d"), -1); err == nil {
		t.Fatal("reserve succeeded with every id taken")
	}
}
