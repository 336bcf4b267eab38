// Package dashboard serves ringtrain's live dashboard: one read-only web
// page (HTML, CSS and a small script, embedded in the binary; nothing is
// loaded from elsewhere) that draws the run's loss, accuracy, images/s and
// learning-rate curves, the ring and its workers, the generations of the
// ring with their causes, the committed checkpoints and the job file, and
// refreshes them by polling the JSON endpoints it is served beside:
//
//	GET /                   the page (static/ holds its CSS and script)
//	GET /api/status         the job's status (api.StatusReply)
//	GET /api/records        metrics records: ?after=N&mark=M returns those
//	                        past the N the caller has (see Records)
//	GET /api/generations    the generation history (api.GenerationEvent)
//	GET /api/checkpoints    the committed checkpoints and the store
//	GET /api/job            the job file (YAML)
//
// A coordinator serves it on its HTTP listener, beside /metrics and
// /status; `ringtrain train --ui ADDR` serves it for a single-node run or a
// local cluster. The handler only reads: every other method is refused.
package dashboard

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/ringtrain/ringtrain/api"
	"github.com/ringtrain/ringtrain/runlog"
)

// Source is what a dashboard shows: what a coordinator, or a single-node
// run, can answer. Its methods are called from HTTP handlers, concurrently;
// what they return is not modified by the dashboard.
type Source interface {
	// Status is the job's status now.
	Status(ctx context.Context) *api.StatusReply
	// Records are the run's metrics records so far, in order (the lines
	// of metrics.jsonl). A run that goes back to an earlier step (a
	// restore from a checkpoint) drops the records past it.
	Records() []runlog.Record
	// Generations is the history of the ring's generations, oldest
	// first; none for a single-node run.
	Generations() []api.GenerationEvent
	// Checkpoints are the committed checkpoints and where they are.
	Checkpoints() Checkpoints
	// JobFile is the job file (YAML).
	JobFile() string
}

// Checkpoints are a run's committed checkpoints, oldest first, and the
// store that holds them.
type Checkpoints struct {
	Store       string       `json:"store"`
	Checkpoints []Checkpoint `json:"checkpoints"`
}

// Checkpoint is one committed checkpoint.
type Checkpoint struct {
	Name       string    `json:"name"`
	Step       int       `json:"step"`
	Epoch      int       `json:"epoch"`
	Position   int       `json:"position"` // samples of Epoch consumed
	Generation int       `json:"generation,omitempty"`
	WorldSize  int       `json:"world_size,omitempty"`
	Created    time.Time `json:"created,omitzero"`
	Files      int       `json:"files"`
	// Bytes is the size of its files; 0 when unknown.
	Bytes        int64   `json:"bytes,omitempty"`
	TrainLoss    float64 `json:"train_loss,omitempty"`
	TestAccuracy float64 `json:"test_accuracy,omitempty"`
	TestLoss     float64 `json:"test_loss,omitempty"`
}

//go:embed static
var static embed.FS

// RecordsReply is the answer of /api/records.
type RecordsReply struct {
	// Records are the records from index After on, or all of them when
	// Reset is set.
	Records []runlog.Record `json:"records"`
	// Reset: the caller's records are not a prefix of the run's any more
	// (the run went back to an earlier step, or the caller's mark is not
	// this run's): it must drop them and take Records as the whole log.
	Reset bool `json:"reset,omitempty"`
	// Next is the number of records the caller now has; Mark identifies
	// the last of them. The next call passes after=Next&mark=Mark.
	Next int    `json:"next"`
	Mark string `json:"mark"`
}

// GenerationsReply is the answer of /api/generations.
type GenerationsReply struct {
	Generations []api.GenerationEvent `json:"generations"`
}

// recordMark identifies a record in the log: its step and time. A record
// trained again after a restore gets a new time.
func recordMark(r runlog.Record) string {
	return strconv.Itoa(r.Step) + "@" + strconv.FormatInt(r.Time.UnixNano(), 10)
}

