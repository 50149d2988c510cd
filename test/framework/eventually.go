package framework

import (
	"testing"
	"time"
)

// PollInterval is how often Eventually checks; controllers act within
// milliseconds here, so a short interval keeps tests fast.
const PollInterval = 100 * time.Millisecond

// Eventually checks cond every PollInterval until it returns true, and fails
// the test if that does not happen within timeout. what describes the awaited
// state for the failure message ("PVC x bound"). cond returns (false, nil) to
// keep waiting; an error fails the test at once, since an unexpected error
// rarely cures itself and waiting would only hide it.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	start := time.Now()
	deadline := start.Add(timeout)
	for checks := 1; ; checks++ {
		ok, err := cond()
		if err != nil {
			t.Fatalf("waiting for %s: %v (after %v, %d checks)", what, err, time.Since(start).Round(time.Millisecond), checks)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s (%d checks)", timeout, what, checks)
		}
		time.Sleep(PollInterval)
	}
}
