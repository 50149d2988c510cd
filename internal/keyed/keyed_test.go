package keyed

import (
	"sync"
	"testing"
	"time"
)

func TestLockSerialisesOneKeyOnly(t *testing.T) {
	var k Mutex
	unlock := k.Lock("a")
	other := make(chan struct{})
	go func() { k.Lock("b")(); close(other) }()
	select {
	case <-other:
	case <-time.After(5 * time.Second):
		t.Fatal("another key waited for a")
	}
	same := make(chan struct{})
	go func() { k.Lock("a")(); close(same) }()
	select {
	case <-same:
		t.Fatal("a was locked twice")
	case <-time.After(50 * time.Millisecond):
	}
	unlock()
	<-same
	if len(k.locks) != 0 {
		t.Fatalf("entries left: %v", k.locks)
	}
}

func TestLockPairNeverDeadlocks(t *testing.T) {
	var k Mutex
	var wg sync.WaitGroup
	for i := 0; i < 100; i++ {
		wg.Add(2)
		go func() { defer wg.Done(); k.LockPair("x", "y")() }()
		go func() { defer wg.Done(); k.LockPair("y", "x")() }()
	}
	wg.Wait()
	k.LockPair("z", "z")()
}
