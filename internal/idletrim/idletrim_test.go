package idletrim

import (
	"context"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
)

func TestTrimsOncePerIdleSpell(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Now())
	trims := make(chan struct{}, 10)
	tr := New(10*time.Second, clk, func() { trims <- struct{}{} })
	armed := make(chan struct{}, 10)
	tr.armed = func() { armed <- struct{}{} }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { tr.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	touch := func() {
		tr.Touch()
		<-armed
	}
	noTrim := func(when string) {
		t.Helper()
		select {
		case <-trims:
			t.Fatalf("trimmed %s", when)
		case <-time.After(20 * time.Millisecond):
		}
	}

	touch()
	clk.Step(9 * time.Second)
	noTrim("9 s after work")
	touch() // more work restarts the wait
	clk.Step(9 * time.Second)
	noTrim("9 s after the last of the work")
	clk.Step(time.Second)
	<-trims // 10 s after the last Touch
	clk.Step(time.Hour)
	noTrim("twice in one idle spell")
	touch()
	clk.Step(10 * time.Second)
	<-trims // the next spell trims again
}

func TestTouchNeverBlocks(t *testing.T) {
	tr := New(time.Second, nil, func() {})
	for range 1000 { // nobody runs it
		tr.Touch()
	}
}
