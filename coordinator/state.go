// Package coordinator turns the membership of a training job into numbered
// generations of the ring: who is in it, in which order, from which step and
// data position it resumes, and which samples each rank visits.
//
// The protocol core is Coordinator, a synchronous state machine in the style
// of etcd raft's RawNode: it reads no clock, opens no socket and starts no
// goroutine. A driver feeds it inputs (Join, Leave, Dead, Heartbeat, Tick),
// asks Ready what to do, does it (tell workers, log, update status) and calls
// Advance. Time advances only through Tick. The policy functions RingOrder,
// AssignShard and AdvancePosition are pure.
//
// Every generation carries where the ring resumes: the step, the member
// whose model state it starts from, and the data Position at that step.
// Every step takes the job's global batch, dealt among the ring's ranks
// (AssignShard gives a rank's samples for the rest of the epoch); the deal
// keeps the consumed part of an epoch a prefix of its order, so a re-deal
// after any membership change visits every remaining sample exactly once,
// and the global batch never changes with the ring's size.
//
// The scenarios in testdata/*.txt are transcripts of inputs and the outputs
// expected (see transcript_test.go for the commands); run
// go test -run Transcripts -update to rewrite the expected outputs after a
// deliberate change, and review the diff.
package coordinator

import (
	"cmp"
	"crypto/subtle"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Errors a driver can test for with errors.Is.
var (
	// ErrRefused: a Join with the wrong token or job hash, or a bad name.
	ErrRefused = errors.New("join refused")
	// ErrFull: a Join while MaxWorkers workers are members. Nothing is
	// queued; the worker should retry later (a slot frees when a member
	// leaves or dies).
	ErrFull = errors.New("job full")
	// ErrNotMember: a Heartbeat from a worker that is not a member (never
	// joined, left, or declared dead). It is ignored entirely.
	ErrNotMember = errors.New("not a member")
	// ErrStaleGeneration: a Heartbeat from a ring member that names an
	// earlier generation than the current one. Its liveness is recorded,
	// its step ignored; the driver should send the worker the current
	// generation.
	ErrStaleGeneration = errors.New("stale generation")
)

// Config is a job's membership policy. Durations are in ticks of the
// driver's clock.
type Config struct {
	MinWorkers int // the ring runs only with at least this many; ≥ 1
	MaxWorkers int // joins beyond this many members are refused; ≥ MinWorkers

	JoinToken string // shared secret every Join must present; non-empty
	JobHash   string // hash of the job file; a worker built for another job is refused

	// HeartbeatTicks is how often workers must heartbeat; it is passed to
	// them in every Generation. ≥ 1.
	HeartbeatTicks int
	// DeadTicks: a member not heard from (Join or Heartbeat) for this many
	// ticks is declared dead. > HeartbeatTicks.
	DeadTicks int
	// SettleTicks is the settling window. The first membership change
	// (join, re-join, leave, death) after the last decision opens it at
	// tick t; every change until tick t+SettleTicks is coalesced, and the
	// Tick that reaches t+SettleTicks decides once for all of them: a new
	// generation of the current members, a pause if they are fewer than
	// MinWorkers, or nothing if they are exactly the running ring (a join
	// and a leave of one worker cancel out; a re-join never does). A
	// window is fixed, not extended by later changes, so steady churn
	// cannot postpone a generation forever. 0 decides at the end of every
	// input. One input never publishes more than one generation. ≥ 0.
	SettleTicks int
	// StuckTicks: a member of the running ring that has not reached it
	// (Reached) within this many ticks is evicted as stuck, like a silent
	// one: alive and heartbeating, but hung (a blocked file operation, a
	// load that never ends), so every ring with it times out. The clock
	// starts when the member is first put in a ring it then fails to
	// reach, and is not restarted by the generations that follow until it
	// reaches one: a ring that breaks again and again because of it does
	// not postpone the eviction. It restarts at every generation for the
	// members that reached the one before, and while the ring is paused no
	// clock runs. 0: never (members are evicted only when silent). ≥ 0.
	StuckTicks int

	Samples int // samples per epoch; ≥ 1
	// Batch is the job's global batch: the samples one step consumes,
	// dealt among the ring's ranks whatever its size; ≥ 1.
	Batch int
	// Epochs is the job's length: no step or position beyond the end of
	// epoch Epochs-1 is believed (Prior). 0: no bound.
	Epochs int

	// StartStep and StartPosition are where the first generation begins: 0
	// and the zero Position for a new job, a checkpoint's for a resumed one.
	StartStep     int64
	StartPosition Position
	// StartGeneration is the number of the last generation of the job
	// published before (by a previous or deposed coordinator); the first
	// generation published is StartGeneration+1, so numbers keep growing
	// across coordinators.
	StartGeneration uint64
}

func (c Config) validate() error {
	switch {
	case c.MinWorkers < 1:
		return fmt.Errorf("coordinator: config: MinWorkers %d, want ≥ 1", c.MinWorkers)
	case c.MaxWorkers < c.MinWorkers:
		return fmt.Errorf("coordinator: config: MaxWorkers %d below MinWorkers %d", c.MaxWorkers, c.MinWorkers)
	case c.JoinToken == "":
		return errors.New("coordinator: config: empty JoinToken")
	case c.HeartbeatTicks < 1:
		return fmt.Errorf("coordinator: config: HeartbeatTicks %d, want ≥ 1", c.HeartbeatTicks)
	case c.DeadTicks <= c.HeartbeatTicks:
		return fmt.Errorf("coordinator: config: DeadTicks %d, want > HeartbeatTicks %d", c.DeadTicks, c.HeartbeatTicks)
	case c.SettleTicks < 0:
		return fmt.Errorf("coordinator: config: SettleTicks %d, want ≥ 0", c.SettleTicks)
	case c.StuckTicks < 0:
		return fmt.Errorf("coordinator: config: StuckTicks %d, want ≥ 0", c.StuckTicks)
	case c.Samples < 1:
		return fmt.Errorf("coordinator: config: Samples %d, want ≥ 1", c.Samples)
	case c.Batch < 1:
		return fmt.Errorf("coordinator: config: Batch %d, want ≥ 1", c.Batch)
	case c.Epochs < 0:
		return fmt.Errorf("coordinator: config: Epochs %d, want ≥ 0", c.Epochs)
	case c.StartStep < 0:
		return fmt.Errorf("coordinator: config: StartStep %d, want ≥ 0", c.StartStep)
	case c.StartPosition.Epoch < 0 || c.StartPosition.Consumed < 0 || c.StartPosition.Consumed > c.Samples:
		return fmt.Errorf("coordinator: config: StartPosition %v outside epochs of %d samples", c.StartPosition, c.Samples)
	}
	return nil
}

// Member is a worker as ring ordering sees it.
type Member struct {
	Name      string
	JoinIndex uint64 // order of admission; a re-join keeps its index (informational)
}

// RingOrder returns the members' names in ring order: by name, with runs of
// digits compared as numbers (worker-2 before worker-10). It depends only on
// the set of names, not on the order or the history of admissions, so the
// same workers form the same ring after any restart: with the reduction
// order fixed along the ring, a job resumed at the same world size repeats
// an uninterrupted run bit for bit. Survivors keep their relative order
// across generations.
func RingOrder(members []Member) []string {
	s := slices.Clone(members)
	slices.SortFunc(s, func(a, b Member) int { return naturalCompare(a.Name, b.Name) })
	names := make([]string, len(s))
	for i, m := range s {
		names[i] = m.Name
	}
	return names
}

// Generation is one configuration of the ring. Every worker in Ring must be
// told it; a worker acts only on the highest Number it has seen.
type Generation struct {
	Number uint64         // ≥ 1; strictly grows from one generation to the next
	Ring   []string       // ring order; a worker's rank is its index
	Ranks  map[string]int // name → index in Ring

	// ResumeStep is the step the ring continues from, Position the data
	// position at that step; each rank's samples are
	// AssignShard(ShardSpec{…, Position, World: len(Ring), Batch}, rank).
	ResumeStep int64
	Position   Position

	// Source is the member whose model state the ring starts from: the
	// survivor of the previous ring that reported the highest step (the
	// earliest in that ring's order on a tie). Members ahead of ResumeStep
	// drop their extra steps by loading Source's state. Source is empty for
	// the first generation (start from Config's start) and when no member of
	// the previous ring survives: the ring must then restore the last
	// committed checkpoint, and the driver replaces ResumeStep and Position
	// by the checkpoint's.
	Source string

	HeartbeatTicks int // how often each worker must heartbeat

	// Causes are why this generation was formed: the membership changes
	// since the previous generation (joins, re-joins, leaves, deaths,
	// broken rings), after CauseStart or CauseResume for the first
	// generation of a Coordinator. At most maxCauses are kept.
	Causes []Cause
}

// Cause is one reason for a new generation or a pause.
type Cause struct {
	Kind   string // one of the Cause* kinds
	Worker string // the worker concerned; empty for CauseStart and CauseResume
	Detail string // e.g. "6 ticks" of silence, or the broken generation; may be empty
}

// Kinds of Cause.
const (
	CauseStart  = "start"  // the job's first generation
	CauseResume = "resume" // the first generation of a coordinator that took over a job with earlier generations
	CauseJoin   = "join"   // a worker joined
	CauseRejoin = "rejoin" // a member joined again (its process restarted)
	CauseLeft   = "left"   // a member left on purpose
	CauseDead   = "dead"   // memberlist declared a member dead
	CauseSilent = "silent" // a member sent no heartbeat for DeadTicks
	CauseBroken = "broken" // a member found the ring's all-reduce broken
	CauseStuck  = "stuck"  // a member did not reach the ring within StuckTicks
)

// maxCauses bounds the causes of one generation: a job that waits while
// workers come and go keeps the first ones.
const maxCauses = 32

func (c Cause) String() string {
	s := c.Kind
	if c.Worker != "" {
		s += " " + c.Worker
	}
	if c.Detail != "" {
		s += " (" + c.Detail + ")"
	}
	return s
}

// Removal records a member that left the job.
type Removal struct {
	Name   string
	Reason string // "left", "dead" (memberlist), "silent for N ticks" or "stuck: …"
}

// StuckPrefix starts the Reason of a member evicted as stuck (StuckTicks).
const StuckPrefix = "stuck: "

// removalCause is the Cause of a removal with reason.
func removalCause(name, reason string) Cause {
	switch reason {
	case "left":
		return Cause{Kind: CauseLeft, Worker: name}
	case "dead":
		return Cause{Kind: CauseDead, Worker: name}
	}
	if d, ok := strings.CutPrefix(reason, StuckPrefix); ok {
		return Cause{Kind: CauseStuck, Worker: name, Detail: d}
	}
	return Cause{Kind: CauseSilent, Worker: name, Detail: strings.TrimPrefix(reason, "silent for ")}
}

// Ready is what the driver must do now, in this order: forget Removed
// members (a member declared silent-dead should also be evicted from
// memberlist), tell each worker in Pause to stop and wait, tell each worker
// in Generation.Ring the new generation, and publish Status. Generation and
// Pause are never both set.
type Ready struct {
	Removed    []Removal
	Pause      []string    // members of the stopped ring: below MinWorkers, the job waits
	Generation *Generation // a new ring to start; nil if none
	Status     string      // non-empty when the job's status changed, e.g. "waiting: 2 of min 3 workers"
	// PauseCauses, when the ring stops for lack of workers, are the
	// membership changes since the last generation that stopped it (the
	// next generation lists them again, with the changes that end the
	// pause).
	PauseCauses []Cause
}

// Empty reports whether r asks for nothing.
func (r Ready) Empty() bool {
	return len(r.Removed) == 0 && len(r.Pause) == 0 && r.Generation == nil && r.Status == "" && len(r.PauseCauses) == 0
}

// member is the coordinator's record of one worker.
type member struct {
	name      string
	joinIndex uint64
	lastHeard int64  // tick of the last Join or Heartbeat
	inRing    uint64 // first generation that included it since it (re)joined; 0 if none
	step      int64  // highest step reported in generation stepGen
	stepGen   uint64
	// reached is the last generation whose ring it reported reaching;
	// waitSince the tick since which it has been expected in a ring it has
	// not reached (-1: none; see StuckTicks).
	reached   uint64
	waitSince int64

	// held is whether the coordinator knows the model state this member's
	// process holds: heldStep's, at data position heldPos. It comes from
	// Prior before the first generation, and from each generation the
	// member took part in as it is replaced (see holding); a re-join (a
	// new process) forgets it.
	held     bool
	heldStep int64
	heldPos  Position
}

// naturalCompare orders strings with runs of ASCII digits compared by
// value, then by length (so "w01" and "w1" still differ), and the rest
// byte-wise.
func naturalCompare(a, b string) int {
	for a != "" && b != "" {
		da, db := digitRun(a), digitRun(b)
		if da > 0 && db > 0 {
			na, nb := strings.TrimLeft(a[:da], "0"), strings.TrimLeft(b[:db], "0")
			if c := cmp.Or(cmp.Compare(len(na), len(nb)), strings.Compare(na, nb), cmp.Compare(da, db)); c != 0 {
				return c
			}
			a, b = a[da:], b[db:]
			continue
		}
		if c := cmp.Compare(a[0], b[0]); c != 0 {
			return c
		}
		a, b = a[1:], b[1:]
	}
	return cmp.Compare(len(a), len(b))
}

func digitRun(s string) int {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return i
}

// Coordinator is the generation state machine. It is not safe for
// concurrent use: one driver goroutine owns it.
type Coordinator struct {
	cfg      Config
	now      int64 // ticks since New
	nextJoin uint64
	members  []*member          // alive members in admission order
	byName   map[string]*member // the same members by name

	gen     Generation // the last published generation; Number 0 before the first
	genAt   int64      // the tick gen was published
	running bool       // gen is running (not paused for lack of workers)

	pending      bool    // membership changed since gen was published
	pendingSince int64   // tick of the first such change
	forced       bool    // a re-join requires a new generation even if the set is unchanged
	causes       []Cause // the changes since gen was published, for the next generation

	out         Ready  // outputs not yet acknowledged by Advance
	shownStatus string // the status the driver last acknowledged
	given       Ready  // what the last Ready call returned
}

// New returns a coordinator with no members, waiting for MinWorkers joins.
func New(cfg Config) (*Coordinator, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	c := &Coordinator{cfg: cfg, nextJoin: 1, byName: map[string]*member{}}
	c.gen.Number = cfg.StartGeneration
	c.updateStatus()
	return c, nil
}

// Now returns the number of ticks since New.
func (c *Coordinator) Now() int64 { return c.now }

// Generation returns a copy of the last published generation (Number 0
// before the first) and whether it is running (false while paused).
func (c *Coordinator) Generation() (Generation, bool) {
	g := c.gen
	g.Ring, g.Ranks, g.Causes = slices.Clone(g.Ring), maps.Clone(g.Ranks), slices.Clone(g.Causes)
	return g, c.running
}

// Members returns the current members' names in admission order, including
// those not yet in a generation.
func (c *Coordinator) Members() []string {
	names := make([]string, len(c.members))
	for i, m := range c.members {
		names[i] = m.name
	}
	return names
}

// Join admits worker name. It fails, changing nothing, with ErrRefused if
// the name is empty or the token or job hash is wrong, and with ErrFull if
// MaxWorkers workers are members.
//
// A Join from a current member is a re-join: the process may have restarted
// and lost its state, so it is no longer a source of model state and a new
// generation follows even if the member set is unchanged. It keeps its place
// in the ring order.
func (c *Coordinator) Join(name, token, jobHash string) error {
	switch {
	case name == "" || strings.ContainsAny(name, " \t\r\n"):
		return fmt.Errorf("coordinator: join %q: %w: bad worker name", name, ErrRefused)
	case subtle.ConstantTimeCompare([]byte(token), []byte(c.cfg.JoinToken)) != 1:
		return fmt.Errorf("coordinator: join %s: %w: wrong join token", name, ErrRefused)
	case jobHash != c.cfg.JobHash:
		return fmt.Errorf("coordinator: join %s: %w: job hash %q, this job is %q", name, ErrRefused, jobHash, c.cfg.JobHash)
	}
	if m := c.find(name); m != nil {
		m.lastHeard = c.now
		m.inRing, m.step, m.stepGen, m.held = 0, 0, 0, false
		m.reached, m.waitSince = 0, -1
		c.forced = true
		c.addCause(Cause{Kind: CauseRejoin, Worker: name})
		c.changed()
		c.settle()
		return nil
	}
	if len(c.members) >= c.cfg.MaxWorkers {
		return fmt.Errorf("coordinator: join %s: %w: %d of max %d workers", name, ErrFull, len(c.members), c.cfg.MaxWorkers)
	}
	m := &member{name: name, joinIndex: c.nextJoin, lastHeard: c.now, waitSince: -1}
	c.members = append(c.members, m)
	c.byName[name] = m
	c.nextJoin++
	c.addCause(Cause{Kind: CauseJoin, Worker: name})
	c.changed()
	c.settle()
	return nil
}

// Leave removes member name, which left on purpose. Unknown names are
// ignored, so Leave and Dead may both report the same worker.
func (c *Coordinator) Leave(name string) {
	c.remove(name, "left")
	c.settle()
}

// Dead removes member name, which memberlist declared dead. Unknown names
// are ignored.
func (c *Coordinator) Dead(name string) {
	c.remove(name, "dead")
	c.settle()
}

// Heartbeat records that worker name is alive and, if generation is the
// current one and it is in its ring, has finished step. Steps reported in
// the current generation decide where the next generation resumes.
//
// It returns ErrNotMember (nothing recorded) for a non-member, such as a
// worker declared dead whose heartbeat arrives late, and
// ErrStaleGeneration (liveness recorded, step ignored) for a ring member
// naming an earlier generation. A member not yet in the ring is only kept
// alive. A generation not yet published is refused with an error, liveness
// recorded. A step lower than one the member already reported in this
// generation is refused with an error, liveness recorded.
func (c *Coordinator) Heartbeat(name string, generation uint64, step int64) error {
	m := c.find(name)
	if m == nil {
		return fmt.Errorf("coordinator: heartbeat from %s: %w (never joined, left or declared dead)", name, ErrNotMember)
	}
	m.lastHeard = c.now
	if _, ok := c.gen.Ranks[name]; !ok || m.inRing == 0 {
		return nil
	}
	if generation > c.gen.Number {
		return fmt.Errorf("coordinator: heartbeat from %s: generation %d not yet published (current is %d)", name, generation, c.gen.Number)
	}
	if generation < c.gen.Number {
		return fmt.Errorf("coordinator: heartbeat from %s: %w %d, current is %d", name, ErrStaleGeneration, generation, c.gen.Number)
	}
	if m.stepGen == generation && step < m.step {
		return fmt.Errorf("coordinator: heartbeat from %s: step %d after step %d in generation %d", name, step, m.step, generation)
	}
	if step < c.gen.ResumeStep {
		return fmt.Errorf("coordinator: heartbeat from %s: step %d before generation %d's resume step %d", name, step, generation, c.gen.ResumeStep)
	}
	m.step, m.stepGen = step, generation
	return nil
}

// Prior records that member name, which has just joined, holds the model
// state of generation gen at step, at data position pos: a worker that
// trained on while its coordinator lost leadership (etcd was unreachable,
// or the coordinator died) and joins the next leader. It counts only
// before this coordinator publishes its first generation, for gen equal to
// StartGeneration (the job's last generation, from etcd) and step at least
// StartStep (the last committed checkpoint): the first generation then
// resumes from the member with the highest such step (the earliest in ring
// order on a tie) as its Source, instead of restoring the checkpoint, so
// the progress made meanwhile is kept. Other calls are ignored.
//
// A claim that cannot be true is refused with an error (and ignored): pos
// must be where step-StartStep steps of Batch samples lead from
// StartPosition, and within the job's Epochs. A worker cannot make its
// state the ring's by claiming a step it never trained to.
func (c *Coordinator) Prior(name string, gen uint64, step int64, pos Position) error {
	m := c.find(name)
	if m == nil || len(c.gen.Ring) > 0 || gen == 0 || gen != c.cfg.StartGeneration || step < c.cfg.StartStep {
		return nil
	}
	n := c.cfg.Samples
	if pos.Epoch < 0 || pos.Consumed < 0 || pos.Consumed > n {
		return fmt.Errorf("coordinator: %s claims step %d at %v, outside epochs of %d samples", name, step, pos, n)
	}
	at := pos
	if at.Consumed == n { // the end of an epoch is the start of the next
		at = Position{Epoch: at.Epoch + 1}
	}
	if want := AdvancePosition(c.cfg.StartPosition, n, c.cfg.Batch, step-c.cfg.StartStep); at != want {
		return fmt.Errorf("coordinator: %s claims step %d at %v, but %d steps of %d samples from step %d at %v end at %v",
			name, step, pos, step-c.cfg.StartStep, c.cfg.Batch, c.cfg.StartStep, c.cfg.StartPosition, want)
	}
	if c.cfg.Epochs > 0 && (at.Epoch > c.cfg.Epochs || at.Epoch == c.cfg.Epochs && at.Consumed > 0) {
		return fmt.Errorf("coordinator: %s claims step %d at %v, past the job's %d epochs", name, step, pos, c.cfg.Epochs)
	}
	m.held, m.heldStep, m.heldPos = true, step, at
	return nil
}

// Restored tells the state machine that the current generation, which has
// no Source, starts from a committed checkpoint at step and pos rather than
// where the machine assumed: later heartbeats and the next generation's
// resume point count from there. It is ignored for a generation with a
// Source.
func (c *Coordinator) Restored(step int64, pos Position) {
	if c.gen.Number == 0 || c.gen.Source != "" {
		return
	}
	c.gen.ResumeStep, c.gen.Position = step, pos
	for _, m := range c.members {
		if m.stepGen == c.gen.Number {
			m.step, m.stepGen = 0, 0
		}
	}
}

// Broken records that ring member name found the ring of generation
// broken (a peer died or stalled, as the all-reduce saw it) before
// membership noticed anything. Like a membership change it opens the
// settling window, and the decision then publishes a new generation even if
// the members are unchanged; name stays a source of model state. Reports
// about an earlier generation, and from workers not in the running ring,
// are ignored: a newer generation already replaced that ring.
func (c *Coordinator) Broken(name string, generation uint64) {
	m := c.find(name)
	if m == nil || !c.running || generation != c.gen.Number || m.inRing == 0 {
		return
	}
	if _, ok := c.gen.Ranks[name]; !ok {
		return
	}
	m.lastHeard = c.now
	c.forced = true
	c.addCause(Cause{Kind: CauseBroken, Worker: name, Detail: fmt.Sprintf("generation %d", generation)})
	c.changed()
	c.settle()
}

// Reached records that ring member name has reached the ring of
// generation: it formed the ring and holds the generation's state, ready to
// train (see StuckTicks). A member that reports reaching the generation
// before the current one, published while it was on its way there, made
// progress: its clock restarts with the current generation, as if it had
// reached the one before in time. Reports about a generation not later
// than the last one it reached, or not yet published, or one it was not
// in, and from workers not in the current ring, are ignored.
func (c *Coordinator) Reached(name string, generation uint64) {
	m := c.find(name)
	if m == nil || generation == 0 || generation > c.gen.Number || generation <= m.reached ||
		m.inRing == 0 || generation < m.inRing {
		return
	}
	if _, ok := c.gen.Ranks[name]; !ok {
		return
	}
	m.lastHeard = c.now
	m.reached = generation
	switch {
	case generation == c.gen.Number:
		m.waitSince = -1
	case m.waitSince >= 0:
		m.waitSince = max(m.waitSince, c.genAt)
	}
}

// Tick advances time by one tick: members silent for DeadTicks are declared
// dead, members of the running ring that have not reached it for
// StuckTicks are evicted as stuck, and a settling window that has run out produces a new generation,
// or pauses the ring if fewer than MinWorkers remain.
func (c *Coordinator) Tick() {
	c.now++
	for i := 0; i < len(c.members); {
		if m := c.members[i]; c.now-m.lastHeard >= int64(c.cfg.DeadTicks) {
			c.remove(m.name, fmt.Sprintf("silent for %d ticks", c.now-m.lastHeard))
			continue // remove shifted the next member to i
		}
		if m := c.members[i]; c.stuck(m) {
			c.remove(m.name, fmt.Sprintf("%snot in the ring of generation %d after %d ticks", StuckPrefix, c.gen.Number, c.now-m.waitSince))
			continue
		}
		i++
	}
	c.settle()
}

// stuck reports whether m has been expected in a running ring it has not
// reached for StuckTicks.
func (c *Coordinator) stuck(m *member) bool {
	return c.cfg.StuckTicks > 0 && c.running && m.waitSince >= 0 && m.reached != c.gen.Number &&
		c.now-m.waitSince >= int64(c.cfg.StuckTicks)
}

// HasReady reports whether Ready has anything to do.
func (c *Coordinator) HasReady() bool { return !c.out.Empty() }

// Removal returns why member name was removed by output not yet
// acknowledged (Advance), if it was: what the caller has not applied yet.
func (c *Coordinator) Removal(name string) (reason string, ok bool) {
	for _, r := range c.out.Removed {
		if r.Name == name {
			return r.Reason, true
		}
	}
	return "", false
}

// Ready returns what the driver must do now (see Ready). It changes nothing:
// calling it again before Advance returns the same, plus any outputs of
// inputs given in between.
func (c *Coordinator) Ready() Ready {
	r := Ready{
		Removed:    slices.Clone(c.out.Removed),
		Pause:      slices.Clone(c.out.Pause),
		Generation: c.out.Generation,
		Status:     c.out.Status,
		// The causes are never changed in place: a copy is a snapshot.
		PauseCauses: slices.Clone(c.out.PauseCauses),
	}
	c.given = r
	return r
}

// Advance acknowledges the last Ready: the driver has acted on it. Outputs
// produced by inputs after that Ready stay for the next one; a Generation or
// Pause superseded meanwhile is not acknowledged by it.
func (c *Coordinator) Advance() {
	c.out.Removed = c.out.Removed[len(c.given.Removed):]
	if len(c.out.Removed) == 0 {
		c.out.Removed = nil
	}
	if c.given.Generation != nil && c.out.Generation == c.given.Generation {
		c.out.Generation = nil
	}
	if slices.Equal(c.out.Pause, c.given.Pause) {
		c.out.Pause = nil
	}
	if c.given.PauseCauses != nil && slices.Equal(c.out.PauseCauses, c.given.PauseCauses) {
		c.out.PauseCauses = nil
	}
	if c.given.Status != "" {
		c.shownStatus = c.given.Status
	}
	c.given = Ready{}
	c.updateStatus()
}

// find returns member name, or nil. It is a map lookup: a heartbeat from
// each of N workers costs O(N) in all, not O(N²).
func (c *Coordinator) find(name string) *member { return c.byName[name] }

func (c *Coordinator) remove(name, reason string) {
	i := slices.IndexFunc(c.members, func(m *member) bool { return m.name == name })
	if i < 0 {
		return
	}
	c.members = slices.Delete(c.members, i, i+1)
	delete(c.byName, name)
	if j := slices.Index(c.out.Pause, name); j >= 0 {
		c.out.Pause = slices.Delete(slices.Clone(c.out.Pause), j, j+1)
		if len(c.out.Pause) == 0 {
			c.out.Pause = nil
		}
	}
	c.out.Removed = append(c.out.Removed, Removal{Name: name, Reason: reason})
	c.addCause(removalCause(name, reason))
	c.changed()
}

// addCause notes why the next generation will be formed. A ring reported
// broken by several members, or by one several times, is one cause each.
func (c *Coordinator) addCause(k Cause) {
	if len(c.causes) >= maxCauses || (k.Kind == CauseBroken && slices.Contains(c.causes, k)) {
		return
	}
	c.causes = append(c.causes, k)
}

// changed notes a membership change: it opens the settling window if none
// is open.
func (c *Coordinator) changed() {
	if !c.pending {
		c.pending, c.pendingSince = true, c.now
	}
}

// settle ends every input: it decides if the settling window has run out
// (at once when SettleTicks is 0), so one input publishes at most one
// generation, and refreshes the status.
func (c *Coordinator) settle() {
	if c.pending && c.now-c.pendingSince >= int64(c.cfg.SettleTicks) {
		c.decide()
	}
	c.updateStatus()
}

// decide closes the settling window: it publishes a new generation for the
// current members, pauses the ring if they are too few, or does nothing if
// the ring is running with exactly these members already.
func (c *Coordinator) decide() {
	c.pending = false
	if len(c.members) < c.cfg.MinWorkers {
		if c.running {
			c.running = false
			for _, m := range c.members {
				m.waitSince = -1 // no ring to reach while paused
			}
			var pause []string
			for _, name := range c.gen.Ring {
				if m := c.find(name); m != nil && m.inRing != 0 {
					pause = append(pause, name)
				}
			}
			if g := c.out.Generation; g != nil {
				// A generation no worker was told of: its causes are
				// the next one's.
				c.causes = append(slices.Clone(g.Causes), c.causes...)
				c.out.Generation = nil
			}
			c.out.Pause = pause
			c.out.PauseCauses = slices.Clone(c.causes)
		}
		return
	}
	if c.running && !c.forced && len(c.members) == len(c.gen.Ring) && c.allInRing() {
		c.causes = nil // the changes cancelled out
		return
	}
	c.forced = false
	c.publish()
}

// allInRing reports whether every member has been in the ring continuously
// since it was published.
func (c *Coordinator) allInRing() bool {
	for _, m := range c.members {
		if _, ok := c.gen.Ranks[m.name]; !ok || m.inRing == 0 {
			return false
		}
	}
	return true
}

// publish makes the current members the next generation.
func (c *Coordinator) publish() {
	resume, pos, source := c.cfg.StartStep, c.cfg.StartPosition, ""
	causes := c.causes
	if g := c.out.Generation; g != nil {
		// It supersedes a generation no worker was told of yet.
		causes = append(slices.Clone(g.Causes), causes...)
	}
	if len(c.gen.Ring) == 0 {
		first := CauseStart
		if c.cfg.StartGeneration > 0 {
			first = CauseResume
		}
		causes = append([]Cause{{Kind: first}}, causes...)
	}
	c.causes = nil
	// The source: the member whose process holds the furthest known
	// state (the earliest in ring order on a tie). Before this
	// coordinator's first generation that is what members held when they
	// joined (Prior); later, what each took from the generation being
	// replaced (holding). A member that holds nothing known, such as a
	// restarted process put in a ring that never formed, is never the
	// source: with no holder, the ring restores the last checkpoint.
	if len(c.gen.Ring) > 0 {
		resume, pos = c.gen.ResumeStep, c.gen.Position
		for _, m := range c.members {
			c.holding(m)
		}
	}
	names := make([]Member, 0, len(c.members))
	for _, m := range c.members {
		names = append(names, Member{Name: m.name})
	}
	// Only a state at or past the resume point counts: an older one would
	// roll the job back further than the last checkpoint may.
	base := resume
	for _, name := range RingOrder(names) {
		if m := c.find(name); m.held && m.heldStep >= base && (source == "" || m.heldStep > resume) {
			resume, pos, source = m.heldStep, m.heldPos, name
		}
	}
	ms := make([]Member, len(c.members))
	for i, m := range c.members {
		ms[i] = Member{Name: m.name, JoinIndex: m.joinIndex}
	}
	ring := RingOrder(ms)
	ranks := make(map[string]int, len(ring))
	for i, name := range ring {
		ranks[name] = i
	}
	c.genAt = c.now
	c.gen = Generation{
		Number:         c.gen.Number + 1,
		Ring:           ring,
		Ranks:          ranks,
		ResumeStep:     resume,
		Position:       pos,
		Source:         source,
		HeartbeatTicks: c.cfg.HeartbeatTicks,
		Causes:         causes,
	}
	for _, m := range c.members {
		if m.inRing == 0 {
			m.inRing = c.gen.Number
		}
		if m.waitSince < 0 {
			// It reached the ring before this one, or was in none: its
			// clock starts now. A member that did not keeps its own.
			m.waitSince = c.now
		}
	}
	c.running = true
	g := c.gen
	g.Ring, g.Ranks, g.Causes = slices.Clone(ring), maps.Clone(ranks), slices.Clone(causes)
	c.out.Generation = &g
	c.out.Pause, c.out.PauseCauses = nil, nil
}

// holding records in m what its process holds once the current generation
// is replaced: the last step it reported in this generation (a heartbeat
// at or past the resume step: trained here, or held from before and not
// yet replaced by the ring's state); else this generation's resume state,
// if it reached the ring (it restored or received that state); else what
// it held before, unchanged.
func (c *Coordinator) holding(m *member) {
	step := int64(-1)
	switch {
	case m.stepGen == c.gen.Number && m.inRing != 0 && m.step >= c.gen.ResumeStep:
		step = m.step
	case m.reached == c.gen.Number:
		step = c.gen.ResumeStep
	}
	if step < 0 {
		return
	}
	m.held, m.heldStep = true, step
	m.heldPos = AdvancePosition(c.gen.Position, c.cfg.Samples, c.cfg.Batch, step-c.gen.ResumeStep)
}

// status describes the job now.
func (c *Coordinator) status() string {
	n := len(c.members)
	switch {
	case n < c.cfg.MinWorkers:
		return fmt.Sprintf("waiting: %d of min %d workers", n, c.cfg.MinWorkers)
	case c.pending:
		return fmt.Sprintf("settling: %d workers, next generation at tick %d", n, c.pendingSince+int64(c.cfg.SettleTicks))
	case c.running:
		return fmt.Sprintf("running: generation %d, %d workers", c.gen.Number, len(c.gen.Ring))
	}
	return fmt.Sprintf("idle: %d workers", n)
}

// updateStatus puts the status in the outputs if it differs from the one
// the driver last acknowledged.
func (c *Coordinator) updateStatus() {
	c.out.Status = ""
	if s := c.status(); s != c.shownStatus {
		c.out.Status = s
	}
}
