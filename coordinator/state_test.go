package coordinator

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func testConfig() Config {
	return Config{
		MinWorkers: 2, MaxWorkers: 4, JoinToken: "secret", JobHash: "job1",
		HeartbeatTicks: 1, DeadTicks: 4, SettleTicks: 2, Samples: 50, Batch: 3,
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		modify func(*Config)
		want   string // substring of the error; "" for none
	}{
		{"ok", func(*Config) {}, ""},
		{"settle 0", func(c *Config) { c.SettleTicks = 0 }, ""},
		{"min 0", func(c *Config) { c.MinWorkers = 0 }, "MinWorkers"},
		{"max below min", func(c *Config) { c.MaxWorkers = 1 }, "MaxWorkers"},
		{"no token", func(c *Config) { c.JoinToken = "" }, "JoinToken"},
		{"heartbeat 0", func(c *Config) { c.HeartbeatTicks = 0 }, "HeartbeatTicks"},
		{"dead not after heartbeat", func(c *Config) { c.DeadTicks = 1 }, "DeadTicks"},
		{"negative settle", func(c *Config) { c.SettleTicks = -1 }, "SettleTicks"},
		{"no samples", func(c *Config) { c.Samples = 0 }, "Samples"},
		{"no batch", func(c *Config) { c.Batch = 0 }, "Batch"},
		{"negative start", func(c *Config) { c.StartStep = -1 }, "StartStep"},
		{"start beyond epoch", func(c *Config) { c.StartPosition.Consumed = 51 }, "StartPosition"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			tc.modify(&cfg)
			c, err := New(cfg)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("New: %v", err)
			case tc.want == "" && c == nil:
				t.Fatal("New returned nil")
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "coordinator: ")):
				t.Fatalf("New: error %v, want one about %s", err, tc.want)
			}
		})
	}
}

func TestJoinErrors(t *testing.T) {
	c, err := New(testConfig())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, token, hash string }{
		{"", "secret", "job1"},
		{"a b", "secret", "job1"},
		{"w1", "secre", "job1"},
		{"w1", "secret", "job2"},
		{"w1", "", ""},
	} {
		if err := c.Join(tc.name, tc.token, tc.hash); !errors.Is(err, ErrRefused) {
			t.Errorf("Join(%q, %q, %q) = %v, want ErrRefused", tc.name, tc.token, tc.hash, err)
		}
	}
	if len(c.Members()) != 0 {
		t.Fatalf("refused joins admitted %v", c.Members())
	}
	for i := range 4 {
		if err := c.Join(fmt.Sprint("w", i), "secret", "job1"); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Join("w9", "secret", "job1"); !errors.Is(err, ErrFull) {
		t.Errorf("fifth join = %v, want ErrFull", err)
	}
	// A re-join of a member is not refused as full.
	if err := c.Join("w0", "secret", "job1"); err != nil {
		t.Errorf("re-join when full: %v", err)
	}
}

func TestHeartbeatErrors(t *testing.T) {
	cfg := testConfig()
	cfg.SettleTicks = 0
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Heartbeat("w1", 0, 0); !errors.Is(err, ErrNotMember) {
		t.Errorf("heartbeat before join = %v, want ErrNotMember", err)
	}
	must(t, c.Join("w1", "secret", "job1"))
	if err := c.Heartbeat("w1", 0, 5); err != nil {
		t.Errorf("heartbeat of a member outside any ring = %v, want nil", err)
	}
	must(t, c.Join("w2", "secret", "job1"))
	if g, running := c.Generation(); g.Number != 1 || !running {
		t.Fatalf("generation %d running %v, want 1 running", g.Number, running)
	}
	if err := c.Heartbeat("w1", 2, 5); err == nil || errors.Is(err, ErrStaleGeneration) {
		t.Errorf("heartbeat naming a future generation = %v, want a non-stale error", err)
	}
	must(t, c.Heartbeat("w1", 1, 5))
	if err := c.Heartbeat("w1", 1, 4); err == nil {
		t.Error("a step going backwards was accepted")
	}
	must(t, c.Join("w3", "secret", "job1")) // generation 2
	if err := c.Heartbeat("w1", 1, 6); !errors.Is(err, ErrStaleGeneration) {
		t.Errorf("heartbeat naming generation 1 in generation 2 = %v, want ErrStaleGeneration", err)
	}
	if g, _ := c.Generation(); g.ResumeStep != 5 || g.Source != "w1" {
		t.Errorf("generation 2 resumes at %d from %q, want 5 from w1", g.ResumeStep, g.Source)
	}
	if err := c.Heartbeat("w1", 2, 4); err == nil {
		t.Error("a step before the generation's resume step was accepted")
	}
}

