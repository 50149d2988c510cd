package framework

import (
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	// The Pdeathsig test re-runs this binary as a helper that must die
	// without running any test or Main's cleanup.
	if mode := os.Getenv(helperEnv); mode != "" {
		runHelper(mode)
		return
	}
	os.Exit(Main(m))
}
