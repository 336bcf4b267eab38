// Package repro reproduces the experiments of LeCun's "Deep Learning"
// talk, each as one named, seeded experiment (`ringtrain repro NAME`) that
// runs on one machine in minutes on real MNIST (or data it generates) and
// writes a report: the paper's figure beside ours, with a verdict, the
// wall time, the command and the figures.
//
// An experiment is an ordinary client of the engine: plain supervised
// training runs as a job (TrainJob: the same engine, checkpoints and
// --workers as `ringtrain train`); the others drive models and tensorcore
// directly. Every experiment has a quick form (Env.Quick) that exercises
// its machinery in seconds and checks nothing about the final number: the
// tests run that form, the full runs' numbers live in docs/REPRODUCTIONS.md.
package repro

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Experiment is one reproduction.
type Experiment struct {
	// Name is what `ringtrain repro NAME` takes: lower case, dashes.
	Name string
	// Title says what is reproduced, in a line.
	Title string
	// Paper cites the source of the figures reproduced.
	Paper string
	// Run performs the experiment in env and returns its claims, figures
	// and notes. It writes only under env.Dir.
	Run func(ctx context.Context, env *Env) (*Result, error)
}

// Env is what an experiment runs with.
type Env struct {
	// Dir is the experiment's output directory (it exists): figures,
	// training runs and the report go here.
	Dir string
	// Quick asks for the shortened form: the same code paths on a sliver
	// of the data and steps, in seconds. Its numbers mean nothing.
	Quick bool
	// Seed seeds every random choice of the experiment.
	Seed uint64
	// Workers is the number of data-parallel workers for experiments that
	// are plain supervised training (1: a single process); others ignore it.
	Workers int
	// Threads is the number of compute threads (0: all cores).
	Threads int
	// DataDir is where the data sets' files live ("": the ringtrain cache).
	DataDir string
	// Executable is the ringtrain binary that worker processes run when
	// Workers > 1 ("": this process's executable).
	Executable string
	// Logf prints one-line notices; never nil inside Run.
	Logf func(format string, args ...any)
	// Progress, when not nil, is told the fraction of the experiment done
	// (0 to 1), from the goroutine that runs it.
	Progress func(fraction float64)
}

// progress reports f, clamped to [0, 1], if anyone listens.
func (e *Env) progress(f float64) {
	if e.Progress != nil {
		e.Progress(min(max(f, 0), 1))
	}
}

// Claim is one figure of the paper held against ours.
type Claim struct {
	// What is measured, e.g. "test error after 10 epochs, 784-300-100-10".
	What string `json:"what"`
	// Paper is the paper's figure as it states it, e.g. "3.05%".
	Paper string `json:"paper"`
	// Target is the bar ours must clear, e.g. "≤ 3.05%".
	Target string `json:"target"`
	// Ours is our figure, formatted, e.g. "2.41%".
	Ours string `json:"ours"`
	// Pass reports whether ours clears Target.
	Pass bool `json:"pass"`
	// Stretch marks a claim beyond the experiment's bar: reported, not
	// part of the verdict.
	Stretch bool `json:"stretch,omitempty"`
}

// Figure is an image the experiment wrote under Env.Dir.
type Figure struct {
	File    string `json:"file"` // relative to Env.Dir
	Caption string `json:"caption"`
}

// Result is what an experiment found.
type Result struct {
	Claims  []Claim  `json:"claims"`
	Figures []Figure `json:"figures,omitempty"`
	// Notes are markdown paragraphs: the setup, deviations from the paper,
	// extra measurements.
	Notes []string `json:"notes,omitempty"`
}

// Verdict sums up the claims that count (not Stretch): "reproduced" when
// every one passes, "not reproduced" when none does, "partly reproduced"
// between, and "no claims" when there are none.
func (r *Result) Verdict() string {
	pass, n := 0, 0
	for _, c := range r.Claims {
		if c.Stretch {
			continue
		}
		n++
		if c.Pass {
			pass++
		}
	}
	switch {
	case n == 0:
		return "no claims"
	case pass == n:
		return "reproduced"
	case pass == 0:
		return "not reproduced"
	}
	return "partly reproduced"
}

// registry holds every experiment, in the order `repro list` shows them
// and `repro all` runs them (the talk's order).
var registry []Experiment

// register adds e; called from the experiments' init functions. The
// order of the talk is kept by Rank.
func register(e Experiment) {
	if e.Name == "" || e.Run == nil || slices.ContainsFunc(registry, func(o Experiment) bool { return o.Name == e.Name }) {
		panic("repro: bad or duplicate experiment " + e.Name)
	}
	registry = append(registry, e)
	slices.SortStableFunc(registry, func(a, b Experiment) int { return rank(a.Name) - rank(b.Name) })
}

// talkOrder is the order of the talk; experiments not listed come last.
var talkOrder = []string{
	"backprop-mlp", "convnet-1989", "lenet5-1998", "deep-convnets", "deepmask",
	"spectral-net", "loss-surface", "orthogonal-rnn", "lista-lcod", "psd",
}

func rank(name string) int {
	if i := slices.Index(talkOrder, name); i >= 0 {
		return i
	}
	return len(talkOrder)
}

// All returns every experiment in the talk's order.
func All() []Experiment { return slices.Clone(registry) }

