package metrics

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const monitoringDir = "../../deploy/monitoring"

var metricToken = regexp.MustCompile(`\b(?:nfs_provisioner|controller)_[a-z0-9_]+\b`)

// TestMonitoringUsesContractNames: every metric the alert rules, their unit
// tests and the dashboard name is one this package or the library serves,
// so a renamed metric cannot silently blind an alert or a panel.
func TestMonitoringUsesContractNames(t *testing.T) {
	known := map[string]bool{}
	for n := range Names {
		known[n] = true
	}
	for _, n := range LibraryNames {
		known[n] = true
	}
	for _, file := range []string{"alerts.yaml", "alerts_test.yaml", "dashboard.json"} {
		data, err := os.ReadFile(filepath.Join(monitoringDir, file))
		if err != nil {
			t.Fatal(err)
		}
		used := map[string]bool{}
		for _, tok := range metricToken.FindAllString(string(data), -1) {
			name := tok
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if base, ok := strings.CutSuffix(tok, suffix); ok && known[base] && strings.HasSuffix(base, "_seconds") {
					name = base
				}
			}
			if !known[name] {
				t.Errorf("%s uses %s, which is not a served metric", file, tok)
			}
			used[name] = true
		}
		if len(used) < 5 {
			t.Errorf("%s names only %d metrics: %v", file, len(used), slices.Sorted(func(yield func(string) bool) {
				for k := range used {
					if !yield(k) {
						return
					}
				}
			}))
		}
	}
}

// TestAlertRulesWithPromtool checks the rules and runs their unit tests
// with Prometheus' own promtool.
func TestAlertRulesWithPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if testing.Short() {
			t.Skip("promtool not installed; skipped under -short")
		}
		t.Fatalf("promtool not found (%v): run hack/install-deps.sh (Debian package prometheus)", err)
	}
	for _, args := range [][]string{{"check", "rules", "alerts.yaml"}, {"test", "rules", "alerts_test.yaml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = monitoringDir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		} else {
			t.Logf("promtool %s:\n%s", strings.Join(args, " "), out)
		}
	}
}
