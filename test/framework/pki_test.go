package framework

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func parseCert(t *testing.T, pemBytes []byte) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(pemBytes)
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("not a PEM certificate: %.60q", pemBytes)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// TestClusterPKIIdentities checks what each component relies on: the
// apiserver's names, and the user and groups each client cert maps to.
func TestClusterPKIIdentities(t *testing.T) {
	p, err := newClusterPKI()
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(p.ca.cert)

	server := parseCert(t, p.apiserver.certPEM)
	for _, name := range []string{"127.0.0.1", "10.0.0.1", "localhost", "kubernetes.default", "kubernetes.default.svc.cluster.local"} {
		if _, err := server.Verify(x509.VerifyOptions{DNSName: name, Roots: roots}); err != nil {
			t.Errorf("apiserver certificate not valid for %s: %v", name, err)
		}
	}
	kcmServing := parseCert(t, p.kcmServing.certPEM)
	if _, err := kcmServing.Verify(x509.VerifyOptions{DNSName: "127.0.0.1", Roots: roots}); err != nil {
		t.Errorf("controller-manager serving certificate not valid for 127.0.0.1: %v", err)
	}

	for _, tc := range []struct {
		name       string
		pair       keyPair
		user       string
		wantGroups []string
	}{
		{"admin", p.admin, "framework-admin", []string{"system:masters"}},
		{"controller-manager", p.kcm, "system:kube-controller-manager", nil},
	} {
		cert := parseCert(t, tc.pair.certPEM)
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("%s: not a client certificate of the CA: %v", tc.name, err)
		}
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
			t.Errorf("%s: client certificate also valid for serving", tc.name)
		}
		if cert.Subject.CommonName != tc.user || !slices.Equal(cert.Subject.Organization, tc.wantGroups) {
			t.Errorf("%s: subject CN=%q O=%q, want CN=%q O=%q", tc.name, cert.Subject.CommonName, cert.Subject.Organization, tc.user, tc.wantGroups)
		}
		if _, err := tls.X509KeyPair(tc.pair.certPEM, tc.pair.keyPEM); err != nil {
			t.Errorf("%s: key does not match certificate: %v", tc.name, err)
		}
	}
}

// TestClusterPKIMutualTLS does a real handshake with the generated files, as
// kube-apiserver and a client will: the server verifies the admin's
// certificate against the CA and sees its identity.
func TestClusterPKIMutualTLS(t *testing.T) {
	p, err := newClusterPKI()
	if err != nil {
		t.Fatal(err)
	}
	files, err := p.write(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	serverPair, err := tls.LoadX509KeyPair(files.apiserverCert, files.apiserverKey)
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(files.caCert)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		t.Fatal("ca.crt holds no certificate")
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := r.TLS.PeerCertificates[0].Subject
		io.WriteString(w, c.CommonName+"/"+c.Organization[0])
	}))
	srv.Listener.Close()
	srv.Listener, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{serverPair}, ClientCAs: roots, ClientAuth: tls.RequireAndVerifyClientCert}
	srv.StartTLS()
	defer srv.Close()

	clientPair, err := tls.X509KeyPair(p.admin.certPEM, p.admin.keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{clientPair}}}}
	resp, err := client.Get(srv.URL)
	if err != nil {
		t.Fatalf("mutual TLS with the generated certificates: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if string(body) != "framework-admin/system:masters" {
		t.Errorf("server saw client %q, want framework-admin/system:masters", body)
	}
	for _, f := range []string{files.caKey, files.apiserverKey, files.saKey} {
		if fi, err := os.Stat(f); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, %v; want 0600", filepath.Base(f), fi.Mode().Perm(), err)
		}
	}
}

// TestServiceAccountKeyPair: tokens signed with sa.key must verify with
// sa.pub, or no ServiceAccount token would authenticate.
func TestServiceAccountKeyPair(t *testing.T) {
	privPEM, pubPEM, err := newSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	privBlock, _ := pem.Decode(privPEM)
	pubBlock, _ := pem.Decode(pubPEM)
	if privBlock == nil || privBlock.Type != "EC PRIVATE KEY" || pubBlock == nil || pubBlock.Type != "PUBLIC KEY" {
		t.Fatalf("unexpected PEM blocks: %.40q / %.40q", privPEM, pubPEM)
	}
	priv, err := x509.ParseECPrivateKey(privBlock.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.ParsePKIXPublicKey(pubBlock.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte("a token"))
	sig, err := ecdsa.SignASN1(nil, priv, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	if !ecdsa.VerifyASN1(pub.(*ecdsa.PublicKey), digest[:], sig) {
		t.Error("signature by sa.key does not verify with sa.pub")
	}
}
