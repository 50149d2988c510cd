package framework

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"
)

// sharedStartTimeout is generous against StartupBudget: a loaded CI machine
// running several test packages at once should fail on the budget check in
// the framework's own tests, not on a timeout here.
const sharedStartTimeout = 2 * time.Minute

// shared is the one cluster a test package uses. Main owns it: Shared starts
// it on first use and Main stops it after the last test.
var shared struct {
	mainRunning bool
	once        sync.Once
	cluster     *Cluster
	err         error
}

// Main runs the package's tests and then stops the shared cluster, whether
// the tests passed, failed or were skipped. Call it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(framework.Main(m)) }
//
// The cluster starts on the first Shared call rather than here, so that
// `go test -short` and a -run selecting only unit tests cost nothing. If it
// could not start, Main's result is non-zero even when no test noticed.
// When a test failed, the control-plane logs are kept and their path printed.
func Main(m *testing.M) int {
	shared.mainRunning = true
	code := m.Run()
	if shared.err != nil {
		fmt.Fprintf(os.Stderr, "framework: the control plane did not start: %v\n", shared.err)
		code = 1
	}
	if c := shared.cluster; c != nil {
		keepLogs := code != 0
		if err := c.stop(keepLogs); err != nil {
			fmt.Fprintf(os.Stderr, "framework: stopping the control plane: %v\n", err)
			code = 1
		}
		if keepLogs {
			fmt.Fprintf(os.Stderr, "framework: control-plane logs kept in %s/logs\n", c.Dir)
		}
	}
	return code
}

// Shared returns the package's cluster, starting it on first use. In -short
// mode it skips the test. If the cluster cannot start (for example because
// the binaries are not built) every test that needs it fails with the reason.
func Shared(t testing.TB) *Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("needs the control plane")
	}
	if !shared.mainRunning {
		t.Fatal("framework: Shared needs TestMain to call framework.Main, which stops the cluster")
	}
	shared.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), sharedStartTimeout)
		defer cancel()
		shared.cluster, shared.err = Start(ctx, Options{})
	})
	if shared.err != nil {
		t.Fatalf("framework: %v", shared.err)
	}
	return shared.cluster
}
