package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/ringtrain/ringtrain/api"
	"github.com/ringtrain/ringtrain/checkpoint"
	"github.com/ringtrain/ringtrain/dataset"
	"github.com/ringtrain/ringtrain/job"
	"github.com/ringtrain/ringtrain/runlog"
)

// runCLI runs the command tree in-process and returns its output and error.
func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newRootCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

func TestCLIErrorsAreOneLineAndSayWhatToDo(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("modle: lenet5\n"), 0o644)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"train", "--epoch", "3"}, "--help"},
		{[]string{"train", "--model", "lenet6", "--out", t.TempDir()}, "known: "},
		{[]string{"train", "-f", bad}, `unknown field "modle"`},
		{[]string{"train", "-f", filepath.Join(t.TempDir(), "none.yaml")}, "no such file"},
		{[]string{"train", "--epochs", "0"}, "epochs must be at least 1"},
		{[]string{"train", "--workers", "2", "--codec", "int8", "--out", t.TempDir()}, `unknown gradient codec "int8"`},
		{[]string{"train", "--resume", "--out", t.TempDir()}, "nothing to resume"},
		{[]string{"train", "--dataset", "mnsit", "--out", t.TempDir()}, `unknown data set "mnsit" (known: fashion-mnist, mnist, synthetic, imagefolder:DIR, shards:DIR)`},
		{[]string{"data", "get", "cifar"}, `unknown data set "cifar" (known: fashion-mnist, mnist, synthetic, imagefolder:DIR, shards:DIR)`},
		{[]string{"data", "import", "mnsit", "/tmp"}, `unknown data set "mnsit" (known: fashion-mnist, mnist, synthetic, imagefolder:DIR, shards:DIR)`},
		{[]string{"data", "import", "mnist"}, "a data set name (known: fashion-mnist, mnist, synthetic) and a folder"},
		{[]string{"checkpoint", "list"}, "--dir is required"},
		{[]string{"checkpoint", "verify", "--dir", filepath.Join(t.TempDir(), "typo")}, "no such file"},
		{[]string{"bench", "train", "--steps", "0"}, "at least one step"},
	} {
		_, err := runCLI(t, tc.args...)
		if err == nil {
			t.Errorf("%v: no error", tc.args)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, tc.want) || strings.Contains(msg, "\n") {
			t.Errorf("%v: error %q, want one line containing %q", tc.args, msg, tc.want)
		}
	}
}

func TestModelsListsTheZoo(t *testing.T) {
	out, err := runCLI(t, "models")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"mlp", "lenet1", "lenet5", "lenet5-1998", "convnet1990", "vgg"} {
		if !strings.Contains(out, name) {
			t.Errorf("models output lacks %s:\n%s", name, out)
		}
	}
	if !strings.Contains(out, "61706") {
		t.Errorf("lenet5 should list 61706 parameters:\n%s", out)
	}
}

var (
	buildOnce  sync.Once
	binPath    string
	cliDataDir string
	buildErr   error
)

// binary builds the ringtrain binary once and prepares MNIST for it.
func binary(t *testing.T) (bin, data string) {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ringtrain-cli")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "ringtrain")
		cmd := exec.Command("go", "build", "-o", binPath, ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = err
			t.Logf("%s", out)
			return
		}
		cliDataDir = filepath.Join(dir, "data")
		buildErr = dataset.EnsureMNIST(context.Background(), filepath.Join(cliDataDir, "mnist"), t.Logf)
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath, cliDataDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// TestCtrlCCheckpointsAndResumes interrupts a real training process with
// SIGINT, checks that it leaves a verified checkpoint where it stopped and
// says how to resume, and resumes it from that step to the end.
func TestCtrlCCheckpointsAndResumes(t *testing.T) {
	out := filepath.Join(t.TempDir(), "run")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	text, err := interruptedRun(t, ctx, "epoch 1/2:", 0, "train", "--model", "mlp", "--epochs", "2", "--out", out)
	if err == nil {
		t.Fatalf("interrupted run exited 0:\n%s", text)
	}
	if !strings.Contains(text, "--resume") || !strings.Contains(text, "interrupted") {
		t.Fatalf("no resume hint after Ctrl-C:\n%s", text)
	}
	// It says where it stopped and which checkpoint holds that step.
	m := regexp.MustCompile(`interrupted at step (\d+) .*; checkpoint (ckpt-\d+) is committed`).FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("the interrupted run does not say where it stopped:\n%s", text)
	}
	step, _ := strconv.Atoi(m[1])
	if m[2] != checkpoint.NameForStep(step) {
		t.Fatalf("stopped at step %d but committed %s:\n%s", step, m[2], text)
	}
	if o, err := runCLI(t, "checkpoint", "verify", "--dir", out); err != nil || !strings.Contains(o, ": ok") {
		t.Fatalf("checkpoint after Ctrl-C does not verify: %v\n%s", err, o)
	}
	// Exactly what the hint says: the run directory remembers its job.
	sum, said := resumeRun(t, ctx, out)
	if !sum.Resumed || sum.Steps != 2*938 || sum.TestAccuracy < 0.95 {
		t.Fatalf("resumed run summary %+v", sum)
	}
	checkResumedFrom(t, said, m[2], step)
}

