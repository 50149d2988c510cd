package framework

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A Go program that hangs says where: mainStack returns its main
// goroutine's stack, naming the function it waits in.
func TestMainStackNamesWhereAProgramWaits(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "main.go")
	if err := os.WriteFile(src, []byte("package main\n\nimport \"time\"\n\nfunc waitForever() { time.Sleep(time.Hour) }\n\nfunc main() { waitForever() }\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "hang")
	cmd := exec.Command("go", "build", "-o", bin, src)
	cmd.Env = append(os.Environ(), "GOFLAGS=", "GO111MODULE=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	p, err := Launch(ProcessSpec{Name: "hang", Path: bin, LogFile: filepath.Join(dir, "hang.log")})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop(DefaultStopGrace)
	// SIGQUIT before the Go runtime installed its handler would kill
	// the program without a dump; a provisioner that is late is long
	// past that point.
	time.Sleep(300 * time.Millisecond)
	got := mainStack(p)
	if !strings.Contains(got, "goroutine 1 ") || !strings.Contains(got, "main.waitForever") {
		t.Fatalf("mainStack: %q", got)
	}
}
