package faults

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ringtrain/ringtrain/api"
	"github.com/ringtrain/ringtrain/checkpoint"
	"github.com/ringtrain/ringtrain/job"
	"github.com/ringtrain/ringtrain/worker"
)

// StatusFunc asks the coordinators at coords, with the join token, for the
// leader's status.
type StatusFunc func(ctx context.Context, coords []string, token string) (*api.StatusReply, error)

// Config is what a campaign runs with.
type Config struct {
	// Exe is the ringtrain binary; Etcd the etcd server binary; DataDir
	// the MNIST directory; Dir where each schedule's run directory (logs,
	// etcd data, store) is made.
	Exe, Etcd, DataDir, Dir string
	Shape                   Shape
	Kinds                   []Kind
	// Job is the job every schedule runs (see CampaignJob).
	Job job.Spec
	// Bound is how long a schedule may take from the start of training
	// to the end of the job before it is a hang.
	Bound  time.Duration
	Status StatusFunc
	// Root: the harness may mount a tmpfs (the disk-full fault).
	Root bool
	Logf func(format string, args ...any)
}

func (cfg Config) logf(format string, args ...any) {
	if cfg.Logf != nil {
		cfg.Logf(format, args...)
	}
}

// CampaignJob is the job of a campaign's schedules: LeNet-1 on a part of
// MNIST over workers ranks that all must be present (so the parameters
// after every step are those of an uninterrupted run), checkpointing every
// 10 steps and keeping 3.
func CampaignJob(workers int) job.Spec {
	s := job.Default()
	s.Name, s.Model, s.Epochs, s.BatchSize, s.Seed = "chaos", "lenet1", 2, 16*workers, 7
	s.Workers, s.MinWorkers, s.MaxWorkers = workers, workers, workers
	s.TrainLimit, s.TestLimit = 32000, 500
	s.CheckpointEvery, s.KeepCheckpoints = 10, 3
	return s
}

// Fired is an event as the harness carried it out.
type Fired struct {
	Event Event  `json:"-"`
	Text  string `json:"event"`
	// At is when it fired after training started; Targets the processes
	// it hit (roles resolved); Note what it could not do, if anything.
	At      time.Duration `json:"at"`
	Targets []string      `json:"targets,omitempty"`
	Note    string        `json:"note,omitempty"`
	// Detect is the time from the fault to the first sign the cluster
	// saw it (a new generation, or another leader), Recover to training
	// on a full ring past its step at the fault, after the fault ended;
	// -1 when not observed.
	Detect  time.Duration `json:"detect"`
	Recover time.Duration `json:"recover"`
}

// Sample is one status of the leader, polled during a run.
type Sample struct {
	At         time.Duration
	Leader     string
	State      string
	Generation uint64
	Step       int64
	Ring       int
}

// Result is one schedule's run.
type Result struct {
	Seed       int64         `json:"seed"`
	Transcript string        `json:"transcript"`
	Fired      []Fired       `json:"fired"`
	Violations []Violation   `json:"violations"`
	Elapsed    time.Duration `json:"elapsed"`
	Dir        string        `json:"dir"`
	Workers    int           `json:"workers"`
	// Uninterrupted: the run without faults whose parameters the
	// schedules are compared with.
	Uninterrupted bool `json:"uninterrupted,omitempty"`
	// Obs is what the checker read; the JSON of a campaign leaves it
	// out (it is in observations.json in Dir) for a digest of it.
	Obs       Observations      `json:"-"`
	Ended     bool              `json:"ended"`
	KeyEvents int               `json:"checkpoint_key_events"`
	Digests   map[string]Digest `json:"final_parameters"`
}

