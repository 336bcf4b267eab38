package main

import (
	"context"
	"crypto/rand"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/ringtrain/ringtrain/allreduce"
	"github.com/ringtrain/ringtrain/api"
	"github.com/ringtrain/ringtrain/coordinator"
)

// tokenStatusServer answers Status only to a caller that shows one of
// tokens as a bearer token.
type tokenStatusServer struct {
	api.ControlServer
	tokens []string
}

func (s tokenStatusServer) Status(ctx context.Context, _ *api.StatusRequest) (*api.StatusReply, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	for _, v := range md.Get("authorization") {
		for _, tok := range s.tokens {
			if v == "Bearer "+tok {
				return &api.StatusReply{Job: "j", Coordinator: "coord-a", State: "running", Epochs: 1}, nil
			}
		}
	}
	return nil, status.Error(codes.Unauthenticated, "coordinator: status needs a token")
}

func serveTokenStatus(t *testing.T, tokens ...string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	api.RegisterControlServer(g, tokenStatusServer{tokens: tokens})
	go g.Serve(ln)
	t.Cleanup(g.Stop)
	return ln.Addr().String()
}

// `ringtrain status` shows the coordinator a token: the status token of
// --status-token-file, else the join token of --token-file or
// $RINGTRAIN_JOIN_TOKEN. Without one the coordinator's refusal is shown.
func TestStatusSendsTheToken(t *testing.T) {
	dir := t.TempDir()
	joinFile, statusFile := filepath.Join(dir, "join"), filepath.Join(dir, "status")
	os.WriteFile(joinFile, []byte("join-secret\n"), 0o600)
	os.WriteFile(statusFile, []byte("read-only\n"), 0o600)
	joinOnly := serveTokenStatus(t, "join-secret")
	statusOnly := serveTokenStatus(t, "read-only")

	t.Setenv(tokenEnv, "")
	if out, err := runCLI(t, "status", "--coordinator", joinOnly); err == nil || !strings.Contains(err.Error(), "token") {
		t.Errorf("status without a token: %v\n%s", err, out)
	}
	for _, tc := range []struct {
		name, addr string
		env        string
		args       []string
	}{
		{"the environment", joinOnly, "join-secret", nil},
		{"--token-file", joinOnly, "", []string{"--token-file", joinFile}},
		{"--status-token-file", statusOnly, "join-secret", []string{"--status-token-file", statusFile}},
	} {
		t.Setenv(tokenEnv, tc.env)
		out, err := runCLI(t, append([]string{"status", "--coordinator", tc.addr}, tc.args...)...)
		if err != nil || !strings.Contains(out, "coordinator coord-a: running") {
			t.Errorf("status with the token of %s: %v\n%s", tc.name, err, out)
		}
	}
}

// rawCodec sends and receives a ring link's messages as they are: frame
// header and payload, in one byte slice.
type rawCodec struct{}

func (rawCodec) Name() string { return "ringtrain-frame" }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.([]byte))}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize()
	return nil
}

// strangerLink opens a ring link to addr as a stranger who knows the job,
// the generation and the rank to claim, but not the join token: it sends
// a hello with a nonce, answers whatever comes back with made-up bytes,
// and returns the error that ended the link (nil if it is still open
// after hold).
func strangerLink(t *testing.T, addr string, job, gen uint64, rank int, hold time.Duration) error {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawCodec{})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := conn.NewStream(ctx, &grpc.StreamDesc{StreamName: "Link", ServerStreams: true, ClientStreams: true},
		"/ringtrain.allreduce.Ring/Link", grpc.WaitForReady(true))
	if err != nil {
		return err
	}
	hello := func() []byte {
		b := make([]byte, allreduce.HeaderLen+32)
		allreduce.PutHeader(b, allreduce.Header{Kind: allreduce.KindHello, Job: job, Generation: gen, From: uint32(rank), Len: 32})
		rand.Read(b[allreduce.HeaderLen:])
		return b
	}
	recv := make(chan error, 1)
	go func() {
		for {
			var m []byte
			if err := s.RecvMsg(&m); err != nil {
				recv <- err
				return
			}
			if s.SendMsg(hello()) != nil {
				continue // the error comes with the next RecvMsg
			}
		}
	}()
	if err := s.SendMsg(hello()); err != nil && err != io.EOF {
		return err
	}
	select {
	case err := <-recv:
		return err
	case <-time.After(hold):
		return nil
	}
}