// checkResumedFrom fails t unless the output of a resumed run says it
// resumes from checkpoint name at step.
func checkResumedFrom(t *testing.T, output, name string, step int) {
	t.Helper()
	for _, line := range strings.Split(output, "\n") {
		if strings.HasPrefix(line, "resuming from ") {
			if !strings.HasPrefix(line, "resuming from "+name+" (") || !strings.HasSuffix(line, fmt.Sprintf("; step %d)", step)) {
				t.Errorf("resumed run says %q, want it to resume from %s at step %d", line, name, step)
			}
			return
		}
	}
	t.Errorf("resumed run does not say where it resumes from:\n%s", output)
}

// TestSIGKILLResumesBitIdentical kills a training process with SIGKILL
// once it has committed mid-epoch checkpoints, resumes it, and checks
// that it continues from the newest committed checkpoint and ends with
// exactly the model and optimizer state of an uninterrupted run.
func TestSIGKILLResumesBitIdentical(t *testing.T) {
	if testing.Short() {
		t.Skip("trains an MLP twice over")
	}
	// 30000 samples in batches of 64: 469 steps an epoch, checkpointed
	// every 50 steps.
	const stepsPerEpoch, every = 469, 50
	args := []string{"train", "--model", "mlp", "--epochs", "2", "--train-limit", "30000", "--test-limit", "1000", "--checkpoint-every", strconv.Itoa(every)}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute) // catches hangs only
	defer cancel()
	bin, data := binary(t)
	train := func(out string) *exec.Cmd {
		cmd := exec.CommandContext(ctx, bin, append(slices.Clone(args), "--out", out)...)
		cmd.Env = append(os.Environ(), "RINGTRAIN_DATA="+data)
		return cmd
	}

	whole := filepath.Join(t.TempDir(), "whole")
	if o, err := train(whole).CombinedOutput(); err != nil {
		t.Fatalf("uninterrupted run: %v\n%s", err, o)
	}

	out := filepath.Join(t.TempDir(), "killed")
	store, err := checkpoint.OpenShared(filepath.Join(out, "checkpoints", job.DefaultName))
	if err != nil {
		t.Fatal(err)
	}
	cmd := train(out)
	var text bytes.Buffer
	cmd.Stdout, cmd.Stderr = &text, &text
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	var waitErr error
wait:
	for {
		select {
		case waitErr = <-exited:
			break wait
		case <-tick.C:
			// Killed once two checkpoints are committed, so that one
			// older than the newest is there to resume from by mistake.
			if name, err := store.Latest(); err != nil || name >= checkpoint.NameForStep(2*every) {
				cmd.Process.Kill()
				waitErr = <-exited
				break wait
			}
		}
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("the run was not killed: %v\n%s", waitErr, text.String())
	}
	// The newest committed checkpoint, as `ringtrain checkpoint list`
	// shows it.
	newest, err := store.Latest()
	if err != nil || newest == "" {
		t.Fatalf("no committed checkpoint after SIGKILL: %v", err)
	}
	man, err := store.ReadManifest(newest)
	if err != nil {
		t.Fatal(err)
	}
	step := man.Step
	if newest != checkpoint.NameForStep(step) || step%stepsPerEpoch == 0 || step >= 2*stepsPerEpoch {
		t.Fatalf("newest committed checkpoint after SIGKILL: %s at step %d, not mid-epoch", newest, step)
	}
	t.Logf("killed with %s committed", newest)

	sum, said := resumeRun(t, ctx, out)
	checkResumedFrom(t, said, newest, step)
	if !sum.Resumed || sum.Steps != 2*stepsPerEpoch {
		t.Fatalf("resumed run summary %+v", sum)
	}
	sameFinalState(t, whole, out)
}

