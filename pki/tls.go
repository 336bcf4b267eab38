package pki

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// Creds are one process's credentials: its certificate and key, the
// authority that signs every certificate of the cluster, and the identity
// its own certificate carries.
type Creds struct {
	Cert tls.Certificate
	Pool *x509.CertPool
	Self Identity
}

// Placeholder is what the Kubernetes manifests' certificate Secrets hold
// (deploy/k8s/base/tls.yaml) until real certificates replace it. Load
// refuses a file that holds it, saying how to make real ones.
const Placeholder = "replace-me: make certificates with 'ringtrain pki' (deploy/README.md)"

// placeholderMark is the part of Placeholder Load looks for, so that a
// placeholder mangled on its way into a Secret (quoted, with a newline
// added) is still recognised.
const placeholderMark = "replace-me: make certificates with 'ringtrain pki'"

// checkPlaceholder refuses files that hold the manifests' placeholder
// rather than PEM: without it, Load would fail with crypto/tls's "failed to
// find any PEM data", which does not say what to do.
func checkPlaceholder(files ...string) error {
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // Load reports it
		}
		if bytes.Contains(b, []byte(placeholderMark)) {
			return fmt.Errorf("pki: %s holds the Kubernetes manifests' placeholder, not a certificate or key: make the authority and certificates with 'ringtrain pki init' and 'ringtrain pki issue' and put them in the Secret (deploy/README.md, \"Certificates\")", f)
		}
	}
	return nil
}

// Load reads a process's certificate, key and the authority's certificate
// (PEM files, as Issue and Init write them). The certificate must carry a
// ringtrain identity and be signed by the authority. A file holding the
// manifests' Placeholder is refused as such.
func Load(certFile, keyFile, caFile string) (*Creds, error) {
	if err := checkPlaceholder(certFile, keyFile, caFile); err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("pki: %s and %s: %w", certFile, keyFile, err)
	}
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("pki: %s holds no PEM certificate", caFile)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("pki: %s: %w", certFile, err)
	}
	id, err := IdentityOf(leaf)
	if err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, certFile)
	}
	if err := verify(cert.Certificate, pool); err != nil {
		return nil, fmt.Errorf("pki: %s is not signed by the authority in %s: %w", certFile, caFile, err)
	}
	return &Creds{Cert: cert, Pool: pool, Self: id}, nil
}

// ServerConfig is mutual TLS for a listener: a client must present a
// certificate of the authority that carries a ringtrain identity. Which
// identity may do what is the server's to check (FromContext).
func (c *Creds) ServerConfig() *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{c.Cert}, ClientCAs: c.Pool,
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS13,
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := StateIdentity(cs)
			return err
		},
	}
}

// ClientConfig is mutual TLS for a dialler that accepts a server only when
// its certificate chains to the authority and accept approves the
// identity it carries (Want makes the usual accept). Host names are not
// checked: peers are dialled by IP.
func (c *Creds) ClientConfig(accept func(Identity) error) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{c.Cert}, MinVersion: tls.VersionTLS13,
		InsecureSkipVerify: true, // VerifyConnection checks the chain and the identity; host names are not used
		VerifyConnection: func(cs tls.ConnectionState) error {
			raw := make([][]byte, len(cs.PeerCertificates))
			for i, pc := range cs.PeerCertificates {
				raw[i] = pc.Raw
			}
			if err := verify(raw, c.Pool); err != nil {
				return fmt.Errorf("pki: the server's certificate: %w", err)
			}
			id, err := StateIdentity(cs)
			if err != nil {
				return err
			}
			return accept(id)
		},
	}
}

// EtcdClientConfig is TLS for a client of etcd: etcd's members are
// checked as any TLS server (chain and host name), and the client
// certificate's common name is the etcd user it acts as.
func (c *Creds) EtcdClientConfig() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{c.Cert}, RootCAs: c.Pool, MinVersion: tls.VersionTLS12}
}

// ErrIdentity is wrapped by the errors of identities refused: a peer whose
// certificate names another role or another name than the one it acts as.
var ErrIdentity = errors.New("pki: wrong identity")

// Want accepts role's certificates, and of those only name's unless name
// is empty.
func Want(role Role, name string) func(Identity) error {
	return func(id Identity) error { return Expect(id, role, name) }
}

// Expect reports whether id is role's (and name's, unless name is empty).
func Expect(id Identity, role Role, name string) error {
	switch {
	case id.Role != role:
		if name != "" {
			return fmt.Errorf("%w: the peer's certificate is %s's, not %s %q's", ErrIdentity, id, role, name)
		}
		return fmt.Errorf("%w: the peer's certificate is %s's, not a %s's", ErrIdentity, id, role)
	case name != "" && id.Name != name:
		return fmt.Errorf("%w: the peer's certificate is %s's, not %s %q's", ErrIdentity, id, role, name)
	}
	return nil
}

// StateIdentity is the identity of a TLS peer: the one its first
// certificate carries (the handshake has checked the chain).
func StateIdentity(cs tls.ConnectionState) (Identity, error) {
	if len(cs.PeerCertificates) == 0 {
		return Identity{}, fmt.Errorf("%w: the peer presented no certificate", ErrIdentity)
	}
	id, err := IdentityOf(cs.PeerCertificates[0])
	if err != nil {
		return Identity{}, fmt.Errorf("%w: %v", ErrIdentity, err)
	}
	return id, nil
}

// FromContext is the identity of a gRPC call's peer. ok is false when the
// call did not come over TLS (a plaintext server: nothing to check).
func FromContext(ctx context.Context) (id Identity, ok bool, err error) {
	p, found := peer.FromContext(ctx)
	if !found || p.AuthInfo == nil {
		return Identity{}, false, nil
	}
	info, isTLS := p.AuthInfo.(credentials.TLSInfo)
	if !isTLS {
		return Identity{}, false, nil
	}
	id, err = StateIdentity(info.State)
	return id, true, err
}

// verify checks a chain (leaf first) against the authority's pool.
func verify(raw [][]byte, roots *x509.CertPool) error {
	if len(raw) == 0 {
		return errors.New("no certificate")
	}
	certs := make([]*x509.Certificate, len(raw))
	for i, r := range raw {
		c, err := x509.ParseCertificate(r)
		if err != nil {
			return err
		}
		certs[i] = c
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	_, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	return err
}
