package volume

import (
	"context"
	"fmt"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// ServerAddressSource says where the server address for PVs comes from; each
// field is empty when not set.
type ServerAddressSource struct {
	Hostname     string // -server-hostname
	ServiceName  string // env SERVICE_NAME
	PodNamespace string // env POD_NAMESPACE
	PodIP        string // env POD_IP
}

// ServerAddress picks the NFS server address written into PVs: the explicit
// hostname, else the ClusterIP of the provisioner's Service (stable across
// pod restarts), else the pod's IP.
func ServerAddress(ctx context.Context, client kubernetes.Interface, src ServerAddressSource) (string, error) {
	if src.Hostname != "" {
		return src.Hostname, nil
	}
	if src.ServiceName != "" {
		if src.PodNamespace == "" {
			return "", fmt.Errorf("SERVICE_NAME=%s is set but POD_NAMESPACE is not", src.ServiceName)
		}
		svc, err := client.CoreV1().Services(src.PodNamespace).Get(ctx, src.ServiceName, metav1.GetOptions{})
		if err != nil {
			return "", fmt.Errorf("service %s/%s (from SERVICE_NAME): %w", src.PodNamespace, src.ServiceName, err)
		}
		ip := svc.Spec.ClusterIP
		if ip == "" || ip == v1.ClusterIPNone {
			return "", fmt.Errorf("service %s/%s has no ClusterIP; PVs need a stable address, so use a non-headless Service", src.PodNamespace, src.ServiceName)
		}
		return ip, nil
	}
	if src.PodIP != "" {
		return src.PodIP, nil
	}
	return "", fmt.Errorf("no NFS server address for PVs: set -server-hostname, or SERVICE_NAME and POD_NAMESPACE, or POD_IP")
}
