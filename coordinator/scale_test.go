package coordinator

import (
	"fmt"
	"testing"
)

// scaleConfig is a job of n workers, 100 ms ticks: heartbeats every second,
// dead after 5 s of silence, changes settled for 500 ms.
func scaleConfig(n int) Config {
	return Config{
		MinWorkers: n * 9 / 10, MaxWorkers: n, JoinToken: "secret", JobHash: "job1",
		HeartbeatTicks: 10, DeadTicks: 50, SettleTicks: 5, Samples: 1281167, Batch: 1024,
	}
}

// scaleCluster drives a coordinator with n workers that heartbeat on
// time, each reporting the ring it is in reached and its step.
type scaleCluster struct {
	t      testing.TB
	c      *Coordinator
	alive  map[string]bool
	gens   []Generation // published, in order
	joined int
}

func newScaleCluster(t testing.TB, n int) *scaleCluster {
	c, err := New(scaleConfig(n))
	if err != nil {
		t.Fatal(err)
	}
	s := &scaleCluster{t: t, c: c, alive: map[string]bool{}}
	for range n {
		s.join()
	}
	return s
}

func (s *scaleCluster) join() string {
	s.joined++
	name := fmt.Sprintf("w%d", s.joined)
	if err := s.c.Join(name, "secret", "job1"); err != nil {
		s.t.Fatal(err)
	}
	s.alive[name] = true
	s.drain()
	return name
}

// drain takes the coordinator's outputs, as its driver would.
func (s *scaleCluster) drain() {
	if !s.c.HasReady() {
		return
	}
	r := s.c.Ready()
	if r.Generation != nil {
		s.gens = append(s.gens, *r.Generation)
		for _, name := range r.Generation.Ring {
			s.c.Reached(name, r.Generation.Number)
		}
	}
	s.c.Advance()
}

// tick advances one tick; every live worker heartbeats when it is due.
func (s *scaleCluster) tick() {
	s.c.Tick()
	s.drain()
	if s.c.Now()%int64(s.c.cfg.HeartbeatTicks) != 0 {
		return
	}
	g, _ := s.c.Generation()
	for name := range s.alive {
		if err := s.c.Heartbeat(name, g.Number, g.ResumeStep); err != nil && g.Number > 0 {
			if _, in := g.Ranks[name]; in {
				s.t.Fatalf("heartbeat of %s: %v", name, err)
			}
		}
	}
	s.drain()
}

// A thousand workers form one ring; a death memberlist reports is a new
// ring of the survivors within the settling window, one found by silence
// within the dead time after its last heartbeat; and churn of 1% a minute
// for ten minutes gives one generation per change, every member in it.
func TestThousandWorkers(t *testing.T) {
	const n = 1000
	s := newScaleCluster(t, n)
	for len(s.gens) == 0 && s.c.Now() < 100 {
		s.tick()
	}
	if len(s.gens) != 1 || len(s.gens[0].Ring) != n {
		t.Fatalf("after %d ticks: %d generations, the first of %d", s.c.Now(), len(s.gens), len(s.gens[0].Ring))
	}
	formedBy := func(want int, within int64) int64 {
		start, before := s.c.Now(), len(s.gens)
		for len(s.gens) == before && s.c.Now()-start <= within {
			s.tick()
		}
		if len(s.gens) != before+1 || len(s.gens[before].Ring) != want {
			t.Fatalf("no generation of %d within %d ticks (%d generations)", want, within, len(s.gens)-before)
		}
		return s.c.Now() - start
	}
	// memberlist declares a death.
	delete(s.alive, "w17")
	s.c.Dead("w17")
	s.drain()
	if d := formedBy(n-1, 5); d > 5 {
		t.Fatalf("a declared death formed its generation in %d ticks", d)
	}
	// A silent worker.
	delete(s.alive, "w500")
	if d := formedBy(n-2, 50+10+5); d > 50+10+5 {
		t.Fatalf("a silent worker's generation took %d ticks", d)
	}
	// Churn: 10 leave and 10 join each minute (600 ticks), in a burst
	// that the settling window gathers into one generation.
	for minute := range 10 {
		for k := range 10 {
			name := fmt.Sprintf("w%d", 20+minute*10+k)
			delete(s.alive, name)
			s.c.Leave(name)
			s.drain()
			s.join()
		}
		gens := len(s.gens)
		for range 600 {
			s.tick()
		}
		if len(s.gens) != gens+1 {
			t.Fatalf("minute %d: %d generations for one burst of changes", minute, len(s.gens)-gens)
		}
		last := s.gens[len(s.gens)-1]
		if len(last.Ring) != len(s.alive) {
			t.Fatalf("minute %d: a ring of %d, %d alive", minute, len(last.Ring), len(s.alive))
		}
		for _, name := range last.Ring {
			if !s.alive[name] {
				t.Fatalf("minute %d: %s in the ring, not alive", minute, name)
			}
		}
	}
}

// BenchmarkHeartbeat times one heartbeat of a running ring's member at
// several ring sizes: flat in N (a member is found by name in a map).
func BenchmarkHeartbeat(b *testing.B) {
	for _, n := range []int{10, 100, 1000, 10000} {
		b.Run(fmt.Sprintf("workers=%d", n), func(b *testing.B) {
			s := newScaleCluster(b, n)
			for len(s.gens) == 0 {
				s.tick()
			}
			g, _ := s.c.Generation()
			names := g.Ring
			i := 0
			for b.Loop() {
				if err := s.c.Heartbeat(names[i%n], g.Number, g.ResumeStep); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// BenchmarkGeneration times forming a generation after a death at several
// ring sizes.
func BenchmarkGeneration(b *testing.B) {
	for _, n := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprintf("workers=%d", n), func(b *testing.B) {
			s := newScaleCluster(b, n)
			for len(s.gens) == 0 {
				s.tick()
			}
			for b.Loop() {
				b.StopTimer()
				victim := s.gens[len(s.gens)-1].Ring[0]
				delete(s.alive, victim)
				b.StartTimer()
				s.c.Dead(victim)
				for range 5 {
					s.c.Tick()
				}
				s.drain()
				b.StopTimer()
				s.join()
				for range 5 {
					s.c.Tick()
				}
				s.drain()
				b.StartTimer()
			}
		})
	}
}