// Recoveries fills each fired fault's Detect and Recover from the status
// samples (ordered by time), for a ring of workers. It is pure.
func Recoveries(fired []Fired, samples []Sample, workers int) {
	for i := range fired {
		f := &fired[i]
		f.Detect, f.Recover = -1, -1
		var before *Sample
		for j := range samples {
			if samples[j].At <= f.At {
				before = &samples[j]
			}
		}
		if before == nil {
			continue
		}
		// What the cluster is to notice: a worker or the leader hit (a
		// new generation, or another leader), or everything killed. A
		// fault of etcd or the standby has nothing to detect.
		hitLeader := slices.Contains(f.Targets, before.Leader)
		detectable := hitLeader || f.Event.Kind == KillAll || slices.ContainsFunc(f.Targets, func(t string) bool { return strings.HasPrefix(t, "worker-") })
		end := f.At + f.Event.For
		for _, s := range samples {
			if s.At <= f.At {
				continue
			}
			if f.Detect < 0 && detectable && (s.Generation > before.Generation || (hitLeader && s.Leader != "" && s.Leader != before.Leader)) {
				f.Detect = s.At - f.At
			}
			if f.Recover < 0 && s.At >= end && s.State == "running" && s.Ring == workers && s.Step > before.Step {
				f.Recover = s.At - f.At
			}
		}
	}
}

