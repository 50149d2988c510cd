package mysql

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/labels"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// storageClassName is the StorageClass our provisioner serves.
const storageClassName = "nfs"

// manifest is deploy/statefulset.yaml decoded into typed objects.
type manifest struct {
	services    map[string]*corev1.Service
	configMaps  map[string]*corev1.ConfigMap
	pdbs        []*policyv1.PodDisruptionBudget
	statefulSet *appsv1.StatefulSet
	raw         []byte
}

// manifestPath finds deploy/statefulset.yaml from this source file, so the
// test works whatever the working directory.
func manifestPath(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the test source file")
	}
	return filepath.Join(filepath.Dir(file), "..", "..", "deploy", "statefulset.yaml")
}

// loadManifest decodes every document strictly: an unknown field (a typo
// in the YAML) fails the test instead of being dropped silently.
func loadManifest(t testing.TB) *manifest {
	t.Helper()
	raw, err := os.ReadFile(manifestPath(t))
	if err != nil {
		t.Fatalf("reading the manifest: %v", err)
	}
	m := &manifest{
		services:   map[string]*corev1.Service{},
		configMaps: map[string]*corev1.ConfigMap{},
		raw:        raw,
	}
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(raw)))
	for i := 0; ; i++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("splitting the manifest: %v", err)
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		var head struct {
			Kind string `json:"kind"`
		}
		if err := yaml.Unmarshal(doc, &head); err != nil {
			t.Fatalf("document %d: %v", i, err)
		}
		if head.Kind == "" {
			// Only comments (the header).
			continue
		}
		var obj any
		switch head.Kind {
		case "Service":
			obj = &corev1.Service{}
		case "ConfigMap":
			obj = &corev1.ConfigMap{}
		case "PodDisruptionBudget":
			obj = &policyv1.PodDisruptionBudget{}
		case "StatefulSet":
			obj = &appsv1.StatefulSet{}
		default:
			t.Fatalf("document %d: unexpected kind %q", i, head.Kind)
		}
		if err := yaml.UnmarshalStrict(doc, obj); err != nil {
			t.Fatalf("document %d (%s): %v", i, head.Kind, err)
		}
		switch o := obj.(type) {
		case *corev1.Service:
			m.services[o.Name] = o
		case *corev1.ConfigMap:
			m.configMaps[o.Name] = o
		case *policyv1.PodDisruptionBudget:
			m.pdbs = append(m.pdbs, o)
		case *appsv1.StatefulSet:
			if m.statefulSet != nil {
				t.Fatal("more than one StatefulSet")
			}
			m.statefulSet = o
		}
	}
	if m.statefulSet == nil {
		t.Fatal("the manifest has no StatefulSet")
	}
	return m
}

// scripts returns the ConfigMap mysql's data: the files the pods mount at /scripts.
func (m *manifest) scripts(t testing.TB) map[string]string {
	t.Helper()
	cm, ok := m.configMaps["mysql"]
	if !ok {
		t.Fatal("the manifest has no ConfigMap mysql")
	}
	return cm.Data
}

func allContainers(spec *corev1.PodSpec) []corev1.Container {
	return append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...)
}

