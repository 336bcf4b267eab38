package coordinator

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"

	"github.com/ringtrain/ringtrain/api"
	"github.com/ringtrain/ringtrain/internal/netlimit"
	"github.com/ringtrain/ringtrain/pki"
)

// request serves one request of method GET to the coordinator's HTTP
// handler, edited by edit (nil: as it is).
func request(s *Server, path string, edit func(*http.Request)) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	if edit != nil {
		edit(req)
	}
	s.HTTPHandler().ServeHTTP(rec, req)
	return rec
}

func bearer(token string) func(*http.Request) {
	return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+token) }
}

// The job's status (gRPC Status, HTTP /status, the dashboard's page and
// JSON) is only told to a caller that shows the join token; the probes and
// the metrics stay open.
func TestStatusNeedsAToken(t *testing.T) {
	c := newCluster(t)
	cd := c.start("coord-a", func(cfg *ServerConfig) { cfg.StatusToken = "read-only" })
	cd.waitLeader(t)
	ctx := c.ctx()

	_, err := cd.client.Status(ctx, nil)
	wantCode(t, err, codes.Unauthenticated, "token")
	_, err = cd.client.Status(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer wrong"), nil)
	wantCode(t, err, codes.Unauthenticated)
	st, err := cd.client.Status(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+testToken), nil)
	if err != nil || st.Job != "testjob" {
		t.Fatalf("status with the join token: %+v, %v", st, err)
	}
	// The status token reads the status, and joins nothing.
	if st, err := cd.client.Status(api.WithToken(ctx, "read-only"), nil); err != nil || st.Job != "testjob" {
		t.Fatalf("status with the status token: %+v, %v", st, err)
	}
	_, err = cd.client.Join(ctx, &api.JoinRequest{Name: "w1", Token: "read-only", JobHash: c.spec.Hash()})
	wantCode(t, err, codes.PermissionDenied)

	for _, path := range []string{"/status", "/", "/api/status", "/api/generations", "/api/records", "/api/checkpoints", "/api/job", "/static/app.js"} {
		if rec := request(cd.srv, path, nil); rec.Code != http.StatusUnauthorized || strings.Contains(rec.Body.String(), "testjob") {
			t.Errorf("GET %s without a token: %d %q, want 401", path, rec.Code, rec.Body.String())
		} else if !strings.HasPrefix(rec.Header().Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("GET %s without a token: WWW-Authenticate %q", path, rec.Header().Get("WWW-Authenticate"))
		}
		if rec := request(cd.srv, path, bearer("wrong")); rec.Code != http.StatusUnauthorized {
			t.Errorf("GET %s with a wrong token: %d, want 401", path, rec.Code)
		}
		for _, tok := range []string{testToken, "read-only"} {
			if rec := request(cd.srv, path, bearer(tok)); rec.Code != http.StatusOK {
				t.Errorf("GET %s with the token %q: %d, want 200", path, tok, rec.Code)
			}
		}
	}
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		if rec := request(cd.srv, path, nil); rec.Code != http.StatusOK {
			t.Errorf("GET %s without a token: %d, want 200", path, rec.Code)
		}
	}
}

// A browser shows the token once, in the URL: it gets an HttpOnly,
// SameSite=Strict cookie and is sent to the same URL without it; the
// cookie then opens the page and its JSON.
func TestDashboardTokenCookie(t *testing.T) {
	c := newCluster(t)
	cd := c.start("coord-a", nil)
	cd.waitLeader(t)

	rec := request(cd.srv, "/?token="+testToken, nil)
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/" {
		t.Fatalf("GET /?token=…: %d, Location %q; want 303 to /", rec.Code, rec.Header().Get("Location"))
	}
	cookies := rec.Result().Cookies()
	if len(cookies) != 1 {
		t.Fatalf("GET /?token=… set %d cookies, want 1", len(cookies))
	}
	ck := cookies[0]
	if !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/" || strings.Contains(ck.Value, testToken) {
		t.Errorf("cookie %+v: want HttpOnly, SameSite=Strict, Path=/, not the token itself", ck)
	}
	withCookie := func(r *http.Request) { r.AddCookie(ck) }
	for _, path := range []string{"/", "/api/status", "/static/app.js", "/status"} {
		if rec := request(cd.srv, path, withCookie); rec.Code != http.StatusOK {
			t.Errorf("GET %s with the cookie: %d, want 200", path, rec.Code)
		}
	}
	// Other query parameters stay.
	rec = request(cd.srv, "/api/records?after=0&token="+testToken+"&mark=x", nil)
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/api/records?after=0&mark=x" {
		t.Errorf("GET /api/records?…&token=…: %d, Location %q", rec.Code, rec.Header().Get("Location"))
	}
	// A wrong token in the URL, or a made-up cookie, opens nothing.
	if rec := request(cd.srv, "/?token=wrong", nil); rec.Code != http.StatusUnauthorized || len(rec.Result().Cookies()) != 0 {
		t.Errorf("GET /?token=wrong: %d, cookies %v", rec.Code, rec.Result().Cookies())
	}
	bad := *ck
	bad.Value = strings.Repeat("0", len(ck.Value))
	if rec := request(cd.srv, "/api/status", func(r *http.Request) { r.AddCookie(&bad) }); rec.Code != http.StatusUnauthorized {
		t.Errorf("GET /api/status with a made-up cookie: %d, want 401", rec.Code)
	}
}