// TestClusterRefusesStrangers runs a job whose coordinator serves HTTP on
// every interface and checks what a process without the join token gets:
// no status (gRPC or HTTP; the probes and metrics stay open), and no link
// of the running ring though it names the job, the generation and the
// rank (all public); the worker logs the refusal and the job completes.
func TestClusterRefusesStrangers(t *testing.T) {
	if testing.Short() {
		t.Skip("runs clusters of processes")
	}
	spec := clusterJob("strangers", 2)
	spec.Epochs, spec.TrainLimit = 1, 3200
	c := newTestCluster(t, spec)
	c.coordHTTPOpen = true
	c.startJob(2)
	st, _ := c.waitFor("a ring of 2", 2*time.Minute, func(st *api.StatusReply) bool { return st.State == "running" && len(st.Ring) == 2 })

	// The status, without a token and with one.
	t.Setenv(tokenEnv, "")
	if out, err := runCLI(t, "status", "--coordinator", c.coordinatorAddrs()); err == nil || !strings.Contains(err.Error(), "needs a token") {
		t.Errorf("status without a token: %v\n%s", err, out)
	}
	tokenFile := filepath.Join(c.dir, "join-token")
	os.WriteFile(tokenFile, []byte(c.token), 0o600)
	if out, err := runCLI(t, "status", "--coordinator", c.coordinatorAddrs(), "--token-file", tokenFile); err != nil || !strings.Contains(out, "strangers") {
		t.Errorf("status with the join token: %v\n%s", err, out)
	}
	_, port, _ := net.SplitHostPort(c.httpAt["coordinator-0"])
	get := func(path, token string) int {
		req, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1:"+port+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	for path, want := range map[string][2]int{
		"/status": {401, 200}, "/api/status": {401, 200}, "/": {401, 200},
		"/healthz": {200, 200}, "/readyz": {200, 200}, "/metrics": {200, 200},
	} {
		if got := [2]int{get(path, ""), get(path, c.token)}; got != want {
			t.Errorf("GET %s without and with the token: %v, want %v", path, got, want)
		}
	}

	// A link to worker-1 claiming to be its left neighbour.
	left := (slices.Index(st.Ring, "worker-1") + len(st.Ring) - 1) % len(st.Ring)
	start := time.Now()
	err := strangerLink(t, c.workerAt["worker-1"], coordinator.JobID(spec.Hash()), st.Generation, left, 3*time.Second)
	if err == nil {
		t.Errorf("a stranger holds a ring link to worker-1")
	} else {
		t.Logf("the stranger's link was closed after %v: %v", time.Since(start).Round(time.Millisecond), err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(c.workers["worker-1"].logText(), "refused a link from 127.0.0.1:") {
		if time.Now().After(deadline) {
			t.Errorf("worker-1 logged no refused link:\n%s", c.workers["worker-1"].logText())
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.waitFor("job completion", 3*time.Minute, func(st *api.StatusReply) bool { return st.State == "done" })
	c.waitWorkersExit(30 * time.Second)
}

// A cluster is secure by default: a worker or coordinator whose gRPC
// listener other machines reach, or whose etcd is beyond loopback in
// plaintext, refuses to start without TLS, naming the flags that fix it;
// --insecure says the network is trusted, and loopback needs neither.
func TestPlaintextNeedsInsecure(t *testing.T) {
	t.Setenv(tokenEnv, strongToken)
	dir := t.TempDir()
	jobFile := filepath.Join(dir, "job.yaml")
	if err := os.WriteFile(jobFile, []byte("model: lenet5\ndataset: mnist\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	worker := func(listen string, extra ...string) []string {
		return append([]string{"worker", "--coordinator", "127.0.0.1:1", "--join-timeout", "1ms", "--name", "w0", "--listen", listen,
			"--gossip", "127.0.0.1:0", "--http", "", "--advertise", "127.0.0.1"}, extra...)
	}
	coordinator := func(listen, etcd string, extra ...string) []string {
		return append([]string{"coordinator", "-f", jobFile, "--etcd-endpoints", etcd, "--store", filepath.Join(dir, "store"),
			"--name", "c0", "--listen", listen, "--gossip", "127.0.0.1:0", "--http", "", "--advertise", "127.0.0.1"}, extra...)
	}
	for _, tc := range []struct {
		name    string
		args    []string
		refused string // "": not refused for plaintext
	}{
		{"worker on every interface", worker(":0"), "--listen :0"},
		{"worker on every interface, --insecure", worker(":0", "--insecure"), ""},
		{"worker on loopback", worker("127.0.0.1:0"), ""},
		{"coordinator on every interface", coordinator(":0", "http://127.0.0.1:1"), "--listen :0"},
		{"coordinator with a remote plaintext etcd", coordinator("127.0.0.1:0", "http://10.255.255.1:2379"), "--etcd-endpoints http://10.255.255.1:2379"},
		{"coordinator with https etcd and no certificate", coordinator("127.0.0.1:0", "https://127.0.0.1:1"), "give --tls-cert"},
		{"coordinator mixing https and http", coordinator("127.0.0.1:0", "https://127.0.0.1:1,http://127.0.0.1:2"), "mixes https:// and http://"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := runCLIWithin(t, 20*time.Second, tc.args...)
			if err == nil {
				t.Fatal("started; it cannot reach a coordinator or etcd, so it should have failed")
			}
			plaintext := strings.Contains(err.Error(), "no TLS is set") || strings.Contains(err.Error(), "etcd-endpoints")
			switch {
			case tc.refused == "" && plaintext:
				t.Errorf("refused for plaintext: %v", err)
			case tc.refused != "" && !strings.Contains(err.Error(), tc.refused):
				t.Errorf("%v; want a refusal naming %q", err, tc.refused)
			case tc.refused == "--listen :0" && !strings.Contains(err.Error(), "ringtrain pki init") && !strings.Contains(err.Error(), "--insecure"):
				t.Errorf("%v; want the way out named (ringtrain pki, --insecure)", err)
			}
		})
	}
}
