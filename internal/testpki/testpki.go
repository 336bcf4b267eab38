// Package testpki makes throwaway certificate authorities for tests of
// ringtrain's TLS links: a CA, and certificates for 127.0.0.1 and
// localhost signed by it, valid for an hour.
package testpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// PKI is a CA and certificates it signed.
type PKI struct {
	Pool *x509.CertPool // holds the CA
	// Server and Client are certificates for one use each; Node serves
	// both, as every ringtrain process is server and client at once.
	Server, Client, Node tls.Certificate

	caDER   []byte
	nodeDER []byte
	nodeKey *ecdsa.PrivateKey
}

// New makes a CA and its certificates.
func New(t testing.TB) *PKI {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ringtrain test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	p := &PKI{Pool: x509.NewCertPool(), caDER: caDER}
	p.Pool.AddCert(ca)
	leaf := func(serial int64, usage ...x509.ExtKeyUsage) ([]byte, *ecdsa.PrivateKey) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "ringtrain node"},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: usage,
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, key
	}
	cert := func(der []byte, key *ecdsa.PrivateKey) tls.Certificate {
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	}
	p.Server = cert(leaf(2, x509.ExtKeyUsageServerAuth))
	p.Client = cert(leaf(3, x509.ExtKeyUsageClientAuth))
	p.nodeDER, p.nodeKey = leaf(4, x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth)
	p.Node = cert(p.nodeDER, p.nodeKey)
	return p
}

// WriteNodeFiles writes the node certificate, its key and the CA as PEM
// files in dir and returns their paths.
func (p *PKI) WriteNodeFiles(t testing.TB, dir string) (cert, key, ca string) {
	t.Helper()
	keyDER, err := x509.MarshalECPrivateKey(p.nodeKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, key, ca = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), filepath.Join(dir, "ca.crt")
	for path, b := range map[string]*pem.Block{
		cert: {Type: "CERTIFICATE", Bytes: p.nodeDER},
		key:  {Type: "EC PRIVATE KEY", Bytes: keyDER},
		ca:   {Type: "CERTIFICATE", Bytes: p.caDER},
	} {
		if err := os.WriteFile(path, pem.EncodeToMemory(b), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return cert, key, ca
}
