package main

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

// serviceCIDR is the Service IP range; its first address is the kubernetes Service's ClusterIP.
const serviceCIDR = "10.96.0.0/16"

var kubernetesServiceIP = net.ParseIP("10.96.0.1")

// pki holds the PEM files of a throwaway cluster: one CA signs the serving certificate and the admin's
// client certificate; a separate key signs service-account tokens. The CA's key is written too: the
// controller manager of a real cluster (test/cluster) signs kubelet client certificates with it.
type pki struct {
	caCert, caKey               []byte
	servingCert, servKey        []byte
	adminCert, adminKey         []byte
	saKey, saPub                []byte
	caFile, caKeyFile           string
	servingFile, servFile       string
	adminCertFile, adminKeyFile string
	saKeyFile, saPubFile        string
}

func newKey() (*ecdsa.PrivateKey, []byte, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return nil, nil, err
	}
	return k, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	return n
}

func sign(tmpl, parent *x509.Certificate, pub *ecdsa.PublicKey, signer *ecdsa.PrivateKey) (*x509.Certificate, []byte, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		return nil, nil, err
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	return c, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

// generatePKI makes the cluster's certificates; host is the address clients dial (127.0.0.1, or the
// node address of a real cluster, whose pods also dial the kubernetes Service IP).
func generatePKI(dir, host string) (*pki, error) {
	now := time.Now().Add(-time.Hour) // tolerate small clock skew between processes
	notAfter := now.Add(10 * 365 * 24 * time.Hour)
	p := &pki{}

	caKey, caKeyPEM, err := newKey()
	if err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "sluice-test-ca"},
		NotBefore:             now,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	ca, caPEM, err := sign(caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	p.caCert, p.caKey = caPEM, caKeyPEM

	sKey, sKeyPEM, err := newKey()
	if err != nil {
		return nil, err
	}
	_, sPEM, err := sign(&x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "kube-apiserver"},
		NotBefore:    now,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1"), net.ParseIP(host), kubernetesServiceIP},
	}, ca, &sKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("serving certificate: %w", err)
	}
	p.servingCert, p.servKey = sPEM, sKeyPEM

	aKey, aKeyPEM, err := newKey()
	if err != nil {
		return nil, err
	}
	// system:masters bypasses authorization whatever the mode (RBAC's superuser group).
	_, aPEM, err := sign(&x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "sluice-admin", Organization: []string{"system:masters"}},
		NotBefore:    now,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, ca, &aKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("admin certificate: %w", err)
	}
	p.adminCert, p.adminKey = aPEM, aKeyPEM

	saKey, saKeyPEM, err := newKey()
	if err != nil {
		return nil, err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return nil, err
	}
	p.saKey, p.saPub = saKeyPEM, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})

	p.caFile = filepath.Join(dir, "ca.crt")
	p.caKeyFile = filepath.Join(dir, "ca.key")
	p.adminCertFile = filepath.Join(dir, "admin.crt")
	p.adminKeyFile = filepath.Join(dir, "admin.key")
	p.servingFile = filepath.Join(dir, "serving.crt")
	p.servFile = filepath.Join(dir, "serving.key")
	p.saKeyFile = filepath.Join(dir, "sa.key")
	p.saPubFile = filepath.Join(dir, "sa.pub")
	for path, data := range map[string][]byte{
		p.caFile: p.caCert, p.caKeyFile: p.caKey, p.servingFile: p.servingCert, p.servFile: p.servKey,
		p.adminCertFile: p.adminCert, p.adminKeyFile: p.adminKey,
		p.saKeyFile: p.saKey, p.saPubFile: p.saPub,
	} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return nil, err
		}
	}
	return p, nil
}
