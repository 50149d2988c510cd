package framework

import (
	"errors"
	"fmt"
	"os"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	clientcmdlatest "k8s.io/client-go/tools/clientcmd/api/latest"
)

// WriteKubeconfig writes cfg as a self-contained kubeconfig file (mode 0600),
// so that a test can hand a ServiceAccount's or the admin's credentials to a
// child process such as the provisioner binary. When cfg names no CA, the
// cluster's CA is used.
func (c *Cluster) WriteKubeconfig(cfg *rest.Config, path string) error {
	if cfg.CAData == nil && cfg.CAFile == "" && !cfg.Insecure {
		cfg = rest.CopyConfig(cfg)
		cfg.CAData = c.caPEM
	}
	return writeKubeconfig(cfg, path)
}

func writeKubeconfig(cfg *rest.Config, path string) error {
	if cfg.Host == "" {
		return errors.New("write kubeconfig: rest.Config has no Host")
	}
	const name = "framework"
	kc := clientcmdapi.NewConfig()
	kc.Clusters[name] = &clientcmdapi.Cluster{
		Server:                   cfg.Host,
		CertificateAuthority:     cfg.CAFile,
		CertificateAuthorityData: cfg.CAData,
		InsecureSkipTLSVerify:    cfg.Insecure,
		TLSServerName:            cfg.ServerName,
	}
	kc.AuthInfos[name] = &clientcmdapi.AuthInfo{
		ClientCertificate:     cfg.CertFile,
		ClientCertificateData: cfg.CertData,
		ClientKey:             cfg.KeyFile,
		ClientKeyData:         cfg.KeyData,
		Token:                 cfg.BearerToken,
		TokenFile:             cfg.BearerTokenFile,
		Impersonate:           cfg.Impersonate.UserName,
		ImpersonateGroups:     cfg.Impersonate.Groups,
	}
	kc.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name}
	kc.CurrentContext = name
	// The codec clientcmd.Write uses, without clientcmd itself: that package
	// drags in spf13/pflag, which this module does not require.
	data, err := runtime.Encode(clientcmdlatest.Codec, kc)
	if err != nil {
		return fmt.Errorf("encode kubeconfig: %w", err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("write kubeconfig: %w", err)
	}
	return nil
}
