package coordinator

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/ringtrain/ringtrain/dataset"
)

var update = flag.Bool("update", false, "rewrite the expected output of testdata/*.txt transcripts")

// A transcript is a sequence of blocks:
//
//	# comment
//	command arg key=value …
//	----
//	expected output lines
//	(blank line)
//
// Commands:
//
//	new key=value …          a new Coordinator (min max token hash heartbeat dead settle stuck samples batch epochs seed shuffle start-step start-epoch start-consumed start-gen)
//	join [NAME] [token=T] [hash=H]   defaults: the configured token and hash
//	leave NAME | dead NAME
//	heartbeat NAME gen=G step=S
//	broken NAME gen=G        NAME's all-reduce found the ring of generation G broken
//	reached NAME gen=G       NAME reached the ring of generation G
//	prior NAME gen=G step=S epoch=E consumed=C   NAME joined holding generation G's state at step S
//	restored step=S epoch=E consumed=C   the current generation starts from a checkpoint there
//	progress step=S          every member of the current ring reaches it and heartbeats the current generation at step S
//	tick [N]                 N ticks (default 1); prints the time
//	ready                    prints Ready, then Advance
//	shards                   the current generation's shards, checked to cover the rest of the epoch once
//	members                  the current members, in admission order
type transcript struct {
	t       *testing.T
	c       *Coordinator
	cfg     Config
	seed    uint64
	shuffle bool
}

func TestTranscripts(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no transcripts in testdata")
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txt"), func(t *testing.T) {
			runTranscript(t, file)
		})
	}
}

type block struct {
	pre      []string // comment and blank lines before the command
	cmd      string
	expected []string
}

