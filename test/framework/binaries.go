package framework

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// binaryNames are the programs hack/build-controlplane.sh builds.
var binaryNames = []string{"etcd", "kube-apiserver", "kube-controller-manager"}

// buildHint is part of every "binaries missing" error, so that a failing test
// says how to fix it.
const buildHint = "build them with `make deps` or `hack/build-controlplane.sh` (a cold build takes about 7 minutes), or point CONTROLPLANE_BIN at a directory holding etcd, kube-apiserver and kube-controller-manager"

// BinDir returns the directory holding the control-plane binaries and checks
// that all of them are there. $CONTROLPLANE_BIN wins; otherwise it is the
// cache directory hack/build-controlplane.sh uses, found from the repository
// that contains the working directory.
func BinDir() (string, error) {
	if dir := os.Getenv("CONTROLPLANE_BIN"); dir != "" {
		if err := checkBinaries(dir, false); err != nil {
			return "", fmt.Errorf("CONTROLPLANE_BIN=%s: %w", dir, err)
		}
		return dir, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find control-plane binaries: %w", err)
	}
	root, err := repoRoot(wd)
	if err != nil {
		return "", fmt.Errorf("find control-plane binaries: %w; %s", err, buildHint)
	}
	dir, err := defaultBinDir(root)
	if err != nil {
		return "", fmt.Errorf("find control-plane binaries: %w", err)
	}
	// The cache dir of a build that is still running or was interrupted
	// holds some binaries but no .complete marker.
	if err := checkBinaries(dir, true); err != nil {
		return "", err
	}
	return dir, nil
}

func checkBinaries(dir string, needMarker bool) error {
	var missing []string
	for _, name := range binaryNames {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("control-plane binaries %v missing in %s: %s", missing, dir, buildHint)
	}
	if needMarker {
		if _, err := os.Stat(filepath.Join(dir, ".complete")); err != nil {
			return fmt.Errorf("control-plane build in %s is incomplete (no .complete marker; is a build still running?): %s", dir, buildHint)
		}
	}
	return nil
}

// repoRoot walks up from dir to the directory that contains hack/controlplane,
// so that tests find the cache key from any package directory.
func repoRoot(dir string) (string, error) {
	for d := dir; ; {
		if fi, err := os.Stat(filepath.Join(d, "hack", "controlplane")); err == nil && fi.IsDir() {
			return d, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", fmt.Errorf("no directory above %s contains hack/controlplane", dir)
		}
		d = parent
	}
}

// defaultBinDir must agree with hack/build-controlplane.sh: the cache is keyed
// by the first 12 hex digits of sha256(go.mod || go.sum) of hack/controlplane.
func defaultBinDir(root string) (string, error) {
	h := sha256.New()
	for _, name := range []string{"go.mod", "go.sum"} {
		b, err := os.ReadFile(filepath.Join(root, "hack", "controlplane", name))
		if err != nil {
			return "", fmt.Errorf("cache key: %w", err)
		}
		h.Write(b)
	}
	key := hex.EncodeToString(h.Sum(nil))[:12]
	cacheRoot, err := cacheRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(cacheRoot, key), nil
}

// cacheRoot mirrors the script's
// ${CONTROLPLANE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nfs-provisioner/controlplane};
// as in the shell, an empty variable counts as unset.
func cacheRoot() (string, error) {
	if d := os.Getenv("CONTROLPLANE_CACHE"); d != "" {
		return d, nil
	}
	base := os.Getenv("XDG_CACHE_HOME")
	if base == "" {
		home := os.Getenv("HOME")
		if home == "" {
			return "", errors.New("cache key: neither XDG_CACHE_HOME nor HOME is set")
		}
		base = filepath.Join(home, ".cache")
	}
	return filepath.Join(base, "nfs-provisioner", "controlplane"), nil
}