// TestReadyAdvanceKeepsLaterOutputs: outputs of inputs given between Ready
// and Advance survive Advance.
func TestReadyAdvanceKeepsLaterOutputs(t *testing.T) {
	cfg := testConfig()
	cfg.SettleTicks = 0
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	must(t, c.Join("w1", "secret", "job1"))
	must(t, c.Join("w2", "secret", "job1"))
	must(t, c.Join("w3", "secret", "job1"))
	rd := c.Ready()
	if rd.Generation == nil || rd.Generation.Number != 2 {
		t.Fatalf("Ready = %+v, want generation 2", rd)
	}
	if again := c.Ready(); again.Generation != rd.Generation || again.Status != rd.Status {
		t.Fatalf("a second Ready differs: %+v then %+v", rd, again)
	}
	c.Leave("w2") // generation 3, before Advance
	c.Advance()
	if !c.HasReady() {
		t.Fatal("Advance dropped the outputs of a later input")
	}
	rd = c.Ready()
	if rd.Generation == nil || rd.Generation.Number != 3 || len(rd.Removed) != 1 || rd.Removed[0].Name != "w2" {
		t.Fatalf("Ready = %+v, want generation 3 and w2 removed", rd)
	}
	if rd.Status != "running: generation 3, 2 workers" {
		t.Errorf("status %q", rd.Status)
	}
	// The published generation is the caller's: changing it changes nothing.
	rd.Generation.Ring[0] = "x"
	rd.Generation.Ranks["x"] = 7
	c.Advance()
	if g, _ := c.Generation(); g.Ring[0] != "w1" || len(g.Ranks) != 2 {
		t.Errorf("caller's edit reached the coordinator: %+v", g)
	}
	if c.HasReady() {
		t.Errorf("Ready after Advance: %+v", c.Ready())
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// opNames are the inputs a random script is made of.
var opNames = []string{"join", "join-bad", "leave", "dead", "heartbeat", "stale", "tick", "ready", "reached", "broken"}

// runScript drives a coordinator with the inputs that script's bytes
// encode, checks the invariants after each, and returns a transcript of
// every Ready.
func runScript(t *testing.T, cfg Config, script []byte) string {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	var lastGen Generation
	step := int64(0)
	check := func() {
		checkState(t, cfg, c)
		if g, _ := c.Generation(); g.Number != lastGen.Number {
			checkGeneration(t, cfg, c, g, &lastGen)
		}
	}
	for i := 0; i+1 < len(script); i += 2 {
		op, arg := opNames[int(script[i])%len(opNames)], int(script[i+1])
		name := fmt.Sprint("w", arg%6)
		switch op {
		case "join":
			err := c.Join(name, cfg.JoinToken, cfg.JobHash)
			if err != nil && !errors.Is(err, ErrFull) {
				t.Fatalf("join %s: %v", name, err)
			}
		case "join-bad":
			if err := c.Join(name, "wrong", cfg.JobHash); !errors.Is(err, ErrRefused) {
				t.Fatalf("bad join %s = %v", name, err)
			}
		case "leave":
			c.Leave(name)
		case "dead":
			c.Dead(name)
		case "heartbeat":
			g, _ := c.Generation()
			step += int64(arg % 3)
			_ = c.Heartbeat(name, g.Number, step) // may be refused: not a member, stale
		case "stale":
			g, _ := c.Generation()
			if g.Number > 1 {
				if err := c.Heartbeat(name, g.Number-1, step+100); err == nil {
					if m := c.find(name); m != nil && m.inRing != 0 {
						t.Fatalf("stale heartbeat from ring member %s accepted", name)
					}
				}
			}
		case "reached":
			g, _ := c.Generation()
			c.Reached(name, g.Number-uint64(arg/6%2)) // the current generation, or the one before
		case "broken":
			g, _ := c.Generation()
			c.Broken(name, g.Number)
		case "tick":
			for range 1 + arg%3 {
				c.Tick()
				check()
				for _, m := range c.members {
					if c.stuck(m) {
						t.Fatalf("tick %d: %s not in the ring of generation %d since tick %d, not evicted (StuckTicks %d)",
							c.Now(), m.name, c.gen.Number, m.waitSince, cfg.StuckTicks)
					}
				}
			}
		case "ready":
			rd := c.Ready()
			fmt.Fprintf(&log, "%d %+v %+v %q", c.Now(), rd.Removed, rd.Pause, rd.Status)
			if g := rd.Generation; g != nil {
				fmt.Fprintf(&log, " %+v", *g)
			}
			log.WriteString("\n")
			checkReady(t, c, rd)
			c.Advance()
			if c.HasReady() {
				t.Fatalf("Ready after Advance with no input: %+v", c.Ready())
			}
		}
		check()
	}
	return log.String()
}

func checkReady(t *testing.T, c *Coordinator, rd Ready) {
	t.Helper()
	if rd.Generation != nil && rd.Pause != nil {
		t.Fatalf("Ready has both a generation and a pause: %+v", rd)
	}
	for _, p := range rd.Pause {
		if !slices.Contains(c.Members(), p) {
			t.Fatalf("pause names %s, not a member", p)
		}
	}
	if g := rd.Generation; g != nil {
		if cur, _ := c.Generation(); g.Number != cur.Number {
			t.Fatalf("Ready has generation %d, the latest is %d", g.Number, cur.Number)
		}
	}
}

// checkGeneration checks a newly published generation g against the one
// before it, last, and makes it last.
func checkGeneration(t *testing.T, cfg Config, c *Coordinator, g Generation, last *Generation) {
	t.Helper()
	if g.Number <= last.Number {
		t.Fatalf("generation %d after %d", g.Number, last.Number)
	}
	if len(g.Ring) < cfg.MinWorkers || len(g.Ring) > cfg.MaxWorkers {
		t.Fatalf("ring of %d outside [%d, %d]", len(g.Ring), cfg.MinWorkers, cfg.MaxWorkers)
	}
	for i, w := range g.Ring {
		if g.Ranks[w] != i {
			t.Fatalf("rank of %s is %d, index %d", w, g.Ranks[w], i)
		}
	}
	if len(g.Ranks) != len(g.Ring) {
		t.Fatalf("%d ranks for a ring of %d", len(g.Ranks), len(g.Ring))
	}
	if g.Source != "" {
		if m := c.find(g.Source); !slices.Contains(last.Ring, g.Source) || m == nil || m.inRing == 0 || m.inRing >= g.Number {
			t.Fatalf("source %s did not survive from the previous ring %v", g.Source, last.Ring)
		}
		want := AdvancePosition(last.Position, cfg.Samples, cfg.Batch, g.ResumeStep-last.ResumeStep)
		if g.Position != want {
			t.Fatalf("generation %d at %v, want %v (%d steps of generation %d)", g.Number, g.Position, want, g.ResumeStep-last.ResumeStep, last.Number)
		}
	}
	if g.ResumeStep < last.ResumeStep {
		t.Fatalf("generation %d resumes at step %d, before generation %d's %d", g.Number, g.ResumeStep, last.Number, last.ResumeStep)
	}
	if last.Number > 0 && len(last.Ring) > 0 {
		// Ring order: survivors (members since before g) keep their
		// relative order.
		var kept []string
		for _, w := range last.Ring {
			if m := c.find(w); m != nil && m.inRing != 0 && m.inRing < g.Number {
				kept = append(kept, w)
			}
		}
		var order []string
		for _, w := range g.Ring {
			if slices.Contains(kept, w) {
				order = append(order, w)
			}
		}
		if !slices.Equal(kept, order) {
			t.Fatalf("survivors %v reordered to %v", kept, order)
		}
	}
	*last = g
}

func checkState(t *testing.T, cfg Config, c *Coordinator) {
	t.Helper()
	if len(c.members) > cfg.MaxWorkers {
		t.Fatalf("%d members, max %d", len(c.members), cfg.MaxWorkers)
	}
	for _, m := range c.members {
		if c.now-m.lastHeard >= int64(cfg.DeadTicks) {
			t.Fatalf("%s silent since tick %d at tick %d, still a member", m.name, m.lastHeard, c.now)
		}
	}
	if c.pending && c.now-c.pendingSince >= int64(cfg.SettleTicks) {
		t.Fatalf("settling window open since tick %d at tick %d (settle %d)", c.pendingSince, c.now, cfg.SettleTicks)
	}
	if !c.pending && c.running && len(c.members) >= cfg.MinWorkers {
		ring := slices.Sorted(slices.Values(c.gen.Ring))
		members := slices.Sorted(slices.Values(c.Members()))
		if !slices.Equal(ring, members) {
			t.Fatalf("settled and running, but ring %v differs from members %v", ring, members)
		}
	}
}

// TestRandomScripts runs random input sequences through the invariants,
// twice each, and checks both runs give the same outputs.
func TestRandomScripts(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	for trial := range 300 {
		cfg := testConfig()
		cfg.MinWorkers = 1 + rng.IntN(3)
		cfg.MaxWorkers = cfg.MinWorkers + rng.IntN(3)
		cfg.SettleTicks = rng.IntN(3)
		cfg.DeadTicks = 2 + rng.IntN(4)
		script := make([]byte, 2*(20+rng.IntN(100)))
		for i := range script {
			script[i] = byte(rng.Uint32())
		}
		a := runScript(t, cfg, script)
		if b := runScript(t, cfg, script); a != b {
			t.Fatalf("trial %d: two runs of one script differ:\n%s\n----\n%s", trial, a, b)
		}
	}
}

// FuzzCoordinator feeds arbitrary input sequences through the invariants.
func FuzzCoordinator(f *testing.F) {
	f.Add(uint8(2), uint8(4), uint8(1), []byte{0, 1, 0, 2, 0, 3, 6, 1, 7, 0, 3, 2, 6, 2, 7, 0})
	f.Add(uint8(1), uint8(1), uint8(0), []byte{0, 0, 0, 0, 4, 0, 5, 0, 7, 0, 2, 0, 7, 0})
	f.Add(uint8(3), uint8(5), uint8(2), []byte{0, 1, 0, 2, 0, 3, 6, 2, 7, 0, 4, 1, 4, 2, 6, 2, 7, 0, 1, 3, 3, 1, 6, 0, 7, 0})
	// A stuck member (StuckTicks 3): w2 never reaches the ring, w0 and w1 do
	// and report it broken.
	f.Add(uint8(1), uint8(3), uint8(12), []byte{0, 0, 0, 1, 0, 2, 7, 0, 8, 0, 8, 1, 4, 2, 6, 0, 9, 0, 7, 0, 8, 0, 8, 1, 6, 2, 7, 0, 6, 2, 7, 0})
	f.Fuzz(func(t *testing.T, minW, extra, settle uint8, script []byte) {
		cfg := testConfig()
		cfg.MinWorkers = 1 + int(minW%4)
		cfg.MaxWorkers = cfg.MinWorkers + int(extra%4)
		cfg.SettleTicks = int(settle % 4)
		cfg.StuckTicks = int(settle / 4 % 8) // 0: never
		if len(script) > 4000 {
			script = script[:4000]
		}
		runScript(t, cfg, script)
	})
}

// TestGenerationCauses: every generation says why it was formed (the
// job's start, joins, deaths, leaves, silence, a broken ring, a re-join),
// a pause says which changes stopped the ring, and the generation that
// ends the pause lists them again with the joins that ended it.
func TestGenerationCauses(t *testing.T) {
	cfg := testConfig()
	cfg.SettleTicks = 0
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	causes := func(ks []Cause) string {
		var s []string
		for _, k := range ks {
			s = append(s, k.String())
		}
		return strings.Join(s, ", ")
	}
	next := func(what, want string) {
		t.Helper()
		rd := c.Ready()
		c.Advance()
		if rd.Generation == nil {
			t.Fatalf("%s: no generation: %+v", what, rd)
		}
		if got := causes(rd.Generation.Causes); got != want {
			t.Errorf("%s: generation %d causes %q, want %q", what, rd.Generation.Number, got, want)
		}
		if g, _ := c.Generation(); causes(g.Causes) != want {
			t.Errorf("%s: Generation() causes %q, want %q", what, causes(g.Causes), want)
		}
	}
	join := func(name string) {
		t.Helper()
		if err := c.Join(name, "secret", "job1"); err != nil {
			t.Fatal(err)
		}
	}
	join("w0")
	join("w1")
	next("start", "start, join w0, join w1")
	join("w2")
	next("join", "join w2")
	c.Broken("w0", 2)
	next("broken", "broken w0 (generation 2)")
	join("w1") // a restarted process
	next("rejoin", "rejoin w1")
	c.Leave("w2")
	next("leave", "left w2")
	c.Dead("w1") // below MinWorkers: the ring stops
	rd := c.Ready()
	c.Advance()
	if rd.Generation != nil || len(rd.Pause) != 1 || causes(rd.PauseCauses) != "dead w1" {
		t.Fatalf("pause: %+v, want w0 paused because w1 is dead", rd)
	}
	if c.HasReady() {
		t.Fatalf("pause acknowledged, still ready: %+v", c.Ready())
	}
	join("w3")
	next("after the pause", "dead w1, join w3")
	// A join and a leave that cancel out leave no cause behind.
	join("w4")
	c.Leave("w4")
	c.Ready()
	c.Advance()
	for range cfg.DeadTicks - 1 {
		c.Heartbeat("w0", 6, 0)
		c.Tick()
	}
	c.Tick() // w3 is silent for DeadTicks; w0 is not
	rd = c.Ready()
	c.Advance()
	if causes(rd.PauseCauses) != "silent w3 (4 ticks)" {
		t.Fatalf("silence: pause causes %q", causes(rd.PauseCauses))
	}

	// The first generation of a coordinator that takes over a job.
	cfg.StartGeneration, cfg.StartStep = 7, 30
	c, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	join("w0")
	join("w1")
	next("takeover", "resume, join w0, join w1")
}

// TestGenerationCausesBounded: a job that waits while workers come and go
// keeps the first maxCauses causes.
func TestGenerationCausesBounded(t *testing.T) {
	cfg := testConfig()
	cfg.SettleTicks, cfg.MinWorkers = 0, 2
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for range maxCauses {
		c.Join("w0", "secret", "job1")
		c.Leave("w0")
	}
	c.Join("w0", "secret", "job1")
	c.Join("w1", "secret", "job1")
	rd := c.Ready()
	c.Advance()
	if rd.Generation == nil || len(rd.Generation.Causes) != maxCauses+1 || rd.Generation.Causes[0].Kind != CauseStart {
		t.Fatalf("generation %+v, want start and %d causes", rd.Generation, maxCauses)
	}
}

// TestBrokenCausesCoalesce: the members of a broken ring report it in every
// heartbeat until the next generation; within the settling window each
// member is one cause.
func TestBrokenCausesCoalesce(t *testing.T) {
	c, err := New(testConfig()) // SettleTicks 2
	if err != nil {
		t.Fatal(err)
	}
	c.Join("w0", "secret", "job1")
	c.Join("w1", "secret", "job1")
	c.Tick()
	c.Tick()
	if rd := c.Ready(); rd.Generation == nil || rd.Generation.Number != 1 {
		t.Fatalf("no first generation: %+v", rd)
	}
	c.Advance()
	for range 2 {
		c.Broken("w0", 1)
		c.Broken("w1", 1)
		c.Tick()
	}
	rd := c.Ready()
	if rd.Generation == nil || fmt.Sprint(rd.Generation.Causes) != "[broken w0 (generation 1) broken w1 (generation 1)]" {
		t.Fatalf("generation %+v", rd.Generation)
	}
}