// sameFinalState fails t unless the newest checkpoints of two run
// directories hold the same model and optimizer state: the same step, the
// same tensors bit for bit, and the same metadata in each file.
func sameFinalState(t *testing.T, wantOut, gotOut string) {
	t.Helper()
	load := func(out string) *checkpoint.Checkpoint {
		store, err := checkpoint.OpenShared(filepath.Join(out, "checkpoints", job.DefaultName))
		if err != nil {
			t.Fatal(err)
		}
		ck, err := store.LoadLatest(t.Logf)
		if err != nil || ck == nil {
			t.Fatalf("%s: no checkpoint to load: %v", out, err)
		}
		return ck
	}
	want, got := load(wantOut), load(gotOut)
	wantFiles, gotFiles := slices.Sorted(maps.Keys(want.Files)), slices.Sorted(maps.Keys(got.Files))
	if !slices.Equal(wantFiles, gotFiles) {
		t.Fatalf("final checkpoints hold %v and %v", wantFiles, gotFiles)
	}
	for _, f := range []string{checkpoint.ModelFile, checkpoint.OptimizerFile} {
		if want.Files[f] == nil || want.Files[f].Len() == 0 {
			t.Fatalf("final checkpoint has no tensors in %s", f)
		}
	}
	for _, f := range wantFiles {
		if w, g := want.Files[f].Metadata, got.Files[f].Metadata; !maps.Equal(w, g) {
			t.Fatalf("%s: metadata %v, uninterrupted run %v", f, g, w)
		}
	}
	tensorsEqual(t, want, got)
}

// interruptedRun runs `ringtrain args…` and sends it SIGINT delay after
// the first output line that starts with prefix. It returns the output
// (stdout and stderr together) and how the process exited.
func interruptedRun(t *testing.T, ctx context.Context, prefix string, delay time.Duration, args ...string) (string, error) {
	t.Helper()
	return runUntil(t, ctx, prefix, func(cmd *exec.Cmd) {
		time.AfterFunc(delay, func() { cmd.Process.Signal(syscall.SIGINT) })
	}, args...)
}

// runUntil runs the binary with args, calls act once when a line of its
// output begins with prefix, and returns the whole output and the exit.
func runUntil(t *testing.T, ctx context.Context, prefix string, act func(*exec.Cmd), args ...string) (string, error) {
	t.Helper()
	bin, data := binary(t)
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "RINGTRAIN_DATA="+data)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var lines []string
	sc := bufio.NewScanner(stdout)
	acted := false
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if !acted && strings.HasPrefix(sc.Text(), prefix) {
			act(cmd)
			acted = true
		}
	}
	return strings.Join(lines, "\n"), cmd.Wait()
}

// resumeRun runs what the resume hint says, `ringtrain train --out out
// --resume`, and returns the run's summary and what the command printed.
func resumeRun(t *testing.T, ctx context.Context, out string) (runlog.Summary, string) {
	t.Helper()
	bin, data := binary(t)
	cmd := exec.CommandContext(ctx, bin, "train", "--out", out, "--resume")
	cmd.Env = append(os.Environ(), "RINGTRAIN_DATA="+data)
	o, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("resume failed: %v\n%s", err, o)
	}
	sum, err := runlog.ReadSummary(out)
	if err != nil {
		t.Fatal(err)
	}
	return sum, string(o)
}

// TestMainJob runs the README's main job as a user does and checks its
// promise: LeNet-5 at 99% test accuracy after 3 epochs, with a complete run
// directory.
func TestMainJob(t *testing.T) {
	if testing.Short() {
		t.Skip("trains LeNet-5 for 3 epochs")
	}
	bin, data := binary(t)
	out := filepath.Join(t.TempDir(), "lenet5")
	cmd := exec.Command(bin, "train", "--model", "lenet5", "--dataset", "mnist", "--epochs", "3", "--out", out)
	cmd.Env = append(os.Environ(), "RINGTRAIN_DATA="+data)
	o, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, o)
	}
	b, err := os.ReadFile(filepath.Join(out, runlog.SummaryFile))
	if err != nil {
		t.Fatal(err)
	}
	var sum map[string]any
	if err := json.Unmarshal(b, &sum); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"model", "dataset", "epochs", "batch_size", "seed", "test_accuracy", "test_loss", "images_per_second", "wall_seconds", "peak_rss_bytes"} {
		if _, ok := sum[k]; !ok {
			t.Errorf("summary.json lacks %s", k)
		}
	}
	if acc := sum["test_accuracy"].(float64); acc < 0.99 {
		t.Errorf("LeNet-5 test accuracy after 3 epochs: %.4f, want ≥ 0.99\n%s", acc, o)
	}
	for _, f := range []string{runlog.MetricsFile, runlog.PlotFile, "checkpoints/ringtrain/latest"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Error(err)
		}
	}
	t.Logf("summary: %s", b)
}