// Lookup returns the named experiment, or an error listing the names.
func Lookup(name string) (Experiment, error) {
	for _, e := range registry {
		if e.Name == name {
			return e, nil
		}
	}
	names := make([]string, len(registry))
	for i, e := range registry {
		names[i] = e.Name
	}
	return Experiment{}, fmt.Errorf("repro: unknown experiment %q (known: %s)", name, strings.Join(names, ", "))
}

// Record is one finished run of an experiment: what result.json in its
// directory holds, and what `repro list` shows as the last result.
type Record struct {
	Name        string    `json:"name"`
	Title       string    `json:"title"`
	Paper       string    `json:"paper"`
	Verdict     string    `json:"verdict"`
	Quick       bool      `json:"quick,omitempty"`
	Seed        uint64    `json:"seed"`
	Workers     int       `json:"workers"`
	Command     string    `json:"command"`
	Dir         string    `json:"dir"`
	Started     time.Time `json:"started"`
	WallSeconds float64   `json:"wall_seconds"`
	Result
}

// Run runs e in env (creating env.Dir), then writes env.Dir/report.md and
// env.Dir/result.json. command is the command line that reproduces the
// run, quoted in the report. A failed experiment writes no report and
// returns its error.
func Run(ctx context.Context, e Experiment, env Env, command string) (*Record, error) {
	if env.Dir == "" {
		return nil, errors.New("repro: no output directory")
	}
	if env.Workers < 1 {
		env.Workers = 1
	}
	if env.Logf == nil {
		env.Logf = func(string, ...any) {}
	}
	if err := os.MkdirAll(env.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("repro: %s: %w", e.Name, err)
	}
	start := time.Now()
	env.progress(0)
	res, err := e.Run(ctx, &env)
	if err != nil {
		return nil, fmt.Errorf("repro: %s: %w", e.Name, err)
	}
	env.progress(1)
	abs, _ := filepath.Abs(env.Dir)
	rec := &Record{
		Name: e.Name, Title: e.Title, Paper: e.Paper, Verdict: res.Verdict(), Quick: env.Quick,
		Seed: env.Seed, Workers: env.Workers, Command: command, Dir: abs,
		Started: start.UTC().Truncate(time.Second), WallSeconds: time.Since(start).Seconds(), Result: *res,
	}
	if err := writeFileAtomic(filepath.Join(env.Dir, "report.md"), []byte(rec.Markdown())); err != nil {
		return nil, err
	}
	js, _ := json.MarshalIndent(rec, "", "  ")
	if err := writeFileAtomic(filepath.Join(env.Dir, "result.json"), append(js, '\n')); err != nil {
		return nil, err
	}
	return rec, nil
}

// Markdown is the record's report.
func (r *Record) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# %s: %s\n\n", r.Name, r.Title)
	if r.Quick {
		b.WriteString("**Quick form: its numbers check the machinery only, not the paper's figures.**\n\n")
	}
	fmt.Fprintf(&b, "- Paper: %s\n- Verdict: **%s**\n- Wall time: %s\n- Seed: %d, workers: %d\n- Date: %s\n- Command: `%s`\n\n",
		r.Paper, r.Verdict, (time.Duration(r.WallSeconds * float64(time.Second))).Round(time.Second/10), r.Seed, r.Workers,
		r.Started.Format("2006-01-02 15:04 UTC"), r.Command)
	b.WriteString("| measured | paper | target | ours | |\n|---|---|---|---|---|\n")
	for _, c := range r.Claims {
		mark := "✗"
		if c.Pass {
			mark = "✓"
		}
		what := c.What
		if c.Stretch {
			what += " (stretch)"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", what, c.Paper, c.Target, c.Ours, mark)
	}
	for _, n := range r.Notes {
		b.WriteString("\n" + strings.TrimSpace(n) + "\n")
	}
	for _, f := range r.Figures {
		fmt.Fprintf(&b, "\n![%s](%s)\n\n*%s*\n", f.Caption, f.File, f.Caption)
	}
	return b.String()
}

// writeFileAtomic writes data to name through a temporary file and a
// rename, so that a reader sees the old file or the new one, whole.
func writeFileAtomic(name string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(name), ".tmp-"+filepath.Base(name))
	if err != nil {
		return fmt.Errorf("repro: %w", err)
	}
	_, err = tmp.Write(data)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), name)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("repro: %w", err)
	}
	return nil
}

// LastDir is where the last record of each experiment is kept for `repro
// list`: DIR/NAME.json.
func LastDir(cacheDir string) string { return filepath.Join(cacheDir, "repro") }

// SaveLast keeps rec as its experiment's last result in dir.
func SaveLast(dir string, rec *Record) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("repro: %w", err)
	}
	js, _ := json.MarshalIndent(rec, "", "  ")
	return writeFileAtomic(filepath.Join(dir, rec.Name+".json"), append(js, '\n'))
}

// LoadLast returns the last record of the named experiment in dir, nil if
// there is none; a file that does not parse is an error naming it.
func LoadLast(dir, name string) (*Record, error) {
	path := filepath.Join(dir, name+".json")
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("repro: %w", err)
	}
	var rec Record
	if err := json.Unmarshal(data, &rec); err != nil {
		return nil, fmt.Errorf("repro: %s: %w", path, err)
	}
	if rec.Name != name {
		return nil, fmt.Errorf("repro: %s: holds the record of %q, not %q", path, rec.Name, name)
	}
	return &rec, nil
}