func parseTranscript(t *testing.T, file string) []block {
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var blocks []block
	var pre []string
	sc := bufio.NewScanner(f)
	line := 0
	for sc.Scan() {
		line++
		text := sc.Text()
		if strings.TrimSpace(text) == "" || strings.HasPrefix(text, "#") {
			pre = append(pre, text)
			continue
		}
		b := block{pre: pre, cmd: text}
		pre = nil
		if !sc.Scan() || sc.Text() != "----" {
			t.Fatalf("%s:%d: command %q not followed by ----", file, line, text)
		}
		line++
		for sc.Scan() {
			line++
			if sc.Text() == "" {
				break
			}
			b.expected = append(b.expected, sc.Text())
		}
		blocks = append(blocks, b)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return blocks
}

func runTranscript(t *testing.T, file string) {
	blocks := parseTranscript(t, file)
	tr := &transcript{t: t}
	var out strings.Builder
	for i, b := range blocks {
		got := tr.run(b.cmd)
		if *update {
			for _, p := range b.pre {
				out.WriteString(p + "\n")
			}
			out.WriteString(b.cmd + "\n----\n")
			for _, g := range got {
				out.WriteString(g + "\n")
			}
			if i < len(blocks)-1 {
				out.WriteString("\n")
			}
			continue
		}
		if !slices.Equal(got, b.expected) {
			t.Errorf("%s: %s\ngot:\n%s\nwant:\n%s", file, b.cmd, strings.Join(got, "\n"), strings.Join(b.expected, "\n"))
		}
	}
	if *update {
		if err := os.WriteFile(file, []byte(out.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func (tr *transcript) run(cmd string) []string {
	fields := strings.Fields(cmd)
	name, args := fields[0], fields[1:]
	pos := []string{}
	kv := map[string]string{}
	for _, a := range args {
		if k, v, ok := strings.Cut(a, "="); ok {
			kv[k] = v
		} else {
			pos = append(pos, a)
		}
	}
	num := func(k string, def int64) int64 {
		v, ok := kv[k]
		if !ok {
			return def
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			tr.t.Fatalf("%s: %s=%q: %v", cmd, k, v, err)
		}
		return n
	}
	arg := func(i int) string {
		if i >= len(pos) {
			tr.t.Fatalf("%s: missing argument %d", cmd, i+1)
		}
		return pos[i]
	}
	if name != "new" && tr.c == nil {
		tr.t.Fatalf("%s: no coordinator yet (start with new)", cmd)
	}
	errOut := func(err error) []string {
		if err != nil {
			return []string{"error: " + err.Error()}
		}
		return []string{"ok"}
	}
	switch name {
	case "new":
		tr.cfg = Config{
			MinWorkers: int(num("min", 2)), MaxWorkers: int(num("max", 4)),
			JoinToken: "secret", JobHash: "job1",
			HeartbeatTicks: int(num("heartbeat", 1)), DeadTicks: int(num("dead", 5)), SettleTicks: int(num("settle", 0)),
			StuckTicks: int(num("stuck", 0)),
			Samples:    int(num("samples", 100)), Batch: int(num("batch", 4)), Epochs: int(num("epochs", 0)),
			StartStep:       num("start-step", 0),
			StartPosition:   Position{Epoch: int(num("start-epoch", 0)), Consumed: int(num("start-consumed", 0))},
			StartGeneration: uint64(num("start-gen", 0)),
		}
		if v, ok := kv["token"]; ok {
			tr.cfg.JoinToken = v
		}
		if v, ok := kv["hash"]; ok {
			tr.cfg.JobHash = v
		}
		tr.seed, tr.shuffle = uint64(num("seed", 1)), kv["shuffle"] != "false"
		c, err := New(tr.cfg)
		if err != nil {
			return errOut(err)
		}
		tr.c = c
		return []string{"ok"}
	case "join":
		token, hash := tr.cfg.JoinToken, tr.cfg.JobHash
		if v, ok := kv["token"]; ok {
			token = v
		}
		if v, ok := kv["hash"]; ok {
			hash = v
		}
		name := "" // a join with no name tests the refusal of empty names
		if len(pos) > 0 {
			name = pos[0]
		}
		return errOut(tr.c.Join(name, token, hash))
	case "leave":
		tr.c.Leave(arg(0))
		return []string{"ok"}
	case "dead":
		tr.c.Dead(arg(0))
		return []string{"ok"}
	case "prior":
		return errOut(tr.c.Prior(arg(0), uint64(num("gen", 0)), num("step", 0), Position{Epoch: int(num("epoch", 0)), Consumed: int(num("consumed", 0))}))
	case "restored":
		tr.c.Restored(num("step", 0), Position{Epoch: int(num("epoch", 0)), Consumed: int(num("consumed", 0))})
		return []string{"ok"}
	case "broken":
		tr.c.Broken(arg(0), uint64(num("gen", 0)))
		return []string{"ok"}
	case "reached":
		tr.c.Reached(arg(0), uint64(num("gen", 0)))
		return []string{"ok"}
	case "heartbeat":
		return errOut(tr.c.Heartbeat(arg(0), uint64(num("gen", 0)), num("step", 0)))
	case "progress":
		g, _ := tr.c.Generation()
		var lines []string
		for _, w := range g.Ring {
			tr.c.Reached(w, g.Number)
			if err := tr.c.Heartbeat(w, g.Number, num("step", 0)); err != nil {
				lines = append(lines, "error: "+err.Error())
			}
		}
		if lines == nil {
			return []string{"ok"}
		}
		return lines
	case "tick":
		n := int64(1)
		if len(pos) > 0 {
			var err error
			if n, err = strconv.ParseInt(pos[0], 10, 64); err != nil {
				tr.t.Fatalf("%s: %v", cmd, err)
			}
		}
		for range n {
			tr.c.Tick()
		}
		return []string{fmt.Sprintf("now %d", tr.c.Now())}
	case "ready":
		rd := tr.c.Ready()
		lines := formatReady(tr.t, rd)
		tr.c.Advance()
		if tr.c.HasReady() {
			tr.t.Errorf("%s: Ready not empty after Advance: %+v", cmd, tr.c.Ready())
		}
		return lines
	case "shards":
		return tr.shards()
	case "members":
		if len(tr.c.Members()) == 0 {
			return []string{"(none)"}
		}
		return []string{strings.Join(tr.c.Members(), " ")}
	}
	tr.t.Fatalf("unknown command %q", cmd)
	return nil
}

func formatReady(t *testing.T, rd Ready) []string {
	var lines []string
	for _, r := range rd.Removed {
		lines = append(lines, fmt.Sprintf("removed %s (%s)", r.Name, r.Reason))
	}
	if len(rd.Pause) > 0 {
		lines = append(lines, "pause "+strings.Join(rd.Pause, " "))
	}
	if g := rd.Generation; g != nil {
		if len(g.Ranks) != len(g.Ring) {
			t.Errorf("generation %d: %d ranks for a ring of %d", g.Number, len(g.Ranks), len(g.Ring))
		}
		for i, w := range g.Ring {
			if r, ok := g.Ranks[w]; !ok || r != i {
				t.Errorf("generation %d: rank of %s is %d, %v; ring index %d", g.Number, w, r, ok, i)
			}
		}
		src := g.Source
		if src == "" {
			src = "-"
		}
		lines = append(lines, fmt.Sprintf("generation %d: ring %s; resume step %d at %v; source %s",
			g.Number, strings.Join(g.Ring, " "), g.ResumeStep, g.Position, src))
	}
	if rd.Status != "" {
		lines = append(lines, "status: "+rd.Status)
	}
	if lines == nil {
		lines = []string{"(nothing)"}
	}
	return lines
}

// shards prints each rank's shard of the current generation and checks
// that, with the consumed prefix, they cover the epoch's order exactly once.
func (tr *transcript) shards() []string {
	g, running := tr.c.Generation()
	if g.Number == 0 || !running {
		return []string{"no running generation"}
	}
	spec := ShardSpec{Samples: tr.cfg.Samples, Seed: tr.seed, Shuffle: tr.shuffle, Position: g.Position, World: len(g.Ring), Batch: tr.cfg.Batch}
	order, err := dataset.EpochOrder(spec)
	if err != nil {
		tr.t.Fatal(err)
	}
	shards, err := dataset.AssignShards(spec)
	if err != nil {
		tr.t.Fatal(err)
	}
	seen := make([]int, tr.cfg.Samples)
	for _, s := range order[:g.Position.Consumed] {
		seen[s]++
	}
	lines := []string{fmt.Sprintf("%v: %d remaining", g.Position, tr.cfg.Samples-g.Position.Consumed)}
	for r, sh := range shards {
		for _, s := range sh {
			seen[s]++
		}
		head := sh[:min(len(sh), 4)]
		lines = append(lines, fmt.Sprintf("rank %d %s: %d samples, first %v", r, g.Ring[r], len(sh), head))
	}
	for s, k := range seen {
		if k != 1 {
			tr.t.Errorf("generation %d: sample %d covered %d times", g.Number, s, k)
		}
	}
	return lines
}
