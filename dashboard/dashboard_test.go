package dashboard

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/api"
	"github.com/ringtrain/ringtrain/runlog"
)

// fakeSource is a Source whose answers a test sets.
type fakeSource struct {
	mu      sync.Mutex
	status  api.StatusReply
	records []runlog.Record
	gens    []api.GenerationEvent
	ckpts   Checkpoints
	job     string
}

func (f *fakeSource) Status(context.Context) *api.StatusReply {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.status
	return &st
}

func (f *fakeSource) Records() []runlog.Record {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.records
}

func (f *fakeSource) Generations() []api.GenerationEvent { return f.gens }
func (f *fakeSource) Checkpoints() Checkpoints           { return f.ckpts }
func (f *fakeSource) JobFile() string                    { return f.job }

var t0 = time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)

func trainRecord(step int) runlog.Record {
	return runlog.Record{Kind: "train", Time: t0.Add(time.Duration(step) * time.Second), Step: step,
		Progress: float64(step) / 100, LR: 0.02, Loss: 1 / float64(step+1), Accuracy: 0.9, ImagesPerSecond: 1000}
}

func newServer(t *testing.T, src Source) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(Handler(src))
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, body := get(t, url)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET %s: %s, %s\n%s", url, resp.Status, resp.Header.Get("Content-Type"), body)
	}
	if resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("GET %s: Cache-Control %q, want no-store", url, resp.Header.Get("Cache-Control"))
	}
	if err := json.Unmarshal([]byte(body), v); err != nil {
		t.Fatalf("GET %s: %v\n%s", url, err, body)
	}
}

// TestPagesFromEmbed: the page, its stylesheet and its script come from
// the binary; the page loads nothing from elsewhere and no inline script,
// and the answers forbid it (Content-Security-Policy).
func TestPagesFromEmbed(t *testing.T) {
	srv := newServer(t, &fakeSource{})
	resp, page := get(t, srv.URL+"/")
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /: %s, %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	csp := resp.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "default-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("Content-Security-Policy %q", csp)
	}
	if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Error("no X-Content-Type-Options: nosniff")
	}
	for _, want := range []string{`name="viewport"`, `id="chart-loss"`, `id="chart-accuracy"`, `id="chart-ips"`, `id="chart-lr"`,
		`id="workers"`, `id="generations"`, `id="checkpoints"`, `id="jobfile"`, `src="static/app.js"`, `href="static/style.css"`} {
		if !strings.Contains(page, want) {
			t.Errorf("the page has no %s", want)
		}
	}
	// Every reference is relative (the page works under a path prefix)
	// and local: no scheme, no protocol-relative URL.
	for _, m := range regexp.MustCompile(`(?:src|href)="([^"]*)"`).FindAllStringSubmatch(page, -1) {
		if u := m[1]; strings.Contains(u, "//") || strings.HasPrefix(u, "/") {
			t.Errorf("the page refers to %q, not a relative local path", u)
		}
	}
	if regexp.MustCompile(`<script>|<script [^>]*>[^<]`).MatchString(page) {
		t.Error("the page has an inline script")
	}
	for path, ctype := range map[string]string{"/static/app.js": "text/javascript", "/static/style.css": "text/css"} {
		resp, body := get(t, srv.URL+path)
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), ctype) || len(body) < 500 {
			t.Errorf("GET %s: %s, %s, %d bytes", path, resp.Status, resp.Header.Get("Content-Type"), len(body))
		}
		if strings.Contains(body, "http://") || strings.Contains(body, "https://") {
			if !(path == "/static/app.js" && strings.Count(body, "http://www.w3.org/2000/svg") == strings.Count(body, "http://")) {
				t.Errorf("%s refers to another site", path)
			}
		}
	}
	if resp, _ := get(t, srv.URL+"/nothing-here"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /nothing-here: %s, want 404", resp.Status)
	}
}

// TestReadOnly: the dashboard answers GET (and HEAD) only.
func TestReadOnly(t *testing.T) {
	srv := newServer(t, &fakeSource{})
	for _, path := range []string{"/", "/api/status", "/api/records", "/api/generations", "/api/checkpoints", "/api/job"} {
		for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
			req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader("{}"))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusMethodNotAllowed {
				t.Errorf("%s %s: %s, want 405", method, path, resp.Status)
			}
		}
		req, _ := http.NewRequest(http.MethodHead, srv.URL+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("HEAD %s: %s", path, resp.Status)
		}
	}
}

