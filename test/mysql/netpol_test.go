package mysql

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/nfs-provisioner/nfs-provisioner/test/framework"
)

// loadNetworkPolicies decodes deploy/mysql-networkpolicy.yaml strictly.
func loadNetworkPolicies(t *testing.T) []*networkingv1.NetworkPolicy {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(filepath.Dir(manifestPath(t)), "mysql-networkpolicy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var nps []*networkingv1.NetworkPolicy
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(raw)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		var head struct {
			Kind string `json:"kind"`
		}
		if err := yaml.Unmarshal(doc, &head); err != nil {
			t.Fatal(err)
		}
		if head.Kind == "" {
			continue
		}
		if head.Kind != "NetworkPolicy" {
			t.Fatalf("unexpected kind %q in mysql-networkpolicy.yaml", head.Kind)
		}
		np := &networkingv1.NetworkPolicy{}
		if err := yaml.UnmarshalStrict(doc, np); err != nil {
			t.Fatal(err)
		}
		nps = append(nps, np)
	}
	return nps
}

// admitted lists "port<-source" pairs: which ports the policies open to a
// pod with the given labels (same namespace).
func admitted(nps []*networkingv1.NetworkPolicy, target, source labels.Set) []string {
	var out []string
	for _, np := range nps {
		sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		if err != nil || !sel.Matches(target) {
			continue
		}
		for _, rule := range np.Spec.Ingress {
			from := false
			for _, peer := range rule.From {
				if peer.PodSelector == nil || peer.NamespaceSelector != nil || peer.IPBlock != nil {
					continue
				}
				s, err := metav1.LabelSelectorAsSelector(peer.PodSelector)
				if err == nil && s.Matches(source) {
					from = true
				}
			}
			if !from {
				continue
			}
			for _, p := range rule.Ports {
				out = append(out, p.Port.String())
			}
		}
	}
	sort.Strings(out)
	return out
}

// TestNetworkPolicies asserts what the policies admit, and has the API
// server validate them and the rest of the MySQL manifests (server-side
// dry run: nothing is created).
func TestNetworkPolicies(t *testing.T) {
	nps := loadNetworkPolicies(t)
	m := loadManifest(t)
	podLabels := labels.Set(m.statefulSet.Spec.Template.Labels)

	t.Run("selectors and ports", func(t *testing.T) {
		if len(nps) == 0 {
			t.Fatal("no NetworkPolicy")
		}
		for _, np := range nps {
			sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
			if err != nil || sel.Empty() || !sel.Matches(podLabels) {
				t.Errorf("%s: podSelector %v does not select the database pods (%v) alone", np.Name, np.Spec.PodSelector, podLabels)
			}
			if len(np.Spec.PolicyTypes) != 1 || np.Spec.PolicyTypes[0] != networkingv1.PolicyTypeIngress {
				t.Errorf("%s: policyTypes %v; want [Ingress]", np.Name, np.Spec.PolicyTypes)
			}
			for i, rule := range np.Spec.Ingress {
				if len(rule.From) == 0 {
					t.Errorf("%s: ingress rule %d admits every source", np.Name, i)
				}
				if len(rule.Ports) == 0 {
					t.Errorf("%s: ingress rule %d admits every port", np.Name, i)
				}
				for _, peer := range rule.From {
					if peer.PodSelector == nil || len(peer.PodSelector.MatchLabels)+len(peer.PodSelector.MatchExpressions) == 0 ||
						peer.NamespaceSelector != nil || peer.IPBlock != nil {
						t.Errorf("%s: ingress rule %d has a source that is not a labelled pod of this namespace: %+v", np.Name, i, peer)
					}
				}
				for _, p := range rule.Ports {
					if p.Protocol == nil || *p.Protocol != corev1.ProtocolTCP || p.Port == nil || p.Port.Type != intstr.Int || p.EndPort != nil {
						t.Errorf("%s: port %+v is not one TCP port number", np.Name, p)
					}
				}
			}
		}
		peers := admitted(nps, podLabels, podLabels)
		if want := []string{"3306", "3307"}; !equal(peers, want) {
			t.Errorf("database pods admit their peers on %v; want %v", peers, want)
		}
		app := labels.Set{"mysql-client": "true", "app": "shop"}
		if got := admitted(nps, podLabels, app); !equal(got, []string{"3306"}) {
			t.Errorf("an application pod labelled mysql-client=true is admitted on %v; want [3306]", got)
		}
		if got := admitted(nps, podLabels, labels.Set{"app": "shop"}); len(got) != 0 {
			t.Errorf("an unlabelled pod is admitted on %v", got)
		}
		if got := admitted(nps, podLabels, labels.Set{"app": "mysql-client"}); len(got) != 0 {
			t.Errorf("a pod labelled app=mysql-client is admitted on %v", got)
		}
		// Every container port of the database pods is covered by a rule.
		for _, ctr := range m.statefulSet.Spec.Template.Spec.Containers {
			for _, p := range ctr.Ports {
				found := false
				for _, q := range peers {
					if q == strconv.Itoa(int(p.ContainerPort)) {
						found = true
					}
				}
				if !found {
					t.Errorf("container %s port %d is not admitted from the peers", ctr.Name, p.ContainerPort)
				}
			}
		}
	})

	t.Run("server-side dry run", func(t *testing.T) {
		c := framework.Shared(t)
		ns := c.Namespace(t)
		ctx := t.Context()
		dry := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}, FieldValidation: "Strict"}
		for _, np := range nps {
			got, err := c.Client.NetworkingV1().NetworkPolicies(ns).Create(ctx, np, dry)
			if err != nil {
				t.Errorf("NetworkPolicy %s: %v", np.Name, err)
				continue
			}
			if len(got.Spec.Ingress) != len(np.Spec.Ingress) {
				t.Errorf("NetworkPolicy %s: the server kept %d of %d ingress rules", np.Name, len(got.Spec.Ingress), len(np.Spec.Ingress))
			}
		}
		for _, s := range m.services {
			if _, err := c.Client.CoreV1().Services(ns).Create(ctx, s, dry); err != nil {
				t.Errorf("Service %s: %v", s.Name, err)
			}
		}
		for _, cm := range m.configMaps {
			if _, err := c.Client.CoreV1().ConfigMaps(ns).Create(ctx, cm, dry); err != nil {
				t.Errorf("ConfigMap %s: %v", cm.Name, err)
			}
		}
		for _, pdb := range m.pdbs {
			if _, err := c.Client.PolicyV1().PodDisruptionBudgets(ns).Create(ctx, pdb, dry); err != nil {
				t.Errorf("PodDisruptionBudget %s: %v", pdb.Name, err)
			}
		}
		if _, err := c.Client.AppsV1().StatefulSets(ns).Create(ctx, m.statefulSet, dry); err != nil {
			t.Errorf("StatefulSet: %v", err)
		}
		// Nothing was created.
		list, err := c.Client.NetworkingV1().NetworkPolicies(ns).List(ctx, metav1.ListOptions{})
		if err != nil || len(list.Items) != 0 {
			t.Errorf("after a dry run: %d NetworkPolicies (%v)", len(list.Items), err)
		}
	})
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