// TestBenchAllreduce runs the all-reduce benchmark as users do, across
// rank processes, with frames through shared memory and on gRPC, and
// checks the reported sums are right.
func TestBenchAllreduce(t *testing.T) {
	bin, _ := binary(t)
	for _, shm := range []string{"--shm=true", "--shm=false"} {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, bin, "bench", "allreduce", "--ranks", "3", "--size", "1MiB", "--iters", "2", "--warmup", "1", "--json", shm).Output()
		if err != nil {
			t.Fatalf("%s: %v\n%s", shm, err, out)
		}
		var res allreduceResult
		if err := json.Unmarshal(bytes.TrimSpace(out), &res); err != nil {
			t.Fatalf("%s: not one JSON line: %v\n%s", shm, err, out)
		}
		if res.Ranks != 3 || res.Bytes != 1<<20 || len(res.TimesS) != 2 || res.BusBWGBps <= 0 || res.RelL2Error > 1e-6 {
			t.Fatalf("%s: %+v", shm, res)
		}
	}
}

// TestBenchRecovery runs the recovery benchmark as users do, once per
// kill: it reports one time per kill, in order (the ring before 5 more
// steps), and a standby that continued from the workers' state.
func TestBenchRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("runs clusters of processes")
	}
	for _, args := range [][]string{{"--workers", "1"}, {"--repeat", "0"}} {
		if _, err := runCLI(t, append([]string{"bench", "recovery"}, args...)...); err == nil {
			t.Errorf("bench recovery %v: no error", args)
		}
	}
	bin, data := binary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute) // catches hangs only
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "bench", "recovery", "--workers", "2", "--repeat", "1", "--json",
		"--data-dir", filepath.Join(data, "mnist")).Output()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var res recoveryResult
	if err := json.Unmarshal(bytes.TrimSpace(out), &res); err != nil {
		t.Fatalf("not one JSON line: %v\n%s", err, out)
	}
	if res.Workers != 2 || res.Repeats != 1 || len(res.WorkerRing) != 1 || len(res.LeaderRing) != 1 ||
		res.WorkerRing[0] <= 0 || res.WorkerTrainOn[0] < res.WorkerRing[0] || res.LeaderRing[0] <= 0 || res.LeaderTrainOn[0] < res.LeaderRing[0] ||
		res.WorkerRingMed != res.WorkerRing[0] || res.LeaderRingMed != res.LeaderRing[0] || !slices.Equal(res.LeaderResumed, []bool{true}) {
		t.Fatalf("%+v", res)
	}
	t.Logf("%s", out)
}

// The status names the gradients' codec when the job has one.
func TestStatusShowsTheCodec(t *testing.T) {
	for _, tc := range []struct{ codec, want string }{
		{"", "job lenet5-mnist (lenet5 on mnist, hash abc)"},
		{"fp32", "job lenet5-mnist (lenet5 on mnist, hash abc)"},
		{"bf16", "job lenet5-mnist (lenet5 on mnist, gradients as bf16, hash abc)"},
	} {
		var out bytes.Buffer
		printStatus(&out, &api.StatusReply{Job: "lenet5-mnist", Model: "lenet5", Dataset: "mnist", Codec: tc.codec, JobHash: "abc"})
		if first, _, _ := strings.Cut(out.String(), "\n"); first != tc.want {
			t.Errorf("codec %q: status begins %q, want %q", tc.codec, first, tc.want)
		}
	}
}

// Status counts epochs from 1: the epoch in progress while the job runs,
// the last one after it is done, never one past the job's epochs.
func TestStatusCountsEpochsFromOne(t *testing.T) {
	for _, tc := range []struct {
		st   api.StatusReply
		want []string
	}{
		{api.StatusReply{State: "running", Epochs: 3, Epoch: 0, Step: 12},
			[]string{"; epoch 1 of 3, step 12,"}},
		{api.StatusReply{State: "running", Epochs: 3, Epoch: 2, Step: 2000, LastEval: &api.Eval{Epoch: 1, Accuracy: 0.98}},
			[]string{"; epoch 3 of 3, step 2000,", "last evaluation after epoch 2: test accuracy 98.00%"}},
		{api.StatusReply{State: "done", Epochs: 1, Epoch: 1, Step: 938, LastEval: &api.Eval{Epoch: 0, Accuracy: 0.97}},
			[]string{"; after epoch 1 of 1, step 938,", "last evaluation after epoch 1: test accuracy 97.00%"}},
	} {
		var out bytes.Buffer
		printStatus(&out, &tc.st)
		for _, w := range tc.want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("status %+v lacks %q:\n%s", tc.st, w, out.String())
			}
		}
	}
}