// Handler serves the dashboard of src (see the package comment) at the
// root of its paths; mount it at "/" or under a prefix with
// http.StripPrefix (the page's links are relative).
func Handler(src Source) http.Handler {
	files, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	mux := http.NewServeMux()
	page := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		http.ServeFileFS(w, r, files, "index.html")
	}
	mux.HandleFunc("GET /{$}", page)
	mux.HandleFunc("GET /index.html", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "./", http.StatusMovedPermanently)
	})
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(files)))
	mux.HandleFunc("GET /api/status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, src.Status(r.Context()))
	})
	mux.HandleFunc("GET /api/records", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		after := 0
		if s := q.Get("after"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 0 {
				http.Error(w, "dashboard: after must be a count of records (an integer ≥ 0)", http.StatusBadRequest)
				return
			}
			after = n
		}
		writeJSON(w, Records(src.Records(), after, q.Get("mark")))
	})
	mux.HandleFunc("GET /api/generations", func(w http.ResponseWriter, _ *http.Request) {
		g := src.Generations()
		if g == nil {
			g = []api.GenerationEvent{}
		}
		writeJSON(w, GenerationsReply{Generations: g})
	})
	mux.HandleFunc("GET /api/checkpoints", func(w http.ResponseWriter, _ *http.Request) {
		c := src.Checkpoints()
		if c.Checkpoints == nil {
			c.Checkpoints = []Checkpoint{}
		}
		writeJSON(w, c)
	})
	mux.HandleFunc("GET /api/job", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		fmt.Fprint(w, src.JobFile())
	})
	return secure(mux)
}

// Records answers a caller that holds the first after records of the
// log, the last of which has mark (see RecordsReply).
func Records(log []runlog.Record, after int, mark string) RecordsReply {
	rep := RecordsReply{Records: []runlog.Record{}}
	valid := after == 0 && mark == "" ||
		after > 0 && after <= len(log) && recordMark(log[after-1]) == mark
	if !valid {
		rep.Reset, after = true, 0
	}
	rep.Records = append(rep.Records, log[after:]...)
	rep.Next = len(log)
	if len(log) > 0 {
		rep.Mark = recordMark(log[len(log)-1])
	}
	return rep
}

// secure sets the headers of every answer: the page loads nothing from
// elsewhere and runs no inline script, and no other site may frame it.
func secure(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		h.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(append(b, '\n'))
}

// BindAddr is the address a dashboard given as addr listens on: a port
// alone ("8080" or ":8080") is on the loopback interface (127.0.0.1), so
// that only this machine sees the run; any other host is bound only when
// named ("0.0.0.0:8080", "[::]:8080", "192.168.1.5:8080").
func BindAddr(addr string) (string, error) {
	if addr == "" {
		return "", errors.New("dashboard: empty address")
	}
	if _, err := strconv.ParseUint(addr, 10, 16); err == nil {
		return net.JoinHostPort("127.0.0.1", addr), nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("dashboard: address %q: want HOST:PORT or a port: %w", addr, err)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port), nil
}

// Serve serves h on addr (after BindAddr) until ctx ends, and returns the
// bound address at once (e.g. for a port 0).
func Serve(ctx context.Context, addr string, h http.Handler) (string, error) {
	bind, err := BindAddr(addr)
	if err != nil {
		return "", err
	}
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return "", fmt.Errorf("dashboard: %w", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	return ln.Addr().String(), nil
}

// RecordsFile reads the records of a run directory's metrics.jsonl as a
// run writes it, reading the file again only when it changed. It is safe
// for concurrent use.
type RecordsFile struct {
	path string

	mu      sync.Mutex
	size    int64
	mod     time.Time
	records []runlog.Record
}

// NewRecordsFile reads the metrics log of run directory dir.
func NewRecordsFile(dir string) *RecordsFile {
	return &RecordsFile{path: filepath.Join(dir, runlog.MetricsFile)}
}

// Records returns the file's records (none while it does not exist); a
// line being written is not one yet.
func (f *RecordsFile) Records() []runlog.Record {
	f.mu.Lock()
	defer f.mu.Unlock()
	fi, err := os.Stat(f.path)
	if err != nil {
		return f.records
	}
	if fi.Size() == f.size && fi.ModTime().Equal(f.mod) {
		return f.records
	}
	recs, err := runlog.ReadRecords(filepath.Dir(f.path))
	if err != nil {
		return f.records
	}
	f.size, f.mod, f.records = fi.Size(), fi.ModTime(), recs
	return recs
}