// TestJSONEndpoints: the shapes of /api/status, /api/generations,
// /api/checkpoints and /api/job, with empty lists as [] (not null).
func TestJSONEndpoints(t *testing.T) {
	src := &fakeSource{
		status: api.StatusReply{Job: "mnist", Model: "lenet5", Dataset: "mnist", State: "running", Generation: 2,
			Ring: []string{"worker-0", "worker-1"}, Step: 120,
			Workers: []api.WorkerStatus{{Name: "worker-0", Rank: 0, Generation: 2, Step: 120, Stats: &api.WorkerStats{Loss: 0.3}}}},
		gens: []api.GenerationEvent{
			{Number: 1, Time: t0, Ring: []string{"worker-0", "worker-1", "worker-2"},
				Causes: []api.GenerationCause{{Kind: "start"}, {Kind: "join", Worker: "worker-0"}}},
			{Number: 1, Time: t0.Add(time.Minute), Paused: true, Ring: []string{"worker-0", "worker-1"},
				Causes: []api.GenerationCause{{Kind: "dead", Worker: "worker-2"}}, Reason: "waiting: 2 of min 3 workers"},
		},
		ckpts: Checkpoints{Store: "/shared/checkpoints", Checkpoints: []Checkpoint{{Name: "ckpt-000000000100", Step: 100, Files: 3, Bytes: 1 << 20}}},
		job:   "model: lenet5\n",
	}
	srv := newServer(t, src)

	var st map[string]any
	getJSON(t, srv.URL+"/api/status", &st)
	if st["job"] != "mnist" || st["state"] != "running" || st["generation"] != 2.0 {
		t.Errorf("/api/status: %v", st)
	}
	w0 := st["workers"].([]any)[0].(map[string]any)
	if w0["generation"] != 2.0 || w0["stats"].(map[string]any)["loss"] != 0.3 {
		t.Errorf("/api/status worker: %v", w0)
	}

	var gens map[string][]map[string]any
	getJSON(t, srv.URL+"/api/generations", &gens)
	g := gens["generations"]
	if len(g) != 2 || g[0]["number"] != 1.0 || g[1]["paused"] != true || g[1]["reason"] != "waiting: 2 of min 3 workers" {
		t.Fatalf("/api/generations: %v", gens)
	}
	if c := g[1]["causes"].([]any)[0].(map[string]any); c["kind"] != "dead" || c["worker"] != "worker-2" {
		t.Errorf("/api/generations causes: %v", g[1]["causes"])
	}

	var ck map[string]any
	getJSON(t, srv.URL+"/api/checkpoints", &ck)
	list := ck["checkpoints"].([]any)
	if ck["store"] != "/shared/checkpoints" || len(list) != 1 || list[0].(map[string]any)["bytes"] != float64(1<<20) {
		t.Errorf("/api/checkpoints: %v", ck)
	}

	resp, body := get(t, srv.URL+"/api/job")
	if resp.StatusCode != http.StatusOK || body != src.job || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Errorf("/api/job: %s %q", resp.Status, body)
	}

	// Nothing yet: lists, not nulls, for the page.
	empty := newServer(t, &fakeSource{})
	for path, key := range map[string]string{"/api/generations": "generations", "/api/checkpoints": "checkpoints", "/api/records": "records"} {
		_, body := get(t, empty.URL+path)
		if !strings.Contains(body, `"`+key+`":[]`) {
			t.Errorf("GET %s with nothing: %s", path, body)
		}
	}
}

