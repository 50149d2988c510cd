package framework

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// ECDSA P-256 everywhere: generating a key takes microseconds, where RSA-2048
// takes tens of milliseconds each, and every component accepts it.

// certValidity only has to outlive one test run; the hour of backdating
// tolerates a skewed clock.
const (
	certBackdate = time.Hour
	certValidity = 7 * 24 * time.Hour
)

// authority is a throwaway CA that signs every certificate of one cluster.
type authority struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	certPEM []byte
	keyPEM  []byte
}

// certSpec describes a leaf certificate. Kubernetes maps CommonName to the
// user name and Organizations to groups for client certificates.
type certSpec struct {
	commonName    string
	organizations []string
	dnsNames      []string
	ips           []net.IP
	usages        []x509.ExtKeyUsage
}

// keyPair is a PEM-encoded certificate and its private key.
type keyPair struct {
	certPEM []byte
	keyPEM  []byte
}

func newAuthority(commonName string) (*authority, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-certBackdate),
		NotAfter:              now.Add(certValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse CA certificate: %w", err)
	}
	keyPEM, err := encodeECKey(key)
	if err != nil {
		return nil, err
	}
	return &authority{
		cert:    cert,
		key:     key,
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:  keyPEM,
	}, nil
}

func (a *authority) issue(spec certSpec) (keyPair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return keyPair{}, fmt.Errorf("generate key for %s: %w", spec.commonName, err)
	}
	serial, err := randomSerial()
	if err != nil {
		return keyPair{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: spec.commonName, Organization: spec.organizations},
		NotBefore:             now.Add(-certBackdate),
		NotAfter:              now.Add(certValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           spec.usages,
		BasicConstraintsValid: true,
		DNSNames:              spec.dnsNames,
		IPAddresses:           spec.ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.cert, &key.PublicKey, a.key)
	if err != nil {
		return keyPair{}, fmt.Errorf("sign certificate for %s: %w", spec.commonName, err)
	}
	keyPEM, err := encodeECKey(key)
	if err != nil {
		return keyPair{}, err
	}
	return keyPair{certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM: keyPEM}, nil
}

// newSigningKey makes the service-account token key pair: the private key for
// kube-apiserver (signing) and kube-controller-manager, the public one for
// kube-apiserver (verifying).
func newSigningKey() (privPEM, pubPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate service-account key: %w", err)
	}
	privPEM, err = encodeECKey(key)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, nil, fmt.Errorf("encode service-account public key: %w", err)
	}
	return privPEM, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

func encodeECKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode EC key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

func randomSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("certificate serial: %w", err)
	}
	return serial, nil
}

// clusterPKI is every certificate and key one control plane needs.
type clusterPKI struct {
	ca         *authority
	apiserver  keyPair // serving
	kcmServing keyPair // serving, so its /healthz can be checked against the CA
	admin      keyPair // client, system:masters
	kcm        keyPair // client, system:kube-controller-manager
	saKey      []byte
	saPub      []byte
}

// serviceIP is the first address of --service-cluster-ip-range, which the
// apiserver claims for the kubernetes Service; its cert must name it.
var serviceIP = net.ParseIP("10.0.0.1")

const serviceCIDR = "10.0.0.0/24"

func newClusterPKI() (*clusterPKI, error) {
	ca, err := newAuthority("nfs-provisioner-test-ca")
	if err != nil {
		return nil, err
	}
	p := &clusterPKI{ca: ca}
	loopback := []net.IP{net.IPv4(127, 0, 0, 1)}
	specs := []struct {
		dst  *keyPair
		spec certSpec
	}{
		{&p.apiserver, certSpec{
			commonName: "kube-apiserver",
			dnsNames: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
				"kubernetes.default.svc.cluster.local"},
			ips:    append(loopback, serviceIP),
			usages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}},
		{&p.kcmServing, certSpec{
			commonName: "kube-controller-manager",
			dnsNames:   []string{"localhost"},
			ips:        loopback,
			usages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}},
		{&p.admin, certSpec{
			commonName:    "framework-admin",
			organizations: []string{"system:masters"},
			usages:        []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}},
		{&p.kcm, certSpec{
			commonName: "system:kube-controller-manager",
			usages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}},
	}
	for _, s := range specs {
		if *s.dst, err = ca.issue(s.spec); err != nil {
			return nil, err
		}
	}
	if p.saKey, p.saPub, err = newSigningKey(); err != nil {
		return nil, err
	}
	return p, nil
}

// pkiFiles are the paths the components read their certificates from.
type pkiFiles struct {
	caCert, caKey                 string
	apiserverCert, apiserverKey   string
	kcmServingCert, kcmServingKey string
	saKey, saPub                  string
}

func (p *clusterPKI) write(dir string) (pkiFiles, error) {
	f := pkiFiles{
		caCert: filepath.Join(dir, "ca.crt"), caKey: filepath.Join(dir, "ca.key"),
		apiserverCert: filepath.Join(dir, "apiserver.crt"), apiserverKey: filepath.Join(dir, "apiserver.key"),
		kcmServingCert: filepath.Join(dir, "kcm-serving.crt"), kcmServingKey: filepath.Join(dir, "kcm-serving.key"),
		saKey: filepath.Join(dir, "sa.key"), saPub: filepath.Join(dir, "sa.pub"),
	}
	files := map[string][]byte{
		f.caCert: p.ca.certPEM, f.caKey: p.ca.keyPEM,
		f.apiserverCert: p.apiserver.certPEM, f.apiserverKey: p.apiserver.keyPEM,
		f.kcmServingCert: p.kcmServing.certPEM, f.kcmServingKey: p.kcmServing.keyPEM,
		f.saKey: p.saKey, f.saPub: p.saPub,
	}
	for path, data := range files {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return pkiFiles{}, fmt.Errorf("write %s: %w", filepath.Base(path), err)
		}
	}
	return f, nil
}
