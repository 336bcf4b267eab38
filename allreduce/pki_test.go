package allreduce

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/pki"
)

// testPKI is a throwaway authority and the credentials of workers
// w0, w1, ... it issued.
type testPKI struct {
	creds []*pki.Creds
}

func newTestPKI(t *testing.T, workers int) *testPKI {
	t.Helper()
	dir := t.TempDir()
	if err := pki.Init(dir, "", time.Hour); err != nil {
		t.Fatal(err)
	}
	caCert, _ := pki.CAPaths(dir)
	p := &testPKI{}
	for i := range workers {
		cert, key, err := pki.Issue(dir, pki.Identity{Role: pki.Worker, Name: fmt.Sprintf("w%d", i)}, nil, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		c, err := pki.Load(cert, key, caCert)
		if err != nil {
			t.Fatal(err)
		}
		p.creds = append(p.creds, c)
	}
	return p
}

func (p *testPKI) serverConfig(i int) *tls.Config { return p.creds[i].ServerConfig() }

// clientConfig accepts any worker of the authority; withCert false
// presents no certificate.
func (p *testPKI) clientConfig(i int, withCert bool) *tls.Config {
	c := p.creds[i].ClientConfig(pki.Want(pki.Worker, ""))
	if !withCert {
		c.Certificates = nil
	}
	return c
}

// ringNames is CheckPeer for a ring of w0, w1, ...: rank r must hold the
// certificate of w<r>.
func ringNames(rank int, cs tls.ConnectionState) error {
	id, err := pki.StateIdentity(cs)
	if err != nil {
		return err
	}
	return pki.Expect(id, pki.Worker, fmt.Sprintf("w%d", rank))
}

// TestGRPCRingChecksIdentities forms rings over mutual TLS where each
// rank's certificate names a worker: when rank 1 holds w2's certificate
// (a worker posing as another), both of its neighbours refuse it, by
// name, and no ring forms; with the right certificates it forms.
func TestGRPCRingChecksIdentities(t *testing.T) {
	p := newTestPKI(t, 3)
	dial := func(certOf []int) []error {
		lis := make([]net.Listener, 3)
		addrs := make([]string, 3)
		for i := range lis {
			lis[i], _ = net.Listen("tcp", "127.0.0.1:0")
			addrs[i] = lis[i].Addr().String()
		}
		var logs sync.Map
		errs := make([]error, 3)
		var wg sync.WaitGroup
		for i := range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				tr, err := DialRing(context.Background(), keyed(GRPCConfig{Rank: i, Addrs: addrs, Listener: lis[i], Job: 1, Generation: 1,
					Timeout: time.Second, ServerTLS: p.serverConfig(certOf[i]), ClientTLS: p.clientConfig(certOf[i], true),
					CheckPeer: ringNames, NoSharedMemory: true,
					Logf: func(f string, a ...any) { logs.Store(fmt.Sprintf(f, a...), i) }}))
				if err == nil {
					tr.Close()
				}
				errs[i] = err
			}()
		}
		wg.Wait()
		refusedBy := map[int]bool{}
		logs.Range(func(k, v any) bool {
			t.Logf("rank %d: %s", v, k)
			refusedBy[v.(int)] = true
			return true
		})
		if certOf[1] != 1 && (!refusedBy[0] || !refusedBy[2]) {
			t.Errorf("rank 1 posing as w%d: refusals logged by ranks %v, want 0 and 2", certOf[1], refusedBy)
		}
		return errs
	}
	for r, err := range dial([]int{0, 1, 2}) {
		if err != nil {
			t.Fatalf("rank %d with its own certificate: %v", r, err)
		}
	}
	errs := dial([]int{0, 2, 2})
	if errs[0] == nil || errs[2] == nil {
		t.Fatalf("a ring formed around a rank holding another worker's certificate: %v", errs)
	}
	// (gRPC reports a failed handshake as text.)
	if msg := strings.ReplaceAll(errs[0].Error(), `\"`, `"`); !strings.Contains(msg, `the peer's certificate is worker "w2"'s, not worker "w1"'s`) {
		t.Errorf("rank 0 dialling the impostor: %v, want a refusal naming both identities", errs[0])
	}
}
