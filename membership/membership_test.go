package membership

import (
	"slices"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func start(t *testing.T, name, secret string) *Member {
	t.Helper()
	m, err := Start(Config{Name: name, Bind: "127.0.0.1:0", Secret: secret, Meta: []byte("role=" + name)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Shutdown() })
	return m
}

// seen keeps every event a member delivered, so that waiting for one event
// does not throw away another that gossip happened to deliver first (two
// joins handled on separate connections may surface in either order).
type seen struct {
	m    *Member
	past []Event
}

// waitFor returns the first event, past or future, that matches, failing
// after a hang-catching timeout. A matched event is consumed.
func (s *seen) waitFor(t *testing.T, name string, kind EventKind) Event {
	t.Helper()
	match := func(ev Event) bool { return ev.Name == name && ev.Kind == kind }
	if i := slices.IndexFunc(s.past, match); i >= 0 {
		ev := s.past[i]
		s.past = slices.Delete(s.past, i, i+1)
		return ev
	}
	deadline := time.After(20 * time.Second)
	for {
		select {
		case ev := <-s.m.Events():
			if match(ev) {
				return ev
			}
			s.past = append(s.past, ev)
		case <-deadline:
			t.Fatalf("no %s event for %s (others seen: %+v)", kind, name, s.past)
		}
	}
}

func TestJoinLeaveDead(t *testing.T) {
	a := start(t, "coordinator", "token")
	b := start(t, "worker-0", "token")
	c := start(t, "worker-1", "token")
	if err := b.Join([]string{a.Addr()}); err != nil {
		t.Fatal(err)
	}
	if err := c.Join([]string{a.Addr()}); err != nil {
		t.Fatal(err)
	}
	events := &seen{m: a}
	ev := events.waitFor(t, "worker-0", Joined)
	if string(ev.Meta) != "role=worker-0" || ev.Addr != b.Addr() {
		t.Errorf("join event %+v, want meta role=worker-0 at %s", ev, b.Addr())
	}
	events.waitFor(t, "worker-1", Joined)
	alive := a.Alive()
	slices.Sort(alive)
	if !slices.Equal(alive, []string{"coordinator", "worker-0", "worker-1"}) {
		t.Errorf("alive = %v", alive)
	}

	if err := b.Leave(time.Second); err != nil {
		t.Fatal(err)
	}
	events.waitFor(t, "worker-0", Gone)

	// A member that vanishes without a word is declared dead.
	if err := c.Shutdown(); err != nil {
		t.Fatal(err)
	}
	events.waitFor(t, "worker-1", Gone)
}

func TestSecretKeepsOtherJobsOut(t *testing.T) {
	a := start(t, "coordinator", "token-a")
	b := start(t, "worker-0", "token-b")
	if err := b.Join([]string{a.Addr()}); err == nil {
		t.Fatal("a member with another secret joined")
	}
	if got := a.Alive(); !slices.Equal(got, []string{"coordinator"}) {
		t.Errorf("alive = %v, want only the coordinator", got)
	}
}

func TestBadConfig(t *testing.T) {
	for _, cfg := range []Config{
		{Name: "x", Bind: "nonsense"},
		{Name: "x", Bind: "127.0.0.1:99999"},
		{Name: "", Bind: "127.0.0.1:0"},
	} {
		if m, err := Start(cfg); err == nil {
			m.Shutdown()
			t.Errorf("Start(%+v) succeeded", cfg)
		}
	}
}
