package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/ringtrain/ringtrain/localcluster"
)

// tokenEnv is the environment variable that may carry the join token.
const tokenEnv = localcluster.TokenEnv

// processFlags are the flags every cluster process (coordinator, worker)
// has: its name, its listeners, how others reach it, its credentials.
type processFlags struct {
	name      string
	listen    string // gRPC: control (coordinator) or all-reduce data (worker)
	gossip    string
	http      string
	advertise string
	tokenFile string
	store     string
	tlsCert   string
	tlsKey    string
	tlsCA     string
}

func (p *processFlags) register(f *pflag.FlagSet, listen, listenHelp string) {
	host, _ := os.Hostname()
	f.StringVar(&p.name, "name", host, "this process's name in the job (unique; e.g. the pod name)")
	f.StringVar(&p.listen, "listen", listen, listenHelp)
	f.StringVar(&p.gossip, "gossip", ":7946", "memberlist address (TCP and UDP)")
	f.StringVar(&p.http, "http", ":8080", "HTTP address serving /healthz, /readyz and /metrics (empty: none)")
	f.StringVar(&p.advertise, "advertise", "", "host other processes reach this one at (default: the first non-loopback address)")
	f.StringVar(&p.tokenFile, "token-file", "", "file holding the job's join token (default: $"+tokenEnv+")")
	f.StringVar(&p.tlsCert, "tls-cert", "", "certificate (PEM) for mutual TLS on every gRPC link")
	f.StringVar(&p.tlsKey, "tls-key", "", "private key (PEM) of --tls-cert")
	f.StringVar(&p.tlsCA, "tls-ca", "", "CA certificate (PEM) that signs every process's certificate")
}

// token reads the join token from --token-file or the environment and
// checks it (checkToken).
func (p *processFlags) token() (string, error) {
	if p.tokenFile != "" {
		t, err := readToken(p.tokenFile, "join token")
		if err != nil {
			return "", err
		}
		return t, checkToken(t, p.tokenFile)
	}
	if t := strings.TrimSpace(os.Getenv(tokenEnv)); t != "" {
		return t, checkToken(t, "$"+tokenEnv)
	}
	return "", fmt.Errorf("no join token: pass --token-file or set %s (make one with %s)", tokenEnv, makeToken)
}

// minTokenBytes is the shortest join token a coordinator or worker
// accepts.
const minTokenBytes = 16

// makeToken is how to make a join token.
const makeToken = "`head -c 32 /dev/urandom | base64`"

// placeholderTokens are parts of the values that stand for a token in
// examples and manifests (deploy/k8s/base/secret.yaml), lower case.
var placeholderTokens = []string{"replace-me", "replace_me", "replaceme", "changeme", "change-me", "change_me"}

// checkToken refuses a join token that is a placeholder or shorter than
// minTokenBytes, saying where it came from (from) and how to make one; the
// error never shows the token.
func checkToken(tok, from string) error {
	lower := strings.ToLower(tok)
	for _, p := range placeholderTokens {
		if strings.Contains(lower, p) {
			return fmt.Errorf("join token from %s is a placeholder (as in deploy/k8s/base/secret.yaml): make one with %s", from, makeToken)
		}
	}
	if len(tok) < minTokenBytes {
		return fmt.Errorf("join token from %s is %d bytes; use at least %d random bytes: make one with %s", from, len(tok), minTokenBytes, makeToken)
	}
	return nil
}

// readToken reads a token (what names it in errors) from file: its
// content without surrounding white space, which must not be empty.
func readToken(file, what string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", fmt.Errorf("%s: %s is empty", what, file)
	}
	return t, nil
}

// advertiseHost is the host others reach this process at.
func (p *processFlags) advertiseHost() (string, error) {
	if p.advertise != "" {
		return p.advertise, nil
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return "", fmt.Errorf("finding this host's address: %w (pass --advertise)", err)
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() && ipn.IP.To4() != nil {
			return ipn.IP.String(), nil
		}
	}
	return "127.0.0.1", nil
}

// advertised returns host:port for a listen address like ":7070".
func advertised(host, listen string) (string, error) {
	_, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("address %q: %w", listen, err)
	}
	return net.JoinHostPort(host, port), nil
}

// advertisedData is the address others dial to reach a worker's data
// listener: host with the --listen port, or with port when it is set (the
// port the listener is reached at from elsewhere, behind a port mapping or
// a proxy).
func advertisedData(host, listen string, port int) (string, error) {
	addr, err := advertised(host, listen)
	if err != nil {
		return "", fmt.Errorf("--listen: %w", err)
	}
	switch {
	case port < 0 || port > 65535:
		return "", fmt.Errorf("--advertise-port %d: not a port (1 to 65535, or 0 for the --listen port)", port)
	case port > 0:
		return net.JoinHostPort(host, strconv.Itoa(port)), nil
	}
	return addr, nil
}

// tlsConfigs builds the mutual-TLS configurations of --tls-cert/key/ca:
// servers require a client certificate signed by the CA, clients check the
// server's chain against the CA. Peers are dialled by IP inside a cluster,
// so the chain is what is verified, not the host name. All three flags
// empty: nil, nil (plaintext).
func (p *processFlags) tlsConfigs() (server, client *tls.Config, err error) {
	if p.tlsCert == "" && p.tlsKey == "" && p.tlsCA == "" {
		return nil, nil, nil
	}
	if p.tlsCert == "" || p.tlsKey == "" || p.tlsCA == "" {
		return nil, nil, errors.New("TLS needs all three of --tls-cert, --tls-key and --tls-ca")
	}
	cert, err := tls.LoadX509KeyPair(p.tlsCert, p.tlsKey)
	if err != nil {
		return nil, nil, fmt.Errorf("TLS: %w", err)
	}
	caPEM, err := os.ReadFile(p.tlsCA)
	if err != nil {
		return nil, nil, fmt.Errorf("TLS: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, nil, fmt.Errorf("TLS: %s holds no PEM certificate", p.tlsCA)
	}
	server = &tls.Config{
		Certificates: []tls.Certificate{cert}, ClientCAs: pool,
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS13,
	}
	client = &tls.Config{
		Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13,
		InsecureSkipVerify: true, // the chain is verified below, the host name is not
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			return verifyChain(raw, pool)
		},
	}
	return server, client, nil
}

func verifyChain(raw [][]byte, roots *x509.CertPool) error {
	if len(raw) == 0 {
		return errors.New("TLS: the peer sent no certificate")
	}
	certs := make([]*x509.Certificate, len(raw))
	for i, r := range raw {
		c, err := x509.ParseCertificate(r)
		if err != nil {
			return fmt.Errorf("TLS: peer certificate: %w", err)
		}
		certs[i] = c
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	_, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		return fmt.Errorf("TLS: peer certificate: %w", err)
	}
	return nil
}

// dialOption is the control-plane transport credential for client.
func dialOption(client *tls.Config) grpc.DialOption {
	if client == nil {
		return grpc.WithTransportCredentials(insecure.NewCredentials())
	}
	return grpc.WithTransportCredentials(credentials.NewTLS(client))
}

// serveHTTP serves h on addr until ctx ends; an empty addr serves nothing.
// It returns the bound address.
func serveHTTP(ctx context.Context, addr string, h http.Handler) (string, error) {
	if addr == "" {
		return "", nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("--http: %w", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	context.AfterFunc(ctx, func() {
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	})
	return ln.Addr().String(), nil
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
