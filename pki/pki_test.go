package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// authority makes a CA in a temporary directory and issues ids.
func authority(t *testing.T, ids ...Identity) string {
	t.Helper()
	dir := t.TempDir()
	if err := Init(dir, "", 0); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if _, _, err := Issue(dir, id, []string{"127.0.0.1", "localhost"}, 0); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func load(t *testing.T, dir string, id Identity) *Creds {
	t.Helper()
	cert, key := Paths(dir, id)
	caCert, _ := CAPaths(dir)
	c, err := Load(cert, key, caCert)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestIssueWritesTheIdentity(t *testing.T) {
	w := Identity{Worker, "worker-0"}
	e := Identity{Etcd, "etcd-0.etcd"}
	dir := authority(t, w, e)
	c := load(t, dir, w)
	if c.Self != w {
		t.Fatalf("loaded identity %v, want %v", c.Self, w)
	}
	leaf, err := x509.ParseCertificate(c.Cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if leaf.Subject.CommonName != "worker-0" || len(leaf.Subject.OrganizationalUnit) != 1 || leaf.Subject.OrganizationalUnit[0] != "worker" {
		t.Errorf("subject %v, want CN=worker-0 OU=worker", leaf.Subject)
	}
	if len(leaf.IPAddresses) != 1 || !leaf.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) || len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != "localhost" {
		t.Errorf("SANs %v %v, want 127.0.0.1 and localhost", leaf.IPAddresses, leaf.DNSNames)
	}
	// An etcd member's name is a DNS name of its certificate, for
	// clients that check host names.
	ec := load(t, dir, e)
	eleaf, _ := x509.ParseCertificate(ec.Cert.Certificate[0])
	if err := eleaf.VerifyHostname("etcd-0.etcd"); err != nil {
		t.Errorf("etcd certificate: %v", err)
	}
	// Keys are private to their owner.
	_, key := Paths(dir, w)
	if fi, err := os.Stat(key); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key %s: mode %v (%v), want 0600", key, fi.Mode().Perm(), err)
	}
	_, caKey := CAPaths(dir)
	if fi, err := os.Stat(caKey); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("CA key: mode %v (%v), want 0600", fi.Mode().Perm(), err)
	}
}

func TestNothingIsReplaced(t *testing.T) {
	w := Identity{Worker, "w1"}
	dir := authority(t, w)
	caCert, _ := CAPaths(dir)
	before, _ := os.ReadFile(caCert)
	if err := Init(dir, "", 0); !errors.Is(err, ErrExists) {
		t.Errorf("second Init: %v, want ErrExists", err)
	}
	if after, _ := os.ReadFile(caCert); string(after) != string(before) {
		t.Error("a second Init replaced the authority")
	}
	cert, _ := Paths(dir, w)
	before, _ = os.ReadFile(cert)
	if _, _, err := Issue(dir, w, nil, 0); !errors.Is(err, ErrExists) {
		t.Errorf("second Issue: %v, want ErrExists", err)
	}
	if after, _ := os.ReadFile(cert); string(after) != string(before) {
		t.Error("a second Issue replaced the certificate")
	}
}

