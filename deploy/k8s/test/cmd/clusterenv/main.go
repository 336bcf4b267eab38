// Command clusterenv prepares what deploy/k8s/test/run.sh needs to start a
// throwaway kube-apiserver: free loopback ports, and the certificates, the
// service-account key and the kubeconfig of a test cluster.
//
//	clusterenv ports N            prints N free TCP ports on 127.0.0.1, one a line
//	clusterenv pki DIR URL        writes DIR/{ca,apiserver,admin}.{crt,key},
//	                              DIR/sa.key, DIR/sa.pub and DIR/kubeconfig for the
//	                              API server at URL (https://127.0.0.1:PORT)
//	clusterenv ready DIR URL      exits 0 when URL/readyz answers ok to DIR's
//	                              administrator (no kubectl or curl needed)
//
// The authority and its certificates live for a day: they are made afresh
// for every run and never leave the run's temporary directory.
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "clusterenv:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: clusterenv ports N | clusterenv pki DIR URL")
	}
	switch args[0] {
	case "ports":
		if len(args) != 2 {
			return errors.New("usage: clusterenv ports N")
		}
		n, err := strconv.Atoi(args[1])
		if err != nil || n < 1 {
			return fmt.Errorf("ports: %q is not a positive count", args[1])
		}
		ports, err := freePorts(n)
		if err != nil {
			return err
		}
		for _, p := range ports {
			fmt.Println(p)
		}
		return nil
	case "pki":
		if len(args) != 3 {
			return errors.New("usage: clusterenv pki DIR URL")
		}
		return writePKI(args[1], args[2], time.Now())
	case "ready":
		if len(args) != 3 {
			return errors.New("usage: clusterenv ready DIR URL")
		}
		return ready(args[1], args[2])
	}
	return fmt.Errorf("unknown command %q (want ports or pki)", args[0])
}

// freePorts returns n distinct ports that were free on 127.0.0.1: all n
// listeners are held open together, so the kernel cannot hand out one
// port twice.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("ports: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// ready asks server's /readyz as DIR's administrator, over DIR's authority.
func ready(dir, server string) error {
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "admin.crt"), filepath.Join(dir, "admin.key"))
	if err != nil {
		return fmt.Errorf("ready: %w", err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		return fmt.Errorf("ready: %w", err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	client := &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: roots}},
	}
	resp, err := client.Get(strings.TrimSuffix(server, "/") + "/readyz")
	if err != nil {
		return fmt.Errorf("ready: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("ready: %s: %s", resp.Status, body)
	}
	return nil
}

// writePKI writes the test cluster's authority, the API server's serving
// certificate (for 127.0.0.1, localhost and the in-cluster names of the
// kubernetes Service), an administrator's client certificate in the group
// system:masters, the service-account signing key, and a kubeconfig that
// reaches server as the administrator.
func writePKI(dir, server string, now time.Time) error {
	u, err := url.Parse(server)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("pki: %q is not an https:// URL", server)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	caTmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "ringtrain-k8s-test-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := sign(caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	if err := writeCert(dir, "ca", caDER, caKey); err != nil {
		return err
	}

	leaf := func(name string, subject pkix.Name, usage x509.ExtKeyUsage, dns []string, ips []net.IP) ([]byte, error) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		der, err := sign(&x509.Certificate{
			Subject:     subject,
			NotBefore:   now.Add(-time.Hour),
			NotAfter:    now.Add(24 * time.Hour),
			KeyUsage:    x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{usage},
			DNSNames:    dns,
			IPAddresses: ips,
		}, ca, &key.PublicKey, caKey)
		if err != nil {
			return nil, err
		}
		return der, writeCert(dir, name, der, key)
	}
	if _, err := leaf("apiserver", pkix.Name{CommonName: "kube-apiserver"}, x509.ExtKeyUsageServerAuth,
		[]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
		// 10.96.0.1: the kubernetes Service's address in run.sh's --service-cluster-ip-range.
		[]net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.96.0.1")}); err != nil {
		return err
	}
	if _, err := leaf("admin", pkix.Name{CommonName: "ringtrain-test-admin", Organization: []string{"system:masters"}},
		x509.ExtKeyUsageClientAuth, nil, nil); err != nil {
		return err
	}

	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	saDER, err := x509.MarshalECPrivateKey(saKey)
	if err != nil {
		return err
	}
	saPub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return err
	}
	if err := writePEM(filepath.Join(dir, "sa.key"), "EC PRIVATE KEY", saDER); err != nil {
		return err
	}
	if err := writePEM(filepath.Join(dir, "sa.pub"), "PUBLIC KEY", saPub); err != nil {
		return err
	}
	return writeKubeconfig(dir, server, caDER)
}

func sign(tmpl, parent *x509.Certificate, pub *ecdsa.PublicKey, signer *ecdsa.PrivateKey) ([]byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		return nil, fmt.Errorf("pki: signing %s: %w", tmpl.Subject.CommonName, err)
	}
	return der, nil
}

func writeCert(dir, name string, der []byte, key *ecdsa.PrivateKey) error {
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := writePEM(filepath.Join(dir, name+".crt"), "CERTIFICATE", der); err != nil {
		return err
	}
	return writePEM(filepath.Join(dir, name+".key"), "EC PRIVATE KEY", keyDER)
}

func writePEM(path, typ string, der []byte) error {
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	return nil
}

// writeKubeconfig writes DIR/kubeconfig with the files' paths, so that
// kube-controller-manager, kube-scheduler and the tests read the same one.
func writeKubeconfig(dir, server string, caDER []byte) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	ca := base64.StdEncoding.EncodeToString(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}))
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
  - name: test
    cluster:
      server: %s
      certificate-authority-data: %s
users:
  - name: admin
    user:
      client-certificate: %s
      client-key: %s
contexts:
  - name: test
    context: {cluster: test, user: admin}
current-context: test
`, server, ca, filepath.Join(abs, "admin.crt"), filepath.Join(abs, "admin.key"))
	if err := os.WriteFile(filepath.Join(dir, "kubeconfig"), []byte(cfg), 0o600); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	return nil
}