// RunSchedule runs one schedule on a fresh cluster in a directory of its
// own under cfg.Dir and checks it; reference, when not nil, is the digest
// of an uninterrupted run. The error is the harness's own failure (the
// cluster could not start); what the run broke is in the violations.
func RunSchedule(ctx context.Context, cfg Config, s Schedule, reference *Digest) (res Result, err error) {
	dir := fmt.Sprintf("seed-%d", s.Seed)
	if len(s.Events) == 0 {
		dir = "reference"
		defer func() { res.Transcript, res.Uninterrupted = "uninterrupted run (no faults)\n", true }()
	}
	res = Result{Seed: s.Seed, Transcript: s.Transcript(), Dir: filepath.Join(cfg.Dir, dir), Workers: cfg.Shape.Workers}
	if err := os.MkdirAll(res.Dir, 0o755); err != nil {
		return res, err
	}
	tok := make([]byte, 16)
	rand.Read(tok)
	y, err := cfg.Job.YAML()
	if err != nil {
		return res, err
	}
	jobFile := filepath.Join(res.Dir, "job.yaml")
	if err := os.WriteFile(jobFile, y, 0o644); err != nil {
		return res, err
	}
	links := slices.ContainsFunc(s.Events, func(e Event) bool { return e.Kind == SlowLinks || e.Kind == FlakyLink })
	c, err := newCluster(cfg, res.Dir, hex.EncodeToString(tok), jobFile, links)
	if err != nil {
		return res, err
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer c.stop()
	defer cancel()
	for _, ps := range c.proxies {
		for _, p := range ps {
			wg.Add(1)
			go func() { defer wg.Done(); p.Run(ctx) }()
		}
	}
	needDisk := slices.ContainsFunc(s.Events, func(e Event) bool { return e.Kind == DiskFull })
	if needDisk && cfg.Root {
		if err := c.mountStore(64 << 20); err != nil {
			return res, err
		}
	}
	if err := c.start(ctx); err != nil {
		return res, err
	}
	cli, err := c.etcdClient()
	if err != nil {
		return res, err
	}
	defer cli.Close()
	jobName := cfg.Job.JobName()
	w := newWatcher(ctx, cli, checkpoint.EtcdCheckpointsPrefix(jobName), filepath.Join(c.store, jobName))
	wg.Add(1)
	go func() { defer wg.Done(); w.run(ctx) }()

	// A process that exits with an error is started again from the start,
	// as Kubernetes would restart its pod (one that fails to bind a port
	// another process took meanwhile, say).
	wg.Add(1)
	go func() { defer wg.Done(); c.supervise(ctx) }()
	if err := c.waitStatus(ctx, "training", 2*time.Minute, func(st *api.StatusReply) bool {
		return st.State == "running" && st.Step >= 1
	}); err != nil {
		return res, err
	}
	t0 := time.Now()
	since := func() time.Duration { return time.Since(t0) }
	smp := &sampler{}
	wg.Add(1)
	go func() { defer wg.Done(); smp.run(ctx, c, since) }()

	// The events fire on their own goroutines, each ending with the
	// fault (a restart, a SIGCONT, a restore) or with ctx.
	inj := &injector{c: c, since: since, root: cfg.Root}
	evctx, stopEvents := context.WithCancel(ctx)
	var evwg sync.WaitGroup
	for _, e := range s.Events {
		evwg.Add(1)
		go func() { defer evwg.Done(); inj.fire(evctx, e, t0) }()
	}

	obs := Observations{Bound: cfg.Bound, Keep: cfg.Job.KeepCheckpoints}
	obs.Ended = c.waitEnd(ctx, t0.Add(cfg.Bound), &evwg, stopEvents)
	obs.Elapsed = since()
	if ctx.Err() != nil {
		obs.Err = "interrupted"
	}
	stopEvents()
	evwg.Wait()
	res.Elapsed = obs.Elapsed

	// What the run left: the key log (after the watch has caught up with
	// etcd's revision), what is committed now, and the workers' digests.
	if err := w.catchUp(ctx); err != nil {
		obs.Err = strings.TrimPrefix(obs.Err+"; ", "; ") + "the checkpoint watch did not catch up: " + err.Error()
	}
	obs.Keys = w.events()
	obs.Finals, err = finals(ctx, cli, jobName, filepath.Join(c.store, jobName))
	if err != nil {
		obs.Err = strings.TrimPrefix(obs.Err+"; ", "; ") + "reading the committed checkpoints: " + err.Error()
	}
	obs.Digests = map[string]Digest{}
	for _, p := range c.workers {
		if d, ok := lastDigest(p.log); ok {
			obs.Digests[p.name] = d
		}
	}
	obs.Reference = reference
	res.Obs, res.Ended, res.KeyEvents, res.Digests = obs, obs.Ended, len(obs.Keys), obs.Digests
	res.Violations = Check(obs)
	// The observations stay beside the logs, for a look at what the
	// checker read.
	if b, err := json.MarshalIndent(obs, "", "  "); err == nil {
		os.WriteFile(filepath.Join(res.Dir, "observations.json"), b, 0o644)
	}
	res.Fired = inj.fired()
	Recoveries(res.Fired, smp.samples(), cfg.Shape.Workers)
	return res, nil
}

// waitEnd waits until the leader says the job is done, every fault has
// run its course (events not yet fired are dropped then, by stopEvents)
// and every worker has exited; or until deadline (a hang).
func (c *cluster) waitEnd(ctx context.Context, deadline time.Time, events *sync.WaitGroup, stopEvents func()) bool {
	faultsOver := make(chan struct{})
	go func() { events.Wait(); close(faultsOver) }()
	for {
		st, err := c.status(ctx)
		if err == nil && st.State == "done" {
			stopEvents()
			exited := true
			for _, p := range c.workers {
				if p.running() {
					exited = false
				}
			}
			select {
			case <-faultsOver:
				if exited {
					return true
				}
			default:
			}
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return false
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// lastDigest reads the last FinalParametersLog line of a worker's log.
func lastDigest(path string) (Digest, bool) {
	f, err := os.Open(path)
	if err != nil {
		return Digest{}, false
	}
	defer f.Close()
	var d Digest
	var ok bool
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		_, rest, found := strings.Cut(sc.Text(), worker.FinalParametersLog)
		if !found {
			continue
		}
		var step int64
		var sum string
		if _, err := fmt.Sscanf(rest, " step %d, parameters %s", &step, &sum); err == nil {
			d, ok = Digest{Step: step, Sum: sum}, true
		}
	}
	return d, ok
}

// finals reads the committed checkpoints and verifies each one's files in
// the store against the committed manifest.
func finals(ctx context.Context, cli *clientv3.Client, jobName, storeDir string) ([]Final, error) {
	store, err := checkpoint.OpenShared(storeDir)
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ms, err := checkpoint.NewEtcdCommitter(cli, jobName, store).Committed(rctx)
	if err != nil {
		return nil, err
	}
	var out []Final
	for _, m := range ms {
		b, _ := json.Marshal(m)
		out = append(out, Final{Name: m.Name, Manifest: string(b), VerifyErr: verifyAgainst(store, m)})
	}
	return out, nil
}

// verifyAgainst checks a checkpoint's files in store against the manifest
// committed in etcd: the store's manifest must list the same files, and
// the files must verify. It returns why not, or "".
func verifyAgainst(store *checkpoint.Store, committed checkpoint.Manifest) string {
	m, err := store.Verify(committed.Name)
	if err != nil {
		return err.Error()
	}
	if !slices.Equal(m.Files, committed.Files) {
		return "the store's manifest lists other files than the committed one"
	}
	return ""
}

// watcher records every change under the checkpoints prefix from etcd's
// first revision, verifying each checkpoint's files when its record first
// appears.
type watcher struct {
	cli    *clientv3.Client
	prefix string
	store  string

	mu      sync.Mutex
	log     []KeyEvent
	lastRev int64 // of the newest event recorded
	current int64 // the store revision the watch is known to be current at
	seen    map[string]bool
	wctx    context.Context // the watch's context, for progress requests
}

func (w *watcher) events() []KeyEvent {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.log)
}

// newWatcher returns a watcher of prefix whose checkpoints' files are in
// store; it watches once run is called.
func newWatcher(ctx context.Context, cli *clientv3.Client, prefix, store string) *watcher {
	return &watcher{cli: cli, prefix: prefix, store: store, seen: map[string]bool{}, wctx: clientv3.WithRequireLeader(ctx)}
}

func (w *watcher) run(ctx context.Context) {
	for ctx.Err() == nil {
		w.mu.Lock()
		from := w.lastRev + 1
		w.mu.Unlock()
		for resp := range w.cli.Watch(w.wctx, w.prefix, clientv3.WithPrefix(), clientv3.WithRev(from)) {
			for _, ev := range resp.Events {
				w.record(ctx, ev)
			}
			if resp.Err() == nil {
				w.mu.Lock()
				w.current = max(w.current, resp.Header.Revision)
				w.mu.Unlock()
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (w *watcher) record(ctx context.Context, ev *clientv3.Event) {
	k := KeyEvent{Rev: ev.Kv.ModRevision, Key: strings.TrimPrefix(string(ev.Kv.Key), w.prefix), Delete: ev.Type == clientv3.EventTypeDelete}
	if !k.Delete {
		k.Value = string(ev.Kv.Value)
	}
	w.mu.Lock()
	first := !k.Delete && k.Key != latestKey && !w.seen[k.Key]
	w.seen[k.Key] = true
	w.mu.Unlock()
	if first {
		var m checkpoint.Manifest
		if err := json.Unmarshal(ev.Kv.Value, &m); err == nil {
			if store, err := checkpoint.OpenShared(w.store); err != nil {
				k.VerifyErr = err.Error()
			} else if why := verifyAgainst(store, m); why != "" {
				// Gone since (retention) is no fault of the commit.
				gctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				resp, err := w.cli.Get(gctx, string(ev.Kv.Key))
				cancel()
				if err != nil || len(resp.Kvs) > 0 {
					k.VerifyErr = why
				}
			}
		}
	}
	w.mu.Lock()
	w.log = append(w.log, k)
	w.lastRev = max(w.lastRev, k.Rev)
	w.mu.Unlock()
}

// catchUp waits until the watch is current at etcd's revision now: every
// change of the prefix up to it is recorded (a progress notification
// says so when the last changes were to other keys).
func (w *watcher) catchUp(ctx context.Context) error {
	deadline := time.Now().Add(15 * time.Second)
	var now int64
	for {
		gctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		var err error
		if now == 0 {
			var resp *clientv3.GetResponse
			if resp, err = w.cli.Get(gctx, w.prefix, clientv3.WithPrefix(), clientv3.WithCountOnly()); err == nil {
				now = resp.Header.Revision
			}
		}
		if now != 0 {
			w.mu.Lock()
			caught := w.current >= now
			w.mu.Unlock()
			if caught {
				cancel()
				return nil
			}
			err = w.cli.RequestProgress(w.wctx)
		}
		cancel()
		if time.Now().After(deadline) {
			if err == nil {
				err = fmt.Errorf("the watch is behind etcd's revision %d", now)
			}
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// sampler polls the leader's status.
type sampler struct {
	mu  sync.Mutex
	log []Sample
}

func (s *sampler) samples() []Sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.log)
}

func (s *sampler) run(ctx context.Context, c *cluster, since func() time.Duration) {
	for ctx.Err() == nil {
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		st, err := c.status(sctx)
		cancel()
		if err == nil && st.State != "standby" {
			s.mu.Lock()
			s.log = append(s.log, Sample{At: since(), Leader: st.Coordinator, State: st.State, Generation: st.Generation, Step: st.Step, Ring: len(st.Ring)})
			s.mu.Unlock()
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// injector carries out events on a cluster.
type injector struct {
	c     *cluster
	since func() time.Duration
	root  bool

	mu  sync.Mutex
	log []Fired
}

func (in *injector) fired() []Fired {
	in.mu.Lock()
	defer in.mu.Unlock()
	out := slices.Clone(in.log)
	slices.SortStableFunc(out, func(a, b Fired) int { return int(a.At - b.At) })
	return out
}

// role resolves "leader" and "standby" to a coordinator's name.
func (in *injector) role(ctx context.Context, role string) (string, string) {
	sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	st, err := in.c.status(sctx)
	cancel()
	leader, note := "", ""
	if err == nil && st.State != "standby" {
		leader = st.Coordinator
	} else {
		leader, note = in.c.coords[0].name, "leader unknown when it fired, took "+in.c.coords[0].name
	}
	if role == "leader" {
		return leader, note
	}
	for _, p := range in.c.coords {
		if p.name != leader {
			return p.name, note
		}
	}
	return leader, note
}

// wait sleeps d or until ctx ends; false when ctx ended.
func wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// fire waits until e's time and carries it out, to its end: a killed
// process is restarted, a paused one continued, a cut restored, a full
// disk freed, even when ctx has ended meanwhile.
func (in *injector) fire(ctx context.Context, e Event, t0 time.Time) {
	if !wait(ctx, time.Until(t0.Add(e.At))) {
		return
	}
	f := Fired{Event: e, Text: e.String(), At: in.since()}
	var notes []string
	note := func(s string) {
		if s != "" {
			notes = append(notes, s)
		}
	}
	targets := slices.Clone(e.Targets)
	for i, t := range targets {
		if t == "leader" || t == "standby" {
			var n string
			targets[i], n = in.role(ctx, t)
			note(n)
		}
	}
	switch e.Kind {
	case KillLeader, KillStandby:
		role := "leader"
		if e.Kind == KillStandby {
			role = "standby"
		}
		name, n := in.role(ctx, role)
		note(n)
		targets = []string{name}
	}
	f.Targets = targets
	record := func() {
		f.Note = strings.Join(notes, "; ")
		in.mu.Lock()
		in.log = append(in.log, f)
		in.mu.Unlock()
	}
	// The ends of faults are not cut short by ctx: a fault is always
	// undone before the cluster is stopped or checked.
	end := context.WithoutCancel(ctx)
	switch e.Kind {
	case KillWorker, KillLeader, KillStandby, KillEtcd:
		p := in.c.byName(targets[0])
		p.hold(true)
		defer p.hold(false)
		if !p.kill() {
			note(p.name + " was not running")
			record()
			return
		}
		record()
		wait(end, e.For)
		if !p.running() {
			if err := p.start(); err != nil {
				in.c.cfg.logf("faults: restarting %s: %v", p.name, err)
			}
		}
	case Pause, QuorumLoss:
		var paused []*process
		for _, t := range targets {
			if p := in.c.byName(t); p.pause(true) {
				paused = append(paused, p)
			} else {
				note(t + " was not running")
			}
		}
		record()
		wait(end, e.For)
		for _, p := range paused {
			p.pause(false)
		}
	case CutCoordinator:
		for _, p := range in.c.proxies[targets[0]] {
			p.Cut()
		}
		record()
		wait(end, e.For)
		for _, p := range in.c.proxies[targets[0]] {
			p.Restore()
		}
	case SlowLinks:
		var slowed []*Proxy
		for _, w := range in.c.workers {
			slowed = append(slowed, in.c.proxies[w.name]...)
		}
		for _, p := range slowed {
			p.SetDelay(e.Delay)
		}
		record()
		wait(end, e.For)
		for _, p := range slowed {
			p.SetDelay(0)
		}
	case FlakyLink:
		record()
		until := time.Now().Add(e.For)
		for time.Now().Before(until) {
			for _, p := range in.c.proxies[targets[0]] {
				p.Reset()
			}
			wait(end, min(500*time.Millisecond, time.Until(until)))
		}
	case DiskFull:
		if !in.c.tmpfs {
			note("skipped: needs root to mount a tmpfs for the store")
			record()
			return
		}
		path, err := in.c.fill()
		if err != nil {
			note("filling the store: " + err.Error())
		}
		record()
		wait(end, e.For)
		os.Remove(path)
	case KillAll:
		for _, p := range slices.Backward(in.c.all()) {
			p.hold(true)
			defer p.hold(false)
			p.pause(false)
			p.kill()
		}
		record()
		wait(end, e.For)
		if err := in.c.restartAll(end); err != nil {
			in.c.cfg.logf("faults: restarting the cluster: %v", err)
		}
	}
}

// Report is a campaign's outcome.
type Report struct {
	Kinds     []Kind   `json:"kinds"`
	Skipped   []string `json:"skipped,omitempty"`
	Reference *Digest  `json:"reference,omitempty"`
	Results   []Result `json:"schedules"`
	// Violations counts every violation; Slowest is the seed of the
	// longest schedule.
	Violations int     `json:"violations"`
	Slowest    int64   `json:"slowest_seed"`
	SlowestS   float64 `json:"slowest_s"`
}

// Summarize fills the report's totals from its results.
func (r *Report) Summarize() {
	r.Violations, r.Slowest, r.SlowestS = 0, 0, 0
	for _, res := range r.Results {
		r.Violations += len(res.Violations)
		if s := res.Elapsed.Seconds(); !res.Uninterrupted && s > r.SlowestS {
			r.Slowest, r.SlowestS = res.Seed, s
		}
	}
}

// Text writes a result as the campaign prints it.
func (res Result) Text() string {
	var b strings.Builder
	b.WriteString(res.Transcript)
	for _, f := range res.Fired {
		targets := strings.Join(f.Targets, "+")
		if f.Event.Kind == KillAll {
			targets = "every process"
		} else if f.Event.Kind == DiskFull {
			targets = "the store"
		} else if f.Event.Kind == SlowLinks {
			targets = "every worker's links"
		}
		fmt.Fprintf(&b, "  fired %6.2fs %s → %s", f.At.Seconds(), f.Event.Kind, targets)
		fmt.Fprintf(&b, ": detected %s, recovered %s", seconds(f.Detect), seconds(f.Recover))
		if f.Note != "" {
			fmt.Fprintf(&b, " (%s)", f.Note)
		}
		b.WriteString("\n")
	}
	status := "ok"
	if len(res.Violations) > 0 {
		status = strconv.Itoa(len(res.Violations)) + " violations"
	}
	names := slices.Sorted(maps.Keys(res.Obs.Digests))
	fmt.Fprintf(&b, "  %s in %.1fs; %d checkpoint key events; %d of %d workers reported final parameters",
		status, res.Elapsed.Seconds(), len(res.Obs.Keys), len(names), res.Workers)
	if len(names) > 0 {
		d := res.Obs.Digests[names[0]]
		fmt.Fprintf(&b, " (step %d, %s)", d.Step, d.Sum)
	}
	b.WriteString("\n")
	for _, v := range res.Violations {
		fmt.Fprintf(&b, "  VIOLATION %s\n", v)
	}
	if len(res.Violations) > 0 {
		fmt.Fprintf(&b, "  logs in %s; rerun: --seed %d --schedules 1\n", res.Dir, res.Seed)
	}
	return b.String()
}

func seconds(d time.Duration) string {
	if d < 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fs", d.Seconds())
}

// Usable returns the kinds this harness can inject as configured, and a
// line for each one it must skip and why.
func (cfg Config) Usable() (kinds []Kind, skipped []string) {
	for _, k := range cfg.Kinds {
		if k == DiskFull && !cfg.Root {
			skipped = append(skipped, "disk-full: needs root, to mount a tmpfs for the checkpoint store")
			continue
		}
		kinds = append(kinds, k)
	}
	return kinds, skipped
}

// Run runs a campaign: first an uninterrupted run of the job (its final
// parameters are what every schedule must end with), then n schedules
// drawn from seeds seed, seed+1, …, each on a fresh cluster. each, when
// not nil, is told every result as it completes. The error is the
// harness's: bad configuration, or a cluster that could not start.
func Run(ctx context.Context, cfg Config, seed int64, n int, each func(Result)) (Report, error) {
	if n < 1 {
		return Report{}, fmt.Errorf("faults: %d schedules: must be at least 1", n)
	}
	if cfg.Status == nil {
		return Report{}, errors.New("faults: no status function")
	}
	for what, path := range map[string]string{"ringtrain binary": cfg.Exe, "etcd binary": cfg.Etcd} {
		if fi, err := os.Stat(path); err != nil || fi.IsDir() {
			return Report{}, fmt.Errorf("faults: the %s %q: not a file", what, path)
		}
	}
	if len(cfg.Kinds) == 0 {
		return Report{}, errors.New("faults: no fault kind given")
	}
	// Schedules are drawn from every kind asked for, usable here or not,
	// so that a seed names the same schedule on every machine; an event
	// this harness cannot inject is skipped, and its result says so.
	_, skipped := cfg.Usable()
	rep := Report{Kinds: cfg.Kinds, Skipped: skipped}
	ref, err := RunSchedule(ctx, cfg, Schedule{Seed: seed}, nil)
	if err != nil {
		return rep, fmt.Errorf("faults: the uninterrupted run: %w (logs in %s)", err, ref.Dir)
	}
	if each != nil {
		each(ref)
	}
	rep.Results = append(rep.Results, ref)
	if len(ref.Violations) > 0 {
		rep.Summarize()
		return rep, fmt.Errorf("faults: the uninterrupted run broke invariants: %v (logs in %s)", ref.Violations, ref.Dir)
	}
	for _, d := range ref.Obs.Digests {
		rep.Reference = &d
		break
	}
	for i := range n {
		s := Generate(seed+int64(i), cfg.Shape, cfg.Kinds)
		res, err := RunSchedule(ctx, cfg, s, rep.Reference)
		if err != nil {
			rep.Summarize()
			return rep, fmt.Errorf("faults: seed %d: %w", s.Seed, err)
		}
		if each != nil {
			each(res)
		}
		rep.Results = append(rep.Results, res)
	}
	rep.Summarize()
	return rep, nil
}

// Text is the campaign's summary.
func (r Report) Text() string {
	var b strings.Builder
	n := 0
	for _, res := range r.Results {
		if !res.Uninterrupted {
			n++
		}
	}
	noun := "schedules"
	if n == 1 {
		noun = "schedule"
	}
	fmt.Fprintf(&b, "%d %s (and an uninterrupted run), %d violations; slowest: seed %d, %.1fs\n", n, noun, r.Violations, r.Slowest, r.SlowestS)
	var bad []string
	for _, res := range r.Results {
		if len(res.Violations) > 0 {
			name := strconv.FormatInt(res.Seed, 10)
			if res.Uninterrupted {
				name = "the uninterrupted run"
			}
			bad = append(bad, name)
		}
	}
	if len(bad) > 0 {
		fmt.Fprintf(&b, "seeds with violations: %s\n", strings.Join(bad, ", "))
	}
	for _, s := range r.Skipped {
		fmt.Fprintf(&b, "skipped %s\n", s)
	}
	return b.String()
}