// httpStatus GETs url and returns the status code.
func httpStatus(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// runProcess starts a coordinator process on cfg and stops it when the
// test ends.
func runProcess(t *testing.T, c *cluster, cfg ProcessConfig) *Process {
	t.Helper()
	proc, err := Listen(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- proc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-runErr; err != nil {
			t.Error(err)
		}
	})
	eventually(t, "the process to lead", proc.Server().IsLeader)
	return proc
}

func processConfig(c *cluster, http string) ProcessConfig {
	return ProcessConfig{
		Server: ServerConfig{Name: "coord-a", Spec: c.spec, Token: testToken, Etcd: c.cli, Store: c.store, Samples: testSamples,
			DeadAfter: time.Minute,
			Logf:      func(f string, a ...any) { c.log.logf("coord-a: "+f, a...) }},
		Listen: "127.0.0.1:0", Gossip: "127.0.0.1:0", Advertise: "127.0.0.1", HTTP: http,
	}
}

// An HTTP listener bound to loopback serves the status and the dashboard
// without a token (only this machine reaches it); one bound to every
// interface does not.
func TestProcessStatusOpenOnLoopbackOnly(t *testing.T) {
	c := newCluster(t)
	loop := runProcess(t, c, processConfig(c, "127.0.0.1:0"))
	for _, path := range []string{"/status", "/api/status", "/"} {
		if code := httpStatus(t, "http://"+loop.HTTPAddr()+path); code != http.StatusOK {
			t.Errorf("GET %s on a loopback listener without a token: %d, want 200", path, code)
		}
	}

	c2 := newCluster(t)
	all := runProcess(t, c2, processConfig(c2, ":0"))
	_, port, _ := net.SplitHostPort(all.HTTPAddr())
	for _, path := range []string{"/status", "/api/status", "/"} {
		if code := httpStatus(t, "http://127.0.0.1:"+port+path); code != http.StatusUnauthorized {
			t.Errorf("GET %s on a listener of every interface without a token: %d, want 401", path, code)
		}
	}
	if code := httpStatus(t, "http://127.0.0.1:"+port+"/healthz"); code != http.StatusOK {
		t.Errorf("GET /healthz: %d, want 200", code)
	}
}

// More idle connections than the control listener takes do not make a
// worker's calls fail: the ones over the limit are closed at once, the
// others when the connection handshake deadline passes.
func TestControlConnLimits(t *testing.T) {
	const limit, deadline = 1024, 5 * time.Second // the defaults
	c := newCluster(t)
	proc := runProcess(t, c, processConfig(c, ""))
	cl := dial(t, proc.ControlAddr())
	w := &worker{name: "w1", c: cl}
	if _, err := cl.Join(c.ctx(), &api.JoinRequest{Name: "w1", Token: testToken, JobHash: c.spec.Hash(), DataAddr: "127.0.0.1:7100"}); err != nil {
		t.Fatal(err)
	}
	w.heartbeat(t, 0, 0, false)
	const idle = limit + 100
	conns := make([]net.Conn, 0, idle)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range idle {
		conn, err := net.Dial("tcp", proc.ControlAddr())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, conn)
	}
	start := time.Now()
	w.heartbeat(t, 0, 0, false)
	if n := closedBy(conns, start.Add(time.Second)); n < idle-limit {
		t.Errorf("%d of %d idle connections closed at once, want at least %d", n, idle, idle-limit)
	}
	if n := closedBy(conns, start.Add(deadline+2*time.Second)); n != idle {
		t.Errorf("%d of %d idle connections closed by the handshake deadline, want all", n, idle)
	}
	w.heartbeat(t, 0, 0, false)
}

