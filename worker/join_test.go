package worker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/ringtrain/ringtrain/api"
	"github.com/ringtrain/ringtrain/etcdtest"
)

// lineLog collects a worker's log lines.
type lineLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *lineLog) logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
}

func (l *lineLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// count is the number of lines that contain s.
func (l *lineLog) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, line := range l.lines {
		if strings.Contains(line, s) {
			n++
		}
	}
	return n
}

// joinOnly runs a worker whose coordinator is addr until Run returns or
// limit passes, and returns Run's error (or NewClusterWorker's), the
// worker's log and how long it ran.
func joinOnly(t *testing.T, addr string, limit time.Duration, tweak func(*ClusterOptions)) (error, *lineLog, time.Duration) {
	t.Helper()
	log := &lineLog{}
	o := ClusterOptions{
		Name: "w0", Coordinators: []string{addr}, Token: "tok",
		DataListen: freeAddr(t), GossipBind: "127.0.0.1:0", Threads: 1,
		Logf: log.logf,
	}
	if tweak != nil {
		tweak(&o)
	}
	start := time.Now()
	w, err := NewClusterWorker(o)
	if err != nil {
		return err, log, time.Since(start)
	}
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	err = w.Run(ctx)
	return err, log, time.Since(start)
}

// A coordinator address that can never work ends the worker at once, with
// an error naming the address and what answers there, instead of retrying
// forever.
func TestJoinRefusesAddressesThatCannotWork(t *testing.T) {
	web := httptest.NewServer(http.NotFoundHandler()) // an HTTP/1 server, e.g. a coordinator's --http
	t.Cleanup(web.Close)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	plain := grpc.NewServer() // gRPC without ringtrain's control service
	go plain.Serve(ln)
	t.Cleanup(plain.Stop)

	etcd := etcdtest.New(t)
	etcdAddr := strings.TrimPrefix(etcd.Endpoints()[0], "http://")

	cases := []struct {
		name, addr string
		want       []string
	}{
		{"http server", web.Listener.Addr().String(), []string{"HTTP/1", "not a ringtrain coordinator"}},
		{"grpc without the control service", ln.Addr().String(), []string{"not a ringtrain coordinator", "ringtrain.v1.Control"}},
		{"etcd client port", etcdAddr, []string{"not a ringtrain coordinator", "etcd"}},
		{"no port", "127.0.0.1:", []string{"no port"}},
		{"no port at all", "coordinator", []string{"HOST:PORT"}},
	}
	// An unknown host only where DNS says so (a machine without a resolver
	// cannot tell).
	const unknown = "no-such-coordinator.invalid"
	var dnsErr *net.DNSError
	if _, err := net.DefaultResolver.LookupHost(context.Background(), unknown); errors.As(err, &dnsErr) && dnsErr.IsNotFound {
		cases = append(cases, struct {
			name, addr string
			want       []string
		}{"unknown host", unknown + ":7070", []string{unknown, "does not exist"}})
	} else {
		t.Logf("skipping the unknown host: DNS says %v", err)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err, log, took := joinOnly(t, tc.addr, 10*time.Second, nil)
			if err == nil || errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("worker with coordinator %s: %v after %v, want a final error; log:\n%s", tc.addr, err, took, log)
			}
			if !strings.Contains(err.Error(), tc.addr) {
				t.Errorf("error %q does not name the address %s", err, tc.addr)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if took > 5*time.Second {
				t.Errorf("the worker took %v to give up on %s", took, tc.addr)
			}
			t.Logf("%v after %v", err, took.Round(time.Millisecond))
		})
	}
}

// A coordinator that refuses connections may yet start: the worker waits,
// saying so every JoinReport, until JoinTimeout passes.
func TestJoinWaitsForAClosedPortAndSaysSo(t *testing.T) {
	addr := freeAddr(t) // nothing listens there
	err, log, took := joinOnly(t, addr, 20*time.Second, func(o *ClusterOptions) {
		o.JoinTimeout = 2 * time.Second
		o.JoinReport = 400 * time.Millisecond
	})
	if err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("worker with nothing at %s: %v after %v, want the join timeout; log:\n%s", addr, err, took, log)
	}
	for _, w := range []string{addr, "2s"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not say %q", err, w)
		}
	}
	if took < 2*time.Second {
		t.Errorf("the worker gave up after %v, before its 2s join timeout", took)
	}
	// Periodic, never more often than the period: the bounds follow the
	// time the wait really took (a loaded machine stretches it).
	still := "still waiting for the coordinator at " + addr + ": "
	if n, most := log.count(still), int(took/(400*time.Millisecond)); n < 1 || n > most {
		t.Errorf("%d lines say %q in %v at a 400ms period, want 1 to %d; log:\n%s", n, still, took, most, log)
	}
	if log.count("connection refused") < 1 || log.count("(for ") < 1 {
		t.Errorf("the periodic lines do not say the last error and for how long; log:\n%s", log)
	}
	t.Logf("gave up after %v: %v\n%s", took.Round(time.Millisecond), err, log)
}

// A worker that joins again (its coordinator forgot it: a new leader) asks
// for the job it runs: a coordinator that now runs another job under the
// same address refuses it, and the worker stops with that error instead
// of training on in a ring of another job.
func TestWorkerJoiningAgainAsksForItsJob(t *testing.T) {
	spec := tinySpec()
	spec.Epochs = 50 // trains until the coordinator changes
	f, addr := newFake(t, spec, 1, api.Generation{})
	steps := make(chan int64, 1)
	err, log, took := joinOnly(t, addr, 60*time.Second, func(o *ClusterOptions) {
		o.Token = f.token
		o.AfterStep = func(step int64, _ []float32) {
			if step == 3 {
				steps <- step
			}
		}
		go func() {
			<-steps
			other := spec
			other.Seed++
			f.mu.Lock()
			f.spec = other // another job under the same address
			delete(f.members, o.Name)
			f.mu.Unlock()
		}()
	})
	if err == nil || errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), spec.Hash()) {
		t.Fatalf("worker whose coordinator now runs another job: %v after %v, want the refusal naming its job hash; log:\n%s", err, took, log)
	}
	t.Logf("%v", err)
}