func TestBadIdentitiesAreRefused(t *testing.T) {
	dir := authority(t)
	for _, id := range []Identity{
		{"admin", "x"}, {Worker, ""}, {Worker, "../../etc/passwd"}, {Worker, "a/b"},
		{Worker, strings.Repeat("a", 254)}, {Worker, "-w"}, {Coordinator, "w 1"},
	} {
		if _, _, err := Issue(dir, id, nil, 0); err == nil {
			t.Errorf("Issue(%v) succeeded", id)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Errorf("the refused issues left files: %v", entries)
	}
	if _, _, err := Issue(t.TempDir(), Identity{Worker, "w"}, nil, 0); err == nil || !strings.Contains(err.Error(), "pki init") {
		t.Errorf("Issue without an authority: %v, want a hint to run 'ringtrain pki init'", err)
	}
}

// handshake runs a TLS handshake over a pipe and returns both ends'
// errors.
func handshake(t *testing.T, server, client *tls.Config) (serr, cerr error) {
	t.Helper()
	// A kernel socket, not net.Pipe: an alert written while the other end
	// writes must not block.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	b, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	a, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	defer b.Close()
	done := make(chan error, 1)
	go func() {
		s := tls.Server(a, server)
		s.SetDeadline(time.Now().Add(10 * time.Second))
		err := s.Handshake()
		if err == nil {
			// TLS 1.3: the client's certificate is checked after the
			// client's handshake returns; read to see the verdict.
			_, err = s.Read(make([]byte, 1))
		}
		a.Close()
		done <- err
	}()
	c := tls.Client(b, client)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	cerr = c.Handshake()
	if cerr == nil {
		_, cerr = c.Write([]byte{1})
		if cerr == nil {
			_, cerr = c.Read(make([]byte, 1))
			if errors.Is(cerr, os.ErrDeadlineExceeded) || cerr != nil && strings.Contains(cerr.Error(), "EOF") {
				cerr = nil // the server closed after its read: no alert
			}
		}
	}
	b.Close()
	return <-done, cerr
}

func TestClientsCheckWhoAnswers(t *testing.T) {
	co, w1, w2 := Identity{Coordinator, "coordinator"}, Identity{Worker, "w1"}, Identity{Worker, "w2"}
	dir := authority(t, co, w1, w2)
	coord, worker1, worker2 := load(t, dir, co), load(t, dir, w1), load(t, dir, w2)

	// A worker dialling the coordinator accepts a coordinator ...
	if serr, cerr := handshake(t, coord.ServerConfig(), worker1.ClientConfig(Want(Coordinator, ""))); serr != nil || cerr != nil {
		t.Fatalf("worker → coordinator: server %v, client %v", serr, cerr)
	}
	// ... and not a worker posing as one.
	if _, cerr := handshake(t, worker2.ServerConfig(), worker1.ClientConfig(Want(Coordinator, ""))); !errors.Is(cerr, ErrIdentity) && (cerr == nil || !strings.Contains(cerr.Error(), "not a coordinator")) {
		t.Errorf("worker → a worker posing as the coordinator: %v, want a refusal naming the identity", cerr)
	}
	// A ring link to w2 accepts w2 only.
	if _, cerr := handshake(t, worker2.ServerConfig(), worker1.ClientConfig(Want(Worker, "w2"))); cerr != nil {
		t.Errorf("w1 → w2: %v", cerr)
	}
	if _, cerr := handshake(t, worker1.ServerConfig(), worker2.ClientConfig(Want(Worker, "w3"))); cerr == nil || !strings.Contains(cerr.Error(), `not worker "w3"`) {
		t.Errorf("w2 → w1 answering for w3: %v, want refused", cerr)
	}
}

func TestServersRefuseStrangers(t *testing.T) {
	co := Identity{Coordinator, "coordinator"}
	dir := authority(t, co)
	coord := load(t, dir, co)

	// Another authority's worker.
	other := authority(t, Identity{Worker, "w1"})
	stranger := load(t, other, Identity{Worker, "w1"})
	if serr, _ := handshake(t, coord.ServerConfig(), stranger.ClientConfig(Want(Coordinator, ""))); serr == nil {
		t.Error("the coordinator accepted a certificate of another authority")
	}
	// No client certificate at all.
	anon := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}
	if serr, _ := handshake(t, coord.ServerConfig(), anon); serr == nil {
		t.Error("the coordinator accepted a client without a certificate")
	}
	// The authority's certificate without a ringtrain identity (made by
	// hand with the CA's key).
	plain := plainLeaf(t, dir)
	if serr, _ := handshake(t, coord.ServerConfig(), &tls.Config{Certificates: []tls.Certificate{plain}, InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}); !errors.Is(serr, ErrIdentity) {
		t.Errorf("the coordinator on a certificate without identity: %v, want ErrIdentity", serr)
	}
}

// plainLeaf is a certificate of dir's authority without a ringtrain URI.
func plainLeaf(t *testing.T, dir string) tls.Certificate {
	t.Helper()
	ca, caKey, err := loadCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: "w1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func TestLoadRefusesMismatches(t *testing.T) {
	w := Identity{Worker, "w1"}
	dir := authority(t, w)
	other := authority(t, w)
	cert, key := Paths(dir, w)
	otherCA, _ := CAPaths(other)
	if _, err := Load(cert, key, otherCA); err == nil || !strings.Contains(err.Error(), "not signed by the authority") {
		t.Errorf("Load with another CA: %v", err)
	}
	_, otherKey := Paths(other, w)
	caCert, _ := CAPaths(dir)
	if _, err := Load(cert, otherKey, caCert); err == nil {
		t.Error("Load with another certificate's key succeeded")
	}
	junk := filepath.Join(t.TempDir(), "junk.pem")
	os.WriteFile(junk, []byte("not pem"), 0o600)
	if _, err := Load(cert, key, junk); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Errorf("Load with a junk CA file: %v", err)
	}
	// A hand-made certificate without identity, with its key.
	plain := plainLeaf(t, dir)
	pdir := t.TempDir()
	pc, pk := filepath.Join(pdir, "c.crt"), filepath.Join(pdir, "c.key")
	kd, _ := x509.MarshalECPrivateKey(plain.PrivateKey.(*ecdsa.PrivateKey))
	os.WriteFile(pc, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: plain.Certificate[0]}), 0o600)
	os.WriteFile(pk, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}), 0o600)
	if _, err := Load(pc, pk, caCert); err == nil || !strings.Contains(err.Error(), "no ringtrain identity") {
		t.Errorf("Load of a certificate without identity: %v", err)
	}
}

// TestLoadRefusesThePlaceholder: the manifests' certificate Secrets ship
// Placeholder; a process started with it must say so and how to make real
// certificates, whichever of the three files holds it.
func TestLoadRefusesThePlaceholder(t *testing.T) {
	w := Identity{Worker, "w1"}
	dir := authority(t, w)
	cert, key := Paths(dir, w)
	caCert, _ := CAPaths(dir)
	ph := filepath.Join(t.TempDir(), "placeholder")
	// As a Secret mounts it: the text alone, here with a newline.
	if err := os.WriteFile(ph, []byte(Placeholder+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, cert, key, ca string }{
		{"certificate", ph, key, caCert},
		{"key", cert, ph, caCert},
		{"authority", cert, key, ph},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(tc.cert, tc.key, tc.ca)
			if err == nil {
				t.Fatal("Load accepted the placeholder")
			}
			for _, want := range []string{ph, "placeholder", "ringtrain pki init", "ringtrain pki issue", "deploy/README.md"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
		})
	}
	if _, err := Load(cert, key, caCert); err != nil {
		t.Errorf("Load of real certificates: %v", err)
	}
}
