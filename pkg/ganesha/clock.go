package ganesha

import "time"

// Clock is the time source of the supervisor, replaceable in tests.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// backoff spaces out restarts of a crashing ganesha. The first restart after
// a process that ran stably is immediate (an export outage should be as short
// as possible); each quick failure after that doubles the wait up to max.
type backoff struct {
	initial     time.Duration
	max         time.Duration
	stableAfter time.Duration
	failures    int
}

// next returns how long to wait before the next start, given how long the
// process that just died had run.
func (b *backoff) next(ranFor time.Duration) time.Duration {
	if ranFor >= b.stableAfter {
		b.failures = 0
	}
	var d time.Duration
	if b.failures > 0 {
		d = b.initial
		for i := 1; i < b.failures && d < b.max; i++ {
			d *= 2
		}
		d = min(d, b.max)
	}
	b.failures++
	return d
}
