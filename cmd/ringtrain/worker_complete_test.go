package main

import (
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/api"
)

// TestClusterWorkerWaitsWhenComplete: a worker run with
// --on-complete=wait, whether it trained the job to its end or joined it
// once complete, stays up, serving /healthz, and says once where the
// final checkpoint and model are; SIGTERM or SIGINT then ends it with
// status 0. A worker run with the default --on-complete=exit that joins
// the complete job exits 0 at once, and the coordinator stays up serving
// the status.
func TestClusterWorkerWaitsWhenComplete(t *testing.T) {
	if testing.Short() {
		t.Skip("runs clusters of processes")
	}
	spec := clusterJob("oncomplete", 1)
	spec.Epochs, spec.TrainLimit, spec.TestLimit, spec.CheckpointEvery = 1, 640, 500, 20
	c := newTestCluster(t, spec)
	c.startJob(0)
	c.startWorker("worker-0", "--on-complete=wait")
	st, _ := c.waitFor("job completion", 2*time.Minute, func(st *api.StatusReply) bool { return st.State == "done" })
	if st.LastCheckpoint == "" {
		t.Fatalf("the complete job has no checkpoint: %+v", st)
	}
	c.startWorker("worker-1", "--on-complete=wait")
	byHand := c.startWorker("worker-2") // --on-complete=exit
	select {
	case <-byHand.done:
		if byHand.err != nil {
			t.Errorf("worker-2 (--on-complete=exit) joined the complete job and exited with %v\n%s", byHand.err, byHand.logText())
		}
	case <-time.After(time.Minute):
		t.Fatalf("worker-2 (--on-complete=exit) still runs a minute after joining the complete job\n%s", c.logs())
	}

	want := fmt.Sprintf("the job is complete: its final checkpoint is %s in %s; the coordinator writes the final model to its run directory (--out; by default %s); waiting for SIGTERM or SIGINT (--on-complete=wait)",
		st.LastCheckpoint, c.jobStore(), filepath.Join(c.dir, "run", "model.safetensors"))
	for _, name := range []string{"worker-0", "worker-1"} {
		w := c.workers[name]
		deadline := time.Now().Add(30 * time.Second)
		for !strings.Contains(w.logText(), want) && time.Now().Before(deadline) && !w.exited() {
			time.Sleep(50 * time.Millisecond)
		}
		time.Sleep(time.Second) // time to exit, or to log again, were it to
		if w.exited() {
			t.Fatalf("%s (--on-complete=wait) exited (%v) once the job was complete\n%s", name, w.err, w.logText())
		}
		if n := strings.Count(w.logText(), "waiting for SIGTERM"); n != 1 {
			t.Fatalf("%s says %d times that the job is complete, want once, as\n%s\n--- its log\n%s", name, n, want, w.logText())
		}
		rep, err := http.Get("http://" + c.httpAt[name] + "/healthz")
		if err != nil {
			t.Fatalf("%s /healthz: %v", name, err)
		}
		rep.Body.Close()
		if rep.StatusCode != http.StatusOK {
			t.Errorf("%s /healthz: %s", name, rep.Status)
		}
	}
	if c.coords[0].exited() {
		t.Fatalf("the coordinator exited once the job was complete\n%s", c.coords[0].logText())
	}
	if st := c.status(); st == nil || st.State != "done" {
		t.Errorf("the coordinator's status once the job is complete: %+v", st)
	}

	for name, sig := range map[string]os.Signal{"worker-0": syscall.SIGTERM, "worker-1": syscall.SIGINT} {
		w := c.workers[name]
		w.cmd.Process.Signal(sig)
		select {
		case <-w.done:
			if w.err != nil {
				t.Errorf("%s exited with %v on %v, want status 0", name, w.err, sig)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s still runs 10s after %v", name, sig)
		}
	}
}

// A refused permission on the shared volume says which user was refused,
// the path, and where the README says how to prepare the volume; other
// errors pass unchanged.
func TestVolumeHint(t *testing.T) {
	denied := fmt.Errorf("coordinator: checkpoint: %w", &fs.PathError{Op: "mkdir", Path: "/shared/checkpoints", Err: syscall.EACCES})
	got := volumeHint(denied)
	if !errors.Is(got, fs.ErrPermission) {
		t.Errorf("volumeHint lost the permission error: %v", got)
	}
	for _, s := range []string{
		"mkdir /shared/checkpoints: permission denied",
		fmt.Sprintf("runs as UID %d, GID %d", os.Getuid(), os.Getgid()),
		"may not write /shared/checkpoints",
		`deploy/README.md, "Prepare the shared volume"`,
	} {
		if !strings.Contains(got.Error(), s) {
			t.Errorf("volumeHint: %q does not say %q", got, s)
		}
	}
	other := errors.New("worker: the coordinator refused worker-0")
	if got := volumeHint(other); got != other {
		t.Errorf("volumeHint(%v) = %v, want it unchanged", other, got)
	}
	if volumeHint(nil) != nil {
		t.Error("volumeHint(nil) is not nil")
	}
}

// completeMessage names the final checkpoint when the status tells it,
// else the store, and the final model's default place in either case.
func TestCompleteMessage(t *testing.T) {
	store := "/shared/checkpoints/mnist-lenet5"
	model := "(--out; by default /shared/run/model.safetensors)"
	for _, c := range []struct {
		st   *api.StatusReply
		want []string
	}{
		{&api.StatusReply{LastCheckpoint: "ckpt-000000000080"}, []string{"its final checkpoint is ckpt-000000000080 in " + store, model}},
		{nil, []string{"its checkpoints are in " + store, model}},
	} {
		got := completeMessage(store, c.st)
		for _, w := range c.want {
			if !strings.Contains(got, w) {
				t.Errorf("completeMessage(%q, %+v) = %q, want it to say %q", store, c.st, got, w)
			}
		}
	}
	if got := completeMessage("", nil); got != "the job is complete" {
		t.Errorf("completeMessage without a store = %q", got)
	}
}