// TestRecordsPolling: a caller that passes the count and mark of the
// records it has gets only the new ones; after the run went back to an
// earlier step (a restore) it is told to reset and gets them all; a
// malformed count is refused.
func TestRecordsPolling(t *testing.T) {
	src := &fakeSource{records: []runlog.Record{trainRecord(50), trainRecord(100)}}
	srv := newServer(t, src)
	poll := func(after int, mark string) RecordsReply {
		t.Helper()
		var rep RecordsReply
		getJSON(t, srv.URL+"/api/records?after="+strconv.Itoa(after)+"&mark="+mark, &rep)
		return rep
	}
	rep := poll(0, "")
	if rep.Reset || len(rep.Records) != 2 || rep.Next != 2 || rep.Mark == "" {
		t.Fatalf("first poll: %+v", rep)
	}
	first := rep
	if rep = poll(rep.Next, rep.Mark); rep.Reset || len(rep.Records) != 0 || rep.Next != 2 || rep.Mark != first.Mark {
		t.Fatalf("poll with nothing new: %+v", rep)
	}
	src.mu.Lock()
	src.records = append(src.records, trainRecord(150), runlog.Record{Kind: "eval", Time: t0.Add(time.Hour), Step: 150, Progress: 1.5, Accuracy: 0.97})
	src.mu.Unlock()
	rep = poll(rep.Next, rep.Mark)
	if rep.Reset || len(rep.Records) != 2 || rep.Records[0].Step != 150 || rep.Records[1].Kind != "eval" || rep.Next != 4 {
		t.Fatalf("poll after two more records: %+v", rep)
	}
	// A restore to step 50 drops the records past it; steps trained again
	// are recorded anew.
	src.mu.Lock()
	src.records = []runlog.Record{trainRecord(50), trainRecord(100)}
	src.records[1].Time = t0.Add(2 * time.Hour)
	src.mu.Unlock()
	if rep = poll(rep.Next, rep.Mark); !rep.Reset || len(rep.Records) != 2 || rep.Next != 2 {
		t.Fatalf("poll after the log was cut (4 records held, 2 in the log): %+v", rep)
	}
	// Same count, different last record: the caller's are stale.
	if rep = poll(2, first.Mark); !rep.Reset || len(rep.Records) != 2 {
		t.Fatalf("poll with a stale mark: %+v", rep)
	}
	if rep = poll(1, ""); !rep.Reset {
		t.Fatalf("poll of 1 record without a mark: %+v", rep)
	}
	for _, q := range []string{"after=-1", "after=x", "after=1.5"} {
		if resp, _ := get(t, srv.URL+"/api/records?"+q); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("GET /api/records?%s: %s, want 400", q, resp.Status)
		}
	}
}

// TestRecordsFile reads a metrics log as a run writes it: a torn last line
// is not a record yet, and the file is read again only when it changes.
func TestRecordsFile(t *testing.T) {
	dir := t.TempDir()
	f := NewRecordsFile(dir)
	if got := f.Records(); len(got) != 0 {
		t.Fatalf("no file: %d records", len(got))
	}
	line := func(r runlog.Record) string { b, _ := json.Marshal(r); return string(b) + "\n" }
	path := filepath.Join(dir, runlog.MetricsFile)
	if err := os.WriteFile(path, []byte(line(trainRecord(50))+`{"kind":"tr`), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := f.Records(); len(got) != 1 || got[0].Step != 50 {
		t.Fatalf("one record and a torn line: %+v", got)
	}
	if err := os.WriteFile(path, []byte(line(trainRecord(50))+line(trainRecord(100))), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := f.Records(); len(got) != 2 || got[1].Step != 100 {
		t.Fatalf("two records: %+v", got)
	}
}

func TestBindAddr(t *testing.T) {
	for in, want := range map[string]string{
		"8080":           "127.0.0.1:8080",
		":8080":          "127.0.0.1:8080",
		":0":             "127.0.0.1:0",
		"127.0.0.1:9000": "127.0.0.1:9000",
		"0.0.0.0:8080":   "0.0.0.0:8080",
		"[::]:8080":      "[::]:8080",
		"[::1]:8080":     "[::1]:8080",
		"localhost:8080": "localhost:8080",
	} {
		if got, err := BindAddr(in); err != nil || got != want {
			t.Errorf("BindAddr(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "host", "1.2.3.4", "99999"} {
		if got, err := BindAddr(bad); err == nil {
			t.Errorf("BindAddr(%q) = %q, want an error", bad, got)
		}
	}
}

// TestServe serves on a loopback port given as ":0" and stops with its
// context.
func TestServe(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	addr, err := Serve(ctx, ":0", Handler(&fakeSource{job: "x"}))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(addr, "127.0.0.1:") {
		t.Errorf("served on %s, want loopback", addr)
	}
	if _, body := get(t, "http://"+addr+"/api/job"); body != "x" {
		t.Errorf("/api/job: %q", body)
	}
	cancel()
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/api/job")
		if err != nil {
			break
		}
		resp.Body.Close()
		if time.Now().After(deadline) {
			t.Fatal("still serving after its context ended")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
