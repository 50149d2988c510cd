// Command demo shows the whole system working on one machine, with no
// cluster and no container runtime: a real control plane (etcd,
// kube-apiserver, kube-controller-manager) on loopback, the provisioner with
// its embedded NFS-Ganesha, the shipped StorageClass and MySQL StatefulSet,
// and a real NFS client. `make demo` runs it.
//
//	demo                 run every step, then stop everything
//	demo -keep           leave the cluster and provisioner running (make demo KEEP=1)
//	demo -stop           stop what a -keep run left running (make demo-stop)
//
// Ctrl-C at any point stops everything it started.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"k8s.io/klog/v2"
)

type config struct {
	repo        string // repository root: deploy/ and bin/ are read from it
	provisioner string // the provisioner binary
	workDir     string // where the demo keeps its cluster, store and logs
	keep        bool
	supervise   bool // internal: the detached half of -keep
}

func main() {
	var cfg config
	var stop bool
	flag.StringVar(&cfg.repo, "repo", ".", "Repository root.")
	flag.StringVar(&cfg.provisioner, "provisioner-bin", "bin/nfs-provisioner", "Provisioner binary (make build).")
	flag.StringVar(&cfg.workDir, "work-dir", filepath.Join(os.TempDir(), "nfs-provisioner-demo"), "Directory for the demo's cluster, store and logs.")
	flag.BoolVar(&cfg.keep, "keep", os.Getenv("KEEP") == "1", "Leave everything running; stop it later with -stop.")
	flag.BoolVar(&stop, "stop", false, "Stop what a -keep run left running.")
	flag.BoolVar(&cfg.supervise, "supervise", false, "Internal: run as the detached supervisor of a -keep run.")
	klogFlags := flag.NewFlagSet("klog", flag.ExitOnError)
	klog.InitFlags(klogFlags)
	_ = klogFlags.Set("v", "0")
	flag.Parse()
	// The demo prints its own story; the libraries' info logs would drown it.
	_ = klogFlags.Set("stderrthreshold", "ERROR")
	_ = klogFlags.Set("logtostderr", "false")
	_ = klogFlags.Set("log_file", filepath.Join(os.TempDir(), "nfs-provisioner-demo.klog"))

	var err error
	switch {
	case stop:
		err = stopKept(cfg.workDir)
	case cfg.keep && !cfg.supervise:
		err = startKept(cfg)
	default:
		ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		defer cancel()
		err = run(ctx, cfg)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo: FAILED: %v\n", err)
		os.Exit(1)
	}
}

// say prints one line of the demo's story with the time since start.
type narrator struct{ start time.Time }

func (n narrator) say(format string, args ...any) {
	fmt.Printf("demo [%6.1fs] %s\n", time.Since(n.start).Seconds(), fmt.Sprintf(format, args...))
}