// TestManifest checks deploy/statefulset.yaml statically: what a cluster
// would only reveal late (a wrong StorageClass, an inline password, a
// container without limits, a PDB that selects nothing).
func TestManifest(t *testing.T) {
	m := loadManifest(t)
	sts := m.statefulSet
	spec := &sts.Spec.Template.Spec

	t.Run("names", func(t *testing.T) {
		if sts.Name != "mysql" || sts.Spec.ServiceName != "mysql" {
			t.Errorf("StatefulSet %q with serviceName %q; want mysql/mysql", sts.Name, sts.Spec.ServiceName)
		}
		if sts.Spec.Replicas == nil || *sts.Spec.Replicas != 3 {
			t.Errorf("replicas = %v; want 3", sts.Spec.Replicas)
		}
		for _, name := range []string{"mysql", "mysql-primary", "mysql-read"} {
			if _, ok := m.services[name]; !ok {
				t.Errorf("Service %s missing", name)
			}
		}
		for _, doc := range [][]byte{m.raw} {
			if regexp.MustCompile(`(?m)^\s*namespace:`).Match(doc) {
				t.Error("the manifest hard-codes a namespace; kustomize composes it")
			}
		}
	})

	t.Run("volumeClaimTemplates", func(t *testing.T) {
		if len(sts.Spec.VolumeClaimTemplates) != 1 {
			t.Fatalf("%d volumeClaimTemplates; want 1", len(sts.Spec.VolumeClaimTemplates))
		}
		pvc := sts.Spec.VolumeClaimTemplates[0]
		if pvc.Spec.StorageClassName == nil || *pvc.Spec.StorageClassName != storageClassName {
			t.Errorf("storageClassName = %v; want %q", pvc.Spec.StorageClassName, storageClassName)
		}
		if len(pvc.Spec.AccessModes) != 1 || pvc.Spec.AccessModes[0] != corev1.ReadWriteOncePod {
			t.Errorf("accessModes = %v; want [ReadWriteOncePod]", pvc.Spec.AccessModes)
		}
		if q, ok := pvc.Spec.Resources.Requests[corev1.ResourceStorage]; !ok || q.IsZero() {
			t.Error("the claim template requests no storage")
		}
		mounted := false
		for _, c := range spec.Containers {
			for _, vm := range c.VolumeMounts {
				if vm.Name == pvc.Name && vm.MountPath == "/var/lib/mysql" {
					mounted = true
				}
			}
		}
		if !mounted {
			t.Errorf("no container mounts volume %q at /var/lib/mysql", pvc.Name)
		}
	})

	t.Run("passwords", func(t *testing.T) {
		for _, bad := range []string{"MYSQL_ALLOW_EMPTY_PASSWORD", "MARIADB_ALLOW_EMPTY_ROOT_PASSWORD", "MARIADB_ALLOW_EMPTY_PASSWORD", "MYSQL_ROOT_PASSWORD:", "MARIADB_ROOT_PASSWORD:"} {
			if bytes.Contains(m.raw, []byte(bad)) {
				t.Errorf("the manifest contains %s", bad)
			}
		}
		for _, c := range allContainers(spec) {
			for _, e := range c.Env {
				if strings.Contains(strings.ToUpper(e.Name), "PASSWORD") || strings.Contains(strings.ToUpper(e.Name), "PWD") {
					if e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
						t.Errorf("container %s: %s is not taken from a Secret", c.Name, e.Name)
					}
				}
			}
		}
		found := false
		for _, v := range spec.Volumes {
			if v.Secret != nil {
				if v.Secret.SecretName != "mysql" {
					t.Errorf("volume %s uses Secret %q; want mysql", v.Name, v.Secret.SecretName)
				}
				if v.Secret.Optional != nil && *v.Secret.Optional {
					t.Error("the Secret volume is optional: pods would start without passwords")
				}
				found = true
			}
		}
		if !found {
			t.Error("no Secret volume: where do the passwords come from?")
		}
		// The header's instructions must not put a secret in kubectl's argv.
		if regexp.MustCompile(`--from-literal=[a-z-]*(password|key)`).Match(m.raw) {
			t.Error("the manifest tells operators to pass a secret with --from-literal (visible in argv)")
		}
		for key, text := range m.scripts(t) {
			if regexp.MustCompile(`(?i)IDENTIFIED BY ''|PASSWORD=''|password=""`).MatchString(text) {
				t.Errorf("ConfigMap key %s sets an empty password", key)
			}
		}
	})

	t.Run("containers", func(t *testing.T) {
		for _, c := range allContainers(spec) {
			if !regexp.MustCompile(`^mariadb:11\.8(\.\d+)?(@sha256:[0-9a-f]{64})?$`).MatchString(c.Image) {
				t.Errorf("container %s: image %q is not pinned to the 11.8 LTS series", c.Name, c.Image)
			}
			if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
				t.Errorf("container %s: no cpu/memory requests", c.Name)
			}
			if c.Resources.Limits.Memory().IsZero() {
				t.Errorf("container %s: no memory limit", c.Name)
			}
			if c.SecurityContext == nil || c.SecurityContext.AllowPrivilegeEscalation == nil || *c.SecurityContext.AllowPrivilegeEscalation {
				t.Errorf("container %s: allowPrivilegeEscalation is not false", c.Name)
			}
		}
		for _, c := range spec.Containers {
			if c.StartupProbe == nil || c.LivenessProbe == nil || c.ReadinessProbe == nil {
				t.Errorf("container %s: needs startup, liveness and readiness probes", c.Name)
			}
		}
		db := spec.Containers[0]
		if db.ReadinessProbe == nil || db.ReadinessProbe.Exec == nil || !strings.Contains(strings.Join(db.ReadinessProbe.Exec.Command, " "), "probe-ready.sh") {
			t.Errorf("container %s: readiness must run probe-ready.sh (replication health)", db.Name)
		}
		for _, ctr := range spec.Containers {
			if ctr.Name != "agent" {
				continue
			}
			bound := false
			for _, e := range ctr.Env {
				if e.Name == "CLONE_BIND" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "status.podIP" {
					bound = true
				}
			}
			if !bound {
				t.Error("the agent's clone server is not bound to the pod IP (CLONE_BIND from status.podIP)")
			}
		}
		topo := false
		for _, vm := range db.VolumeMounts {
			topo = topo || vm.Name == "topology"
		}
		if !topo {
			t.Error("the mariadb container does not mount the record: its readiness cannot compare the role with it")
		}
		if sc := spec.SecurityContext; sc == nil || sc.RunAsUser == nil || *sc.RunAsUser != 999 || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
			t.Error("pod securityContext must run as uid 999, non-root (the uid our StorageClass carves volumes for)")
		}
		if g := spec.TerminationGracePeriodSeconds; g == nil || *g < 60 {
			t.Errorf("terminationGracePeriodSeconds = %v; want >= 60 for a clean InnoDB shutdown", g)
		}
	})

	t.Run("scripts", func(t *testing.T) {
		data := m.scripts(t)
		var referenced []string
		for _, c := range allContainers(spec) {
			for _, words := range [][]string{c.Command, probeCommand(c.StartupProbe), probeCommand(c.LivenessProbe), probeCommand(c.ReadinessProbe)} {
				for _, w := range words {
					if strings.HasPrefix(w, "/scripts/") {
						referenced = append(referenced, strings.TrimPrefix(w, "/scripts/"))
					}
				}
			}
		}
		referenced = append(referenced, "failover.sh", "switchover.sh", "users.sh", "lib.sh", "common.cnf", "primary.cnf", "replica.cnf")
		for _, key := range referenced {
			if _, ok := data[key]; !ok {
				t.Errorf("ConfigMap mysql has no key %s", key)
			}
		}
		for key, text := range data {
			if !strings.HasSuffix(key, ".sh") || key == "lib.sh" {
				continue
			}
			if !strings.Contains(text, "lib.sh") && !strings.Contains(text, "set -euo pipefail") {
				t.Errorf("%s neither sources lib.sh nor sets -euo pipefail", key)
			}
		}
		if !strings.Contains(data["lib.sh"], "set -euo pipefail") {
			t.Error("lib.sh does not set -euo pipefail")
		}
		if regexp.MustCompile(`(?m)^\s*super`).MatchString(data["common.cnf"] + data["replica.cnf"] + data["primary.cnf"]) {
			t.Error("super_read_only makes MariaDB refuse to start")
		}
	})

	t.Run("services", func(t *testing.T) {
		podLabels := labels.Set(sts.Spec.Template.Labels)
		headless := m.services["mysql"]
		if headless == nil {
			t.Fatal("no Service mysql")
		}
		if headless.Spec.ClusterIP != corev1.ClusterIPNone || !headless.Spec.PublishNotReadyAddresses {
			t.Error("Service mysql must be headless with publishNotReadyAddresses")
		}
		for name, s := range m.services {
			if !labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Merge(podLabels, labels.Set{"role": "primary"})) {
				t.Errorf("Service %s selects no pod (selector %v)", name, s.Spec.Selector)
			}
		}
		if m.services["mysql-primary"].Spec.Selector["role"] != "primary" {
			t.Error("Service mysql-primary must follow role=primary")
		}
		if len(m.pdbs) != 1 {
			t.Fatalf("%d PodDisruptionBudgets; want 1", len(m.pdbs))
		}
		sel := m.pdbs[0].Spec.Selector
		if sel == nil || !labels.SelectorFromSet(sel.MatchLabels).Matches(podLabels) || len(sel.MatchExpressions) != 0 {
			t.Errorf("the PDB selector %v does not match the pod labels %v", sel, podLabels)
		}
		aff := spec.Affinity
		if aff == nil || aff.PodAntiAffinity == nil || len(aff.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution) == 0 {
			t.Fatal("no preferred pod anti-affinity")
		}
		term := aff.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution[0].PodAffinityTerm
		if term.TopologyKey != "kubernetes.io/hostname" || term.LabelSelector == nil || !labels.SelectorFromSet(term.LabelSelector.MatchLabels).Matches(podLabels) {
			t.Errorf("anti-affinity term %+v does not spread the mysql pods over hosts", term)
		}
	})
}

func probeCommand(p *corev1.Probe) []string {
	if p == nil || p.Exec == nil {
		return nil
	}
	return p.Exec.Command
}

// TestScriptsSyntax runs bash -n over every script, so a syntax error is
// reported with its key instead of as a failed pod.
func TestScriptsSyntax(t *testing.T) {
	dir := t.TempDir()
	for key, text := range loadManifest(t).scripts(t) {
		if !strings.HasSuffix(key, ".sh") {
			continue
		}
		path := filepath.Join(dir, key)
		if err := os.WriteFile(path, []byte(text), 0o555); err != nil {
			t.Fatal(err)
		}
		if out, err := runQuiet("bash", "-n", path); err != nil {
			t.Errorf("%s: %v\n%s", key, err, out)
		}
	}
}

func runQuiet(name string, args ...string) (string, error) {
	var out bytes.Buffer
	cmd := execCommand(name, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s: %w", name, err)
	}
	return out.String(), nil
}
