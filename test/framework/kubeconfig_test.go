package framework

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	clientcmdlatest "k8s.io/client-go/tools/clientcmd/api/latest"
)

// loadKubeconfig decodes a file with the codec clientcmd.Load uses and turns
// its current context back into a rest.Config.
func loadKubeconfig(t *testing.T, path string) *rest.Config {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := runtime.Decode(clientcmdlatest.Codec, data)
	if err != nil {
		t.Fatalf("decode %s: %v", path, err)
	}
	kc := obj.(*clientcmdapi.Config)
	ctx := kc.Contexts[kc.CurrentContext]
	if ctx == nil {
		t.Fatalf("%s: no current context %q", path, kc.CurrentContext)
	}
	cl, user := kc.Clusters[ctx.Cluster], kc.AuthInfos[ctx.AuthInfo]
	if cl == nil || user == nil {
		t.Fatalf("%s: context %q names a missing cluster or user", path, kc.CurrentContext)
	}
	return &rest.Config{
		Host:        cl.Server,
		BearerToken: user.Token,
		TLSClientConfig: rest.TLSClientConfig{
			CAData: cl.CertificateAuthorityData, CertData: user.ClientCertificateData, KeyData: user.ClientKeyData,
		},
	}
}

func TestWriteKubeconfigRoundTrip(t *testing.T) {
	c := &Cluster{caPEM: []byte("cluster CA")}
	for _, tc := range []struct {
		name   string
		in     *rest.Config
		wantCA []byte
	}{
		{"token, cluster CA filled in", &rest.Config{Host: "https://127.0.0.1:1", BearerToken: "tok"}, []byte("cluster CA")},
		{"client certificate, own CA", &rest.Config{Host: "https://127.0.0.1:2", TLSClientConfig: rest.TLSClientConfig{
			CAData: []byte("own CA"), CertData: []byte("cert"), KeyData: []byte("key"),
		}}, []byte("own CA")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "kubeconfig")
			if err := c.WriteKubeconfig(tc.in, path); err != nil {
				t.Fatal(err)
			}
			if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("kubeconfig mode %v, %v; want 0600 (it holds credentials)", fi.Mode().Perm(), err)
			}
			got := loadKubeconfig(t, path)
			if got.Host != tc.in.Host || got.BearerToken != tc.in.BearerToken ||
				!bytes.Equal(got.CAData, tc.wantCA) || !bytes.Equal(got.CertData, tc.in.CertData) || !bytes.Equal(got.KeyData, tc.in.KeyData) {
				t.Errorf("round trip: got %+v, want %+v with CA %q", got, tc.in, tc.wantCA)
			}
			if tc.in.BearerToken != "" && tc.in.CAData != nil {
				t.Error("WriteKubeconfig filled the cluster CA into the caller's config instead of a copy")
			}
		})
	}
	if err := c.WriteKubeconfig(&rest.Config{}, filepath.Join(t.TempDir(), "x")); err == nil {
		t.Error("a config without Host was written")
	}
}