// The HTTP listener, like the control plane's, holds a bounded number of
// connections: idle ones over the limit are closed at once, the rest when
// they send no request headers in time, and the probes are answered again.
func TestHTTPConnLimits(t *testing.T) {
	const limit = 8
	c := newCluster(t)
	cfg := processConfig(c, "127.0.0.1:0")
	cfg.HTTPMaxConns = limit
	proc := runProcess(t, c, cfg)
	const idle = limit + 4
	conns := make([]net.Conn, 0, idle)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range idle {
		conn, err := net.Dial("tcp", proc.HTTPAddr())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, conn)
	}
	start := time.Now()
	if n := closedBy(conns, start.Add(time.Second)); n != idle-limit {
		t.Errorf("%d of %d idle connections closed at once, want %d (the limit is %d)", n, idle, idle-limit, limit)
	}
	if n := closedBy(conns, start.Add(netlimit.HTTPHeaderTimeout+2*time.Second)); n != idle {
		t.Errorf("%d of %d idle connections closed by the header deadline, want all", n, idle)
	}
	if code := httpStatus(t, "http://"+proc.HTTPAddr()+"/healthz"); code != http.StatusOK {
		t.Errorf("GET /healthz after the idle connections: %d", code)
	}
}

// closedBy is how many of conns the server has closed by at: each is read
// (drain) until it ends or at passes.
func closedBy(conns []net.Conn, at time.Time) int {
	var n atomic.Int64
	var wg sync.WaitGroup
	for _, conn := range conns {
		wg.Go(func() {
			conn.SetReadDeadline(at)
			if err := drain(conn); !isTimeout(err) {
				n.Add(1)
			}
		})
	}
	wg.Wait()
	return int(n.Load())
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// drain reads what the server sends (its HTTP/2 settings) until the
// connection ends or the read deadline passes, and returns why it stopped.
func drain(c net.Conn) error {
	buf := make([]byte, 512)
	for {
		if _, err := c.Read(buf); err != nil {
			return err
		}
	}
}

// Over TLS the coordinator takes a worker's join, heartbeat, leave and
// checkpoint report only from that worker's certificate: a holder of the
// join token and of another worker's (or a coordinator's) certificate
// cannot act under a name that is not its own. Refusals are logged and
// counted by reason.
func TestWorkersActOnlyAsThemselves(t *testing.T) {
	dir := t.TempDir()
	if err := pki.Init(dir, "", time.Hour); err != nil {
		t.Fatal(err)
	}
	caCert, _ := pki.CAPaths(dir)
	creds := func(role pki.Role, name string) *pki.Creds {
		cert, key, err := pki.Issue(dir, pki.Identity{Role: role, Name: name}, nil, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		c, err := pki.Load(cert, key, caCert)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	coordCreds := creds(pki.Coordinator, "coordinator")
	c := newCluster(t)
	cfg := processConfig(c, "")
	cfg.TLS = coordCreds.ServerConfig()
	proc := runProcess(t, c, cfg)
	dialAs := func(cr *pki.Creds) *api.ControlClient {
		cc, err := grpc.NewClient(proc.ControlAddr(), grpc.WithTransportCredentials(credentials.NewTLS(cr.ClientConfig(pki.Want(pki.Coordinator, "")))))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		return api.NewControlClient(cc)
	}
	w1, w2 := dialAs(creds(pki.Worker, "w1")), dialAs(creds(pki.Worker, "w2"))
	ctx := c.ctx()
	join := func(cl *api.ControlClient, name string) error {
		_, err := cl.Join(ctx, &api.JoinRequest{Name: name, Token: testToken, JobHash: c.spec.Hash(), DataAddr: "127.0.0.1:7100"})
		return err
	}
	if err := join(w1, "w1"); err != nil {
		t.Fatalf("w1 joining as itself: %v", err)
	}
	// w2's certificate, with the right token, under w1's name.
	wantCode(t, join(w2, "w1"), codes.PermissionDenied, `worker "w2"`)
	_, err := w2.Heartbeat(ctx, &api.HeartbeatRequest{Name: "w1", Token: testToken})
	wantCode(t, err, codes.PermissionDenied, `worker "w2"`)
	_, err = w2.Leave(ctx, &api.LeaveRequest{Name: "w1", Token: testToken})
	wantCode(t, err, codes.PermissionDenied, `worker "w2"`)
	_, err = w2.ReportCheckpoint(ctx, &api.CheckpointReport{Name: "w1", Token: testToken})
	wantCode(t, err, codes.PermissionDenied, `worker "w2"`)
	// A coordinator's certificate is no worker's.
	wantCode(t, join(dialAs(coordCreds), "coordinator"), codes.PermissionDenied, "not worker")
	// w1 is still a member: nothing the impostor sent reached it.
	if _, err := w1.Heartbeat(ctx, &api.HeartbeatRequest{Name: "w1", Token: testToken}); err != nil {
		t.Errorf("w1's heartbeat after the impostor's calls: %v", err)
	}
	if !strings.Contains(c.log.String(), `claiming to be worker "w1": pki: wrong identity`) {
		t.Errorf("the refusals were not logged:\n%s", c.log.String())
	}
	if got := testutil.ToFloat64(proc.Server().metrics.refused.WithLabelValues("identity")); got != 5 {
		t.Errorf("ringtrain_refused_calls_total{reason=\"identity\"} = %v, want 5", got)
	}
}
