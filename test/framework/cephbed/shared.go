package cephbed

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
)

// shared is the one cluster a test binary uses. Main owns it: Shared
// starts it on first use and Main closes it after the last test.
var shared struct {
	mainRunning bool
	once        sync.Once
	cluster     *Cluster
	err         error
}

// Runner is what Main runs: a *testing.M, or RunFunc around another
// package's Main (framework.Main, for a test binary that uses both).
type Runner interface{ Run() int }

// RunFunc adapts a function to Runner:
//
//	os.Exit(cephbed.Main(cephbed.RunFunc(func() int { return framework.Main(m) })))
type RunFunc func() int

// Run calls f.
func (f RunFunc) Run() int { return f() }

// Main runs the tests and then closes the shared cluster, whether they
// passed or not. Call it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(cephbed.Main(m)) }
//
// The cluster starts on the first Shared call, so that `go test -short`
// and a -run selecting tests without Ceph cost nothing. When a test failed
// the logs are kept and their path printed.
func Main(m Runner) int {
	shared.mainRunning = true
	code := m.Run()
	if shared.err != nil {
		fmt.Fprintf(os.Stderr, "cephbed: the shared cluster did not start: %v\n", shared.err)
		code = 1
	}
	if c := shared.cluster; c != nil {
		keepLogs := code != 0
		if err := c.close(keepLogs); err != nil {
			fmt.Fprintf(os.Stderr, "cephbed: closing the shared cluster: %v\n", err)
			code = 1
		}
		if keepLogs {
			fmt.Fprintf(os.Stderr, "cephbed: logs kept in %s/log\n", c.Dir)
		}
	}
	return code
}

// Shared returns the test binary's cluster, bootstrapping it on first use
// (its progress goes to that test's log). In -short mode it skips the test.
// Tests sharing it must not depend on each other's leftovers: give each
// its own subvolumes, clients and RADOS namespaces.
func Shared(t testing.TB) *Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("needs a Ceph cluster")
	}
	if !shared.mainRunning {
		t.Fatal("cephbed: Shared needs TestMain to call cephbed.Main, which closes the cluster")
	}
	shared.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), DefaultStartTimeout)
		defer cancel()
		shared.cluster, shared.err = New(ctx, Options{Logf: t.Logf})
		if shared.cluster != nil {
			// Later progress (Restart, Stop) must not go to a finished test.
			shared.cluster.opts.Logf = func(format string, args ...any) {
				fmt.Fprintf(os.Stderr, format+"\n", args...)
			}
		}
	})
	if shared.err != nil {
		t.Fatalf("cephbed: %v", shared.err)
	}
	return shared.cluster
}
