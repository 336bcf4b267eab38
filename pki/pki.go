// Package pki owns the identities of a ringtrain cluster: a certificate
// authority, the certificates it issues to coordinators, workers, etcd
// members and operators, and the TLS configurations that check, on every
// link, that a peer is who it claims to be.
//
// An identity is a role and a name. It is written into a certificate as a
// URI subject alternative name, ringtrain://<role>/<name>, and as the
// subject's common name (<name>; etcd maps a client certificate's common
// name to its user) and organizational unit (<role>). The URI is what is
// checked: a certificate without one, or with two, is no ringtrain
// identity.
//
// Peers inside a cluster are dialled by IP (pod addresses are not known
// when certificates are made), so a link checks the chain against the CA
// and then the identity, not a host name: a worker's link to the
// coordinator accepts only a coordinator's certificate, a ring link only
// the certificate of the worker the ring names at that rank, and the
// coordinator takes a worker's join, heartbeat or leave only over a
// connection whose certificate names that worker. etcd's own clients check
// host names as usual, so an etcd member's certificate carries its DNS
// names.
//
// Files (see Init and Issue):
//
//	DIR/ca.crt, DIR/ca.key                 the authority (the key stays with the operator)
//	DIR/<role>/<name>.crt, <name>.key      one identity's certificate and key
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
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/google/renameio/v2"
)

// Role is what a process of a cluster is.
type Role string

// The roles. A client is an operator or a tool ('ringtrain status', the
// etcd administrator 'root').
const (
	Coordinator Role = "coordinator"
	Worker      Role = "worker"
	Etcd        Role = "etcd"
	Client      Role = "client"
)

// Roles lists the roles in the order they are documented.
var Roles = []Role{Coordinator, Worker, Etcd, Client}

// Identity is who a certificate says its holder is.
type Identity struct {
	Role Role
	Name string
}

func (id Identity) String() string { return fmt.Sprintf("%s %q", id.Role, id.Name) }

// URI is the identity as it is written into a certificate.
func (id Identity) URI() *url.URL {
	return &url.URL{Scheme: "ringtrain", Host: string(id.Role), Path: "/" + id.Name}
}

// nameRE is what a name may be: a worker's or pod's name (DNS label
// characters, dots and underscores), at most 253 bytes.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?$`)

// Check reports whether id is a valid identity: a known role and a name of
// DNS label characters, dots and underscores.
func (id Identity) Check() error {
	if !slices.Contains(Roles, id.Role) {
		return fmt.Errorf("pki: unknown role %q (want one of %s)", id.Role, roleList())
	}
	if !nameRE.MatchString(id.Name) {
		return fmt.Errorf("pki: name %q: want 1 to 253 letters, digits, '.', '_' or '-', starting and ending with a letter or digit", id.Name)
	}
	return nil
}

func roleList() string {
	s := make([]string, len(Roles))
	for i, r := range Roles {
		s[i] = string(r)
	}
	return strings.Join(s, ", ")
}

// IdentityOf reads the identity a certificate carries.
func IdentityOf(c *x509.Certificate) (Identity, error) {
	var found []Identity
	for _, u := range c.URIs {
		if u.Scheme != "ringtrain" {
			continue
		}
		id := Identity{Role: Role(u.Host), Name: strings.TrimPrefix(u.Path, "/")}
		if err := id.Check(); err != nil {
			return Identity{}, fmt.Errorf("pki: certificate %q: identity %s: %w", c.Subject.CommonName, u, err)
		}
		found = append(found, id)
	}
	switch len(found) {
	case 0:
		return Identity{}, fmt.Errorf("pki: certificate %q carries no ringtrain identity (a ringtrain://<role>/<name> URI; make certificates with 'ringtrain pki issue')", c.Subject.CommonName)
	case 1:
		return found[0], nil
	}
	return Identity{}, fmt.Errorf("pki: certificate %q carries %d ringtrain identities, not one", c.Subject.CommonName, len(found))
}

