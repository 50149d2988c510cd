package volume

import (
	"context"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func TestServerAddress(t *testing.T) {
	ctx := context.Background()
	client := fake.NewSimpleClientset(
		&v1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "nfs", Name: "nfs-provisioner"}, Spec: v1.ServiceSpec{ClusterIP: "10.96.0.20"}},
		&v1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "nfs", Name: "headless"}, Spec: v1.ServiceSpec{ClusterIP: v1.ClusterIPNone}},
	)
	for _, tc := range []struct {
		name    string
		src     ServerAddressSource
		want    string
		wantErr string
	}{
		{"hostname wins", ServerAddressSource{Hostname: "nfs.example", ServiceName: "nfs-provisioner", PodNamespace: "nfs", PodIP: "10.1.1.1"}, "nfs.example", ""},
		{"service before pod IP", ServerAddressSource{ServiceName: "nfs-provisioner", PodNamespace: "nfs", PodIP: "10.1.1.1"}, "10.96.0.20", ""},
		{"pod IP", ServerAddressSource{PodIP: "10.1.1.1"}, "10.1.1.1", ""},
		{"headless service", ServerAddressSource{ServiceName: "headless", PodNamespace: "nfs"}, "", "has no ClusterIP"},
		{"missing service", ServerAddressSource{ServiceName: "nope", PodNamespace: "nfs", PodIP: "10.1.1.1"}, "", "nfs/nope"},
		{"service without namespace", ServerAddressSource{ServiceName: "nfs-provisioner"}, "", "POD_NAMESPACE is not"},
		{"nothing", ServerAddressSource{}, "", "set -server-hostname"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ServerAddress(ctx, client, tc.src)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}
