package ganesha

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
)

// Environment of the helper process of TestStaleLeftoversReplaced.
const (
	helperStateEnv  = "GANESHA_TEST_HELPER_STATE"
	helperPortsEnv  = "GANESHA_TEST_HELPER_PORTS"
	helperExportEnv = "GANESHA_TEST_HELPER_EXPORT"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(helperStateEnv); dir != "" {
		runLeftoverHelper(dir)
		return
	}
	os.Exit(m.Run())
}

// runLeftoverHelper plays a provisioner that is about to be SIGKILLed: it
// starts a server whose children survive it, adds one export, reports and
// waits to be killed.
func runLeftoverHelper(stateDir string) {
	var nfsPort, mntPort int
	fmt.Sscanf(os.Getenv(helperPortsEnv), "%d,%d", &nfsPort, &mntPort)
	s, err := NewServer(Config{StateDir: stateDir, BindAddress: "127.0.0.1", NFSPort: nfsPort, MountdPort: mntPort})
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	s.detach = true
	ctx := context.Background()
	if err := s.Start(ctx); err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	e := Export{ID: 7, Path: os.Getenv(helperExportEnv), Pseudo: "/left", Squash: NoRootSquash}
	if err := s.Exports().Add(ctx, e); err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	fmt.Println("READY", strconv.Itoa(s.GaneshaPID()), strconv.Itoa(s.dbusProc.pid()))
	select {}
}