// Validity of what Init and Issue make unless told otherwise.
const (
	CAValidity   = 10 * 365 * 24 * time.Hour
	LeafValidity = 365 * 24 * time.Hour
)

// Paths of the authority's files in dir.
func CAPaths(dir string) (cert, key string) {
	return filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
}

// Paths of an identity's files in dir.
func Paths(dir string, id Identity) (cert, key string) {
	base := filepath.Join(dir, string(id.Role), id.Name)
	return base + ".crt", base + ".key"
}

// ErrExists is wrapped by the errors of Init and Issue when the files they
// would write are already there: an authority or a key is never replaced.
var ErrExists = errors.New("already exists")

// Init makes a certificate authority in dir (created 0700 if missing):
// ca.crt and ca.key (0600), valid for validity (0: CAValidity). It refuses
// to replace an existing authority, which would orphan every certificate
// it issued.
func Init(dir, name string, validity time.Duration) error {
	certPath, keyPath := CAPaths(dir)
	for _, p := range []string{certPath, keyPath} {
		if _, err := os.Stat(p); err == nil {
			return fmt.Errorf("pki: %s %w: an authority is never replaced (every certificate it issued would stop working)", p, ErrExists)
		}
	}
	if validity <= 0 {
		validity = CAValidity
	}
	if name == "" {
		name = "ringtrain CA"
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: name},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(validity),
		IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	return writePair(certPath, keyPath, der, key)
}

// Issue makes a certificate for id signed by dir's authority, with hosts
// (DNS names or IP addresses) as further subject alternative names, valid
// for validity (0: LeafValidity). An etcd member's name is one of its DNS
// names too. The certificate serves as server and client at once, as
// every ringtrain process is both. It refuses to replace an identity's
// existing files.
func Issue(dir string, id Identity, hosts []string, validity time.Duration) (certPath, keyPath string, err error) {
	if err := id.Check(); err != nil {
		return "", "", err
	}
	certPath, keyPath = Paths(dir, id)
	for _, p := range []string{certPath, keyPath} {
		if _, err := os.Stat(p); err == nil {
			return "", "", fmt.Errorf("pki: %s %w: remove it first to issue %s again", p, ErrExists, id)
		}
	}
	ca, caKey, err := loadCA(dir)
	if err != nil {
		return "", "", err
	}
	if validity <= 0 {
		validity = LeafValidity
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", fmt.Errorf("pki: %w", err)
	}
	now := time.Now()
	notAfter := now.Add(validity)
	if notAfter.After(ca.NotAfter) {
		notAfter = ca.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: id.Name, OrganizationalUnit: []string{string(id.Role)}},
		NotBefore:    now.Add(-time.Hour), NotAfter: notAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:        []*url.URL{id.URI()},
	}
	if id.Role == Etcd {
		hosts = append([]string{id.Name}, hosts...)
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" && !slices.Contains(tmpl.DNSNames, h) {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return "", "", fmt.Errorf("pki: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(certPath), 0o700); err != nil {
		return "", "", fmt.Errorf("pki: %w", err)
	}
	return certPath, keyPath, writePair(certPath, keyPath, der, key)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail
	}
	return n
}

// writePair writes a certificate (0644) and its key (0600), each
// atomically, the key first.
func writePair(certPath, keyPath string, der []byte, key *ecdsa.PrivateKey) error {
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	if err := renameio.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	if err := renameio.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	return nil
}

func loadCA(dir string) (*x509.Certificate, any, error) {
	certPath, keyPath := CAPaths(dir)
	pair, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: the authority in %s: %w (make one with 'ringtrain pki init %s')", dir, err, dir)
	}
	ca, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, nil, fmt.Errorf("pki: %s: %w", certPath, err)
	}
	if !ca.IsCA {
		return nil, nil, fmt.Errorf("pki: %s is not a certificate authority", certPath)
	}
	return ca, pair.PrivateKey, nil
}
