package framework

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDefaultBinDirAgreesWithBuildScript runs hack/build-controlplane.sh
// itself against a cache dir that holds a complete (dummy) build at the path
// the framework computes: the script then prints that path instead of
// building. go is kept off PATH, so a disagreement fails fast rather than
// starting a real build.
func TestDefaultBinDirAgreesWithBuildScript(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	root, err := repoRoot(wd)
	if err != nil {
		t.Fatal(err)
	}
	tools := t.TempDir()
	for _, tool := range []string{"bash", "dirname", "cat", "sha256sum", "cut"} {
		path, err := exec.LookPath(tool)
		if err != nil {
			t.Fatalf("the build script needs %s: %v", tool, err)
		}
		if err := os.Symlink(path, filepath.Join(tools, tool)); err != nil {
			t.Fatal(err)
		}
	}
	home := t.TempDir()
	for _, tc := range []struct {
		name string
		env  map[string]string
	}{
		{"CONTROLPLANE_CACHE", map[string]string{"CONTROLPLANE_CACHE": t.TempDir(), "XDG_CACHE_HOME": t.TempDir(), "HOME": home}},
		{"XDG_CACHE_HOME", map[string]string{"CONTROLPLANE_CACHE": "", "XDG_CACHE_HOME": t.TempDir(), "HOME": home}},
		{"HOME", map[string]string{"CONTROLPLANE_CACHE": "", "XDG_CACHE_HOME": "", "HOME": home}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := []string{"PATH=" + tools}
			for k, v := range tc.env {
				t.Setenv(k, v)
				env = append(env, k+"="+v)
			}
			want, err := defaultBinDir(root)
			if err != nil {
				t.Fatal(err)
			}
			fakeCompleteBuild(t, want)
			cmd := exec.Command(filepath.Join(root, "hack", "build-controlplane.sh"))
			cmd.Env = env
			var stderr strings.Builder
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("build-controlplane.sh did not find the build at %s: %v\n%s", want, err, stderr.String())
			}
			if got := strings.TrimSpace(string(out)); got != want {
				t.Errorf("build-controlplane.sh printed %s, framework computed %s", got, want)
			}
			t.Setenv("CONTROLPLANE_BIN", "")
			got, err := BinDir()
			if err != nil || got != want {
				t.Errorf("BinDir() = %q, %v; want %q", got, err, want)
			}
		})
	}
}

func fakeCompleteBuild(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range append(binaryNames, ".complete") {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// TestMissingBinariesNameTheBuildCommand: whichever way the binaries are
// looked up, the failure says how to build them.
func TestMissingBinariesNameTheBuildCommand(t *testing.T) {
	wantHint := func(t *testing.T, err error) {
		t.Helper()
		if err == nil {
			t.Fatal("no error for missing binaries")
		}
		for _, want := range []string{"make deps", "hack/build-controlplane.sh"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error does not mention %q: %v", want, err)
			}
		}
	}
	t.Run("CONTROLPLANE_BIN", func(t *testing.T) {
		t.Setenv("CONTROLPLANE_BIN", t.TempDir())
		_, err := BinDir()
		wantHint(t, err)
	})
	t.Run("cache", func(t *testing.T) {
		t.Setenv("CONTROLPLANE_BIN", "")
		t.Setenv("CONTROLPLANE_CACHE", t.TempDir())
		_, err := BinDir()
		wantHint(t, err)
	})
	t.Run("incomplete build", func(t *testing.T) {
		cache := t.TempDir()
		t.Setenv("CONTROLPLANE_BIN", "")
		t.Setenv("CONTROLPLANE_CACHE", cache)
		wd, _ := os.Getwd()
		root, err := repoRoot(wd)
		if err != nil {
			t.Fatal(err)
		}
		dir, err := defaultBinDir(root)
		if err != nil {
			t.Fatal(err)
		}
		fakeCompleteBuild(t, dir)
		if err := os.Remove(filepath.Join(dir, ".complete")); err != nil {
			t.Fatal(err)
		}
		_, err = BinDir()
		wantHint(t, err)
		if err != nil && !strings.Contains(err.Error(), "incomplete") {
			t.Errorf("error does not say the build is incomplete: %v", err)
		}
	})
	t.Run("Start", func(t *testing.T) {
		_, err := Start(context.Background(), Options{BinDir: t.TempDir()})
		wantHint(t, err)
	})
}

func TestRepoRootFromSubdirectory(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	root, err := repoRoot(wd)
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := filepath.Abs("../.."); root != want {
		t.Errorf("repoRoot(%s) = %s, want %s", wd, root, want)
	}
	if _, err := repoRoot(t.TempDir()); err == nil {
		t.Error("repoRoot found a repository above a temp dir")
	}
}