// A coordinator given a job the workers cannot run says which key is wrong
// at once, before it campaigns, opens the store or serves.
func TestCoordinatorChecksTheJobAtStart(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("model: lenet5\ndataset: mnist\ncodec: bf17\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv(tokenEnv, strongToken)
	store := filepath.Join(dir, "store")
	start := time.Now()
	_, err := runCLI(t, "coordinator", "-f", bad, "--etcd-endpoints", "http://127.0.0.1:1", "--store", store,
		"--name", "c0", "--listen", "127.0.0.1:0", "--gossip", "127.0.0.1:0", "--http", "", "--advertise", "127.0.0.1")
	if err == nil || !strings.Contains(err.Error(), "codec") || !strings.Contains(err.Error(), "bf17") {
		t.Fatalf("coordinator with codec bf17: %v, want an error naming the codec", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the coordinator took %v to refuse the job", took)
	}
	if _, err := os.Stat(store); err == nil {
		t.Error("the refused coordinator created its store")
	}
}

// statusServer answers Status with a fixed reply.
type statusServer struct {
	api.ControlServer // nil: only Status is called
	reply             *api.StatusReply
}

func (s statusServer) Status(context.Context, *api.StatusRequest) (*api.StatusReply, error) {
	return s.reply, nil
}

// serveStatus serves a Status that answers reply on a loopback port.
func serveStatus(t *testing.T, reply *api.StatusReply) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	api.RegisterControlServer(g, statusServer{reply: reply})
	go g.Serve(ln)
	t.Cleanup(g.Stop)
	return ln.Addr().String()
}

// Asked a standby, status shows the leader's view, following the address
// the standby names; when the leader does not answer, it shows who leads
// and nothing it does not know.
func TestStatusFollowsTheLeader(t *testing.T) {
	leader := serveStatus(t, &api.StatusReply{Job: "j", Coordinator: "coord-a", State: "running", Reason: "running: generation 3, 2 workers",
		Generation: 3, Ring: []string{"worker-0", "worker-1"}, Epochs: 2, Step: 700,
		Workers: []api.WorkerStatus{{Name: "worker-0"}, {Name: "worker-1", Rank: 1}}})
	standbyOf := func(addr string) string {
		return serveStatus(t, &api.StatusReply{Job: "j", Coordinator: "coord-a", State: "standby",
			Reason: "standby coordinator coord-b; the leader is coord-a", LeaderAddr: addr, Epochs: 2})
	}
	cred := dialOption(nil)
	st, err := fetchStatus(context.Background(), []string{standbyOf(leader)}, cred, 2*time.Second)
	if err != nil || st.State != "running" || st.Generation != 3 {
		t.Fatalf("status asked of a standby: %+v, %v; want the leader's", st, err)
	}

	st, err = fetchStatus(context.Background(), []string{standbyOf("127.0.0.1:1")}, cred, time.Second)
	if err != nil || st.State != "standby" {
		t.Fatalf("status with the leader unreachable: %+v, %v; want the standby's answer", st, err)
	}
	var out bytes.Buffer
	printStatus(&out, st)
	text := out.String()
	if !strings.Contains(text, "the leader is coord-a") || !strings.Contains(text, "the leader at 127.0.0.1:1 did not answer") ||
		strings.Contains(text, "generation") || strings.Contains(text, "ring") {
		t.Errorf("status of a standby whose leader does not answer:\n%s", text)
	}

	// While the job waits or settles there is no ring yet, but workers.
	out.Reset()
	printStatus(&out, &api.StatusReply{State: "waiting", Reason: "settling: 2 workers", MinWorkers: 2, MaxWorkers: 2, Epochs: 1,
		Workers: []api.WorkerStatus{{Name: "worker-0", Rank: -1}, {Name: "worker-1", Rank: -1}}})
	if !strings.Contains(out.String(), "no ring yet, 2 workers joined (min 2, max 2)") {
		t.Errorf("status of a settling job:\n%s", out.String())
	}
}
