package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/ringtrain/ringtrain/internal/netlimit"
	"github.com/ringtrain/ringtrain/localcluster"
	"github.com/ringtrain/ringtrain/pki"
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
	insecure  bool
}

func (p *processFlags) register(f *pflag.FlagSet, listen, listenHelp string) {
	host, _ := os.Hostname()
	f.StringVar(&p.name, "name", host, "this process's name in the job (unique; e.g. the pod name)")
	f.StringVar(&p.listen, "listen", listen, listenHelp)
	f.StringVar(&p.gossip, "gossip", ":7946", "memberlist address (TCP and UDP)")
	f.StringVar(&p.http, "http", ":8080", "HTTP address serving /healthz, /readyz and /metrics (empty: none)")
	f.StringVar(&p.advertise, "advertise", "", "host other processes reach this one at (default: the first non-loopback address)")
	f.StringVar(&p.tokenFile, "token-file", "", "file holding the job's join token (default: $"+tokenEnv+")")
	f.StringVar(&p.tlsCert, "tls-cert", "", "this process's certificate (PEM; 'ringtrain pki issue' makes it) for mutual TLS on every gRPC link")
	f.StringVar(&p.tlsKey, "tls-key", "", "private key (PEM) of --tls-cert")
	f.StringVar(&p.tlsCA, "tls-ca", "", "CA certificate (PEM) that signs every process's certificate")
	f.BoolVar(&p.insecure, "insecure", false, "serve gRPC in plaintext on an address other machines reach (a network only this job uses; default: refuse without TLS unless bound to loopback)")
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

// creds loads --tls-cert/key/ca (nil, nil when all three are empty) and
// checks that the certificate is this process's: its role's, and a
// worker's own name's (see package pki).
func (p *processFlags) creds(role pki.Role) (*pki.Creds, error) {
	if p.tlsCert == "" && p.tlsKey == "" && p.tlsCA == "" {
		return nil, nil
	}
	if p.tlsCert == "" || p.tlsKey == "" || p.tlsCA == "" {
		return nil, errors.New("TLS needs all three of --tls-cert, --tls-key and --tls-ca")
	}
	c, err := pki.Load(p.tlsCert, p.tlsKey, p.tlsCA)
	if err != nil {
		return nil, fmt.Errorf("TLS: %w", err)
	}
	name := ""
	if role == pki.Worker {
		name = p.name
	}
	if role != "" {
		if err := pki.Expect(c.Self, role, name); err != nil {
			if name == "" {
				return nil, fmt.Errorf("TLS: --tls-cert %s is %s's certificate, not a %s's (issue one with 'ringtrain pki issue --role %s')", p.tlsCert, c.Self, role, role)
			}
			return nil, fmt.Errorf("TLS: --tls-cert %s is %s's certificate, but this is %s %q (issue one with 'ringtrain pki issue --role %s %s')", p.tlsCert, c.Self, role, name, role, name)
		}
	}
	return c, nil
}

// plaintextOK refuses to serve gRPC without TLS on an address other
// machines reach, unless --insecure says the network is trusted: a
// cluster is secure by default. Loopback addresses (one machine, as
// `train --workers N` is) need no TLS.
func (p *processFlags) plaintextOK(what, addr string) error {
	if p.insecure || isLoopback(addr) {
		return nil
	}
	return fmt.Errorf("%s %s is reachable from other machines, and no TLS is set: give --tls-cert, --tls-key and --tls-ca (make them with 'ringtrain pki init' and 'ringtrain pki issue'), or --insecure on a network only this job uses", what, addr)
}

// etcdTLS is the TLS of a coordinator's etcd client. https:// endpoints
// are TLS with the coordinator's certificate, whose common name etcd maps
// to a user ('ringtrain pki etcd-auth' gives that user the job's keys
// alone); http:// ones (or no scheme) are plaintext, refused beyond
// loopback unless --insecure.
func (p *processFlags) etcdTLS(endpoints []string, creds *pki.Creds) (*tls.Config, error) {
	secure := 0
	for _, e := range endpoints {
		hostport, scheme := e, "http"
		if u, err := url.Parse(e); err == nil && u.Host != "" {
			hostport, scheme = u.Host, u.Scheme
		}
		switch scheme {
		case "https":
			secure++
		case "http":
			if err := p.plaintextOK("--etcd-endpoints", e); err != nil && !isLoopback(hostport) {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("--etcd-endpoints %s: want an http:// or https:// URL", e)
		}
	}
	switch {
	case secure == 0:
		return nil, nil
	case secure < len(endpoints):
		return nil, fmt.Errorf("--etcd-endpoints %s mixes https:// and http:// members", strings.Join(endpoints, ","))
	case creds == nil:
		return nil, errors.New("--etcd-endpoints are https://: give --tls-cert, --tls-key and --tls-ca (a coordinator's certificate, etcd's user)")
	}
	return creds.EtcdClientConfig(), nil
}

// etcdClient connects to the etcd of --etcd-endpoints (comma-separated)
// with the TLS etcdTLS decides for creds. Keepalive pings find a member
// that stopped answering (paused, cut off) so that requests move to the
// others instead of hanging on it; etcd accepts pings every 5 s at most.
func (p *processFlags) etcdClient(endpoints string, creds *pki.Creds, dialTimeout time.Duration) (*clientv3.Client, error) {
	eps := splitList(endpoints)
	if len(eps) == 0 {
		return nil, errors.New("--etcd-endpoints is required")
	}
	tlsCfg, err := p.etcdTLS(eps, creds)
	if err != nil {
		return nil, err
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, TLS: tlsCfg, DialTimeout: dialTimeout,
		DialKeepAliveTime: 5 * time.Second, DialKeepAliveTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return nil, fmt.Errorf("etcd: %w", err)
	}
	return cli, nil
}

// isLoopback reports whether addr (host:port, or a URL's host:port) names
// only this machine: a loopback IP or "localhost". An empty host (all
// interfaces) is not.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// dialOption is the control-plane transport credential for client.
// With creds it is mutual TLS to a coordinator's certificate; nil:
// plaintext.
func dialOption(creds *pki.Creds) grpc.DialOption {
	if creds == nil {
		return grpc.WithTransportCredentials(insecure.NewCredentials())
	}
	return grpc.WithTransportCredentials(credentials.NewTLS(creds.ClientConfig(pki.Want(pki.Coordinator, ""))))
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
	srv, _ := netlimit.HTTP(ln, h, 0, nil)
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
