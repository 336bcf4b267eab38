package worker

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ringtrain/ringtrain/api"
)

var updateLifecycle = flag.Bool("update", false, "rewrite the expected output of testdata/lifecycle/*.txt transcripts")

// Lifecycle transcripts (testdata/lifecycle/*.txt) are blocks of
//
//	# comment
//	command args
//	----
//	expected output: what Ready asks, then the phase
//	(blank line)
//
// for a worker named w1. Commands, each followed by Ready and Advance:
//
//	joined
//	reply [gen=N ring=a,b] [paused] [stop] [status=WORD]
//	reply-json {...}        a reply as the coordinator's JSON
//	ended ok|ring|fatal
//	stopped
//	advance                 Advance alone (prints what Ready asks after it)
func TestLifecycleTranscripts(t *testing.T) {
	files, err := filepath.Glob("testdata/lifecycle/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no transcripts: %v", err)
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txt"), func(t *testing.T) {
			b, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			l := newLifecycle("w1")
			var out strings.Builder
			blocks := strings.Split(strings.TrimSpace(string(b)), "\n\n")
			for _, block := range blocks {
				lines := strings.Split(block, "\n")
				k := 0
				for k < len(lines) && strings.HasPrefix(lines[k], "#") {
					out.WriteString(lines[k] + "\n")
					k++
				}
				if k == len(lines) {
					out.WriteString("\n")
					continue
				}
				cmd := lines[k]
				got := runLifecycleCommand(t, l, cmd)
				want := ""
				if k+2 <= len(lines) {
					want = strings.Join(lines[k+2:], "\n")
				}
				if !*updateLifecycle && got != want {
					t.Errorf("%s: %s\ngot:\n%s\nwant:\n%s", file, cmd, got, want)
				}
				out.WriteString(cmd + "\n----\n" + got + "\n\n")
			}
			if *updateLifecycle {
				if err := os.WriteFile(file, []byte(strings.TrimRight(out.String(), "\n")+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

func runLifecycleCommand(t *testing.T, l *lifecycle, cmd string) string {
	f := strings.Fields(cmd)
	switch f[0] {
	case "joined":
		l.Joined()
	case "reply":
		rep := &api.HeartbeatReply{}
		for _, a := range f[1:] {
			k, v, _ := strings.Cut(a, "=")
			switch k {
			case "gen":
				n, err := strconv.ParseUint(v, 10, 64)
				if err != nil {
					t.Fatalf("%s: %v", cmd, err)
				}
				if rep.Generation == nil {
					rep.Generation = &api.Generation{}
				}
				rep.Generation.Number = n
			case "ring":
				if rep.Generation == nil {
					rep.Generation = &api.Generation{}
				}
				for _, name := range strings.Split(v, ",") {
					rep.Generation.Ring = append(rep.Generation.Ring, api.Peer{Name: name, DataAddr: name + ":7080"})
				}
			case "paused":
				rep.Paused = true
			case "stop":
				rep.Stop = true
			case "status":
				rep.Status = v
			default:
				t.Fatalf("%s: unknown argument %s", cmd, a)
			}
		}
		l.Reply(rep)
	case "reply-json":
		rep := &api.HeartbeatReply{}
		if err := json.Unmarshal([]byte(strings.TrimPrefix(cmd, "reply-json ")), rep); err != nil {
			t.Fatalf("%s: %v", cmd, err)
		}
		l.Reply(rep)
	case "ended":
		switch f[1] {
		case "ok":
			l.Ended(nil)
		case "ring":
			l.Ended(ringError("all-reduce of step 7", errors.New("rank 1: link closed")))
		case "fatal":
			l.Ended(fatal(errors.New("replica diverged")))
		}
	case "stopped":
		l.Stopped(errors.New("interrupt"))
	case "advance":
	default:
		t.Fatalf("unknown command %q", cmd)
	}
	rd := l.Ready()
	var lines []string
	for _, s := range rd.Logs {
		lines = append(lines, "log "+s)
	}
	if p := rd.Progress; p != nil {
		lines = append(lines, fmt.Sprintf("progress done=%v broken=%v", p.Done, p.Broken))
	}
	if rd.Beat {
		lines = append(lines, "beat")
	}
	switch {
	case rd.Exit && rd.Err != nil:
		lines = append(lines, "exit: "+rd.Err.Error())
	case rd.Exit:
		lines = append(lines, "exit")
	case rd.Leave:
		lines = append(lines, "leave")
	case rd.Train != nil:
		lines = append(lines, fmt.Sprintf("train generation %d", rd.Train.Number))
	}
	if !rd.Exit {
		l.Advance()
	}
	lines = append(lines, "phase "+l.phase.String())
	return strings.Join(lines, "\n")
}
