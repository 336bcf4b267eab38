// Package runlog writes what a training run leaves in its run directory for
// people and tools to read: metrics as JSON lines and as a TensorBoard
// event file, a PNG plot of the loss and accuracy curves, and summary.json.
package runlog

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/google/renameio/v2"
)

// Record is one line of metrics.jsonl. Kind is "train" (a window of
// training steps) or "eval" (a test-set evaluation at the end of an epoch).
type Record struct {
	Kind  string    `json:"kind"`
	Time  time.Time `json:"time"`
	Step  int       `json:"step"`
	Epoch int       `json:"epoch"`
	// Progress is the fractional epoch (epoch + share of it done), the x
	// axis of the plot.
	Progress        float64 `json:"progress"`
	LR              float64 `json:"lr,omitempty"`
	Loss            float64 `json:"loss"`
	Accuracy        float64 `json:"accuracy"`
	ImagesPerSecond float64 `json:"images_per_second,omitempty"`
	// DataWaitSeconds is the time the steps of a "train" record waited
	// for their batches (the input pipeline fell behind).
	DataWaitSeconds float64 `json:"data_wait_seconds,omitempty"`
}

// Summary is summary.json: the outcome of a run.
type Summary struct {
	Model           string  `json:"model"`
	Dataset         string  `json:"dataset"`
	Epochs          int     `json:"epochs"`
	BatchSize       int     `json:"batch_size"`
	Seed            uint64  `json:"seed"`
	Threads         int     `json:"threads"`
	Steps           int     `json:"steps"`
	TestAccuracy    float64 `json:"test_accuracy"`
	TestLoss        float64 `json:"test_loss"`
	TrainLoss       float64 `json:"train_loss"`
	ImagesPerSecond float64 `json:"images_per_second"`
	WallSeconds     float64 `json:"wall_seconds"`
	// SecondsTo99 is the wall time from launch to the first evaluation at
	// or above 99% test accuracy; 0 if never reached.
	SecondsTo99  float64 `json:"seconds_to_99,omitempty"`
	PeakRSSBytes int64   `json:"peak_rss_bytes"`
	Resumed      bool    `json:"resumed,omitempty"`
	Interrupted  bool    `json:"interrupted,omitempty"`
	Checkpoint   string  `json:"checkpoint,omitempty"`
}

// Log appends metric records to metrics.jsonl in a run directory and keeps
// them for the plot. It writes their scalars to a TensorBoard event file
// in the same directory as well (tags train/loss, train/accuracy,
// train/epoch, train/lr, train/images_per_second, train/data_wait_seconds,
// test/loss and test/accuracy; step is the record's step and wall_time its
// time), so `tensorboard --logdir runs/` shows the run.
//
// metrics.jsonl is the record of truth and the event file always mirrors
// it: Open, and TruncateAfter when it drops records, write the records
// kept into a new event file and then remove the run directory's other
// ringtrain event files (names ending in .ringtrain; event files of other
// writers stay). So a resumed run never shows scalars past the step it
// resumed from, nor any twice. A crash between the two leaves an extra
// event file, which the next Open removes. The event file's name is
// events.out.tfevents.<unix seconds>.<hostname>.<pid>.<n>.ringtrain, n
// counting the event files of the process, so files written on different
// hosts, by different processes or one after the other never share a name.
//
// It is not safe for concurrent use.
type Log struct {
	dir     string
	f       *os.File
	w       *bufio.Writer
	ev      *eventWriter
	records []Record
	err     error
}

// MetricsFile, PlotFile and SummaryFile are the names of the files a run
// directory holds.
const (
	MetricsFile = "metrics.jsonl"
	PlotFile    = "curves.png"
	SummaryFile = "summary.json"
)

// Open opens the run directory's metrics log for appending, creating the
// directory. Records already in the file (a resumed run) are read back so
// the plot shows the whole run; a torn last line (a crash mid-write) is
// dropped. They are written to a new event file, which replaces the event
// files of earlier runs in dir.
func Open(dir string) (*Log, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("runlog: %w", err)
	}
	path := filepath.Join(dir, MetricsFile)
	old, err := readRecords(path)
	if err != nil {
		return nil, err
	}
	// The event file first: metrics.jsonl is emptied only once both
	// files can be written.
	ev, err := createEventFile(dir)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		ev.f.Close()
		os.Remove(ev.path)
		return nil, fmt.Errorf("runlog: %w", err)
	}
	l := &Log{dir: dir, f: f, w: bufio.NewWriter(f), ev: ev}
	for _, r := range old {
		l.Add(r)
	}
	if err := l.Flush(); err != nil {
		return l, err
	}
	return l, l.removeOldEventFiles()
}

// ReadRecords reads the records of the run directory dir's metrics log
// (none when it has none), as Open does: a torn last line is dropped.
func ReadRecords(dir string) ([]Record, error) {
	return readRecords(filepath.Join(dir, MetricsFile))
}

func readRecords(path string) ([]Record, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("runlog: %w", err)
	}
	defer f.Close()
	var out []Record
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		var r Record
		if json.Unmarshal(sc.Bytes(), &r) != nil {
			break // a torn line ends what is trusted
		}
		out = append(out, r)
	}
	return out, nil
}

// Add appends one record. Errors are kept and reported by Flush and Close.
func (l *Log) Add(r Record) {
	l.records = append(l.records, r)
	if l.err != nil {
		return
	}
	b, err := json.Marshal(r)
	if err != nil {
		l.err = fmt.Errorf("runlog: %w", err)
		return
	}
	if _, err := l.w.Write(append(b, '\n')); err != nil {
		l.err = fmt.Errorf("runlog: %w", err)
		return
	}
	if ev, ok := recordEvent(r); ok {
		l.err = l.ev.write(ev)
	}
}

// TruncateAfter drops the records past a step (a resumed run repeats the
// steps after its checkpoint, and their records are written again). When
// it drops any, metrics.jsonl is rewritten with the records kept and so is
// the event file: the kept records go to a new event file and the old one
// is removed (see Log). When it drops none, both files stay as they are.
func (l *Log) TruncateAfter(step int) error {
	var keep []Record
	for _, r := range l.records {
		if r.Step <= step {
			keep = append(keep, r)
		}
	}
	if len(keep) == len(l.records) {
		return l.Flush()
	}
	ev, err := createEventFile(l.dir)
	if err != nil {
		return err
	}
	l.ev.f.Close() // the old event file, removed below
	l.ev = ev
	l.records = nil
	if err := l.f.Truncate(0); err != nil {
		return fmt.Errorf("runlog: %w", err)
	}
	if _, err := l.f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("runlog: %w", err)
	}
	l.w.Reset(l.f)
	for _, r := range keep {
		l.Add(r)
	}
	if err := l.Flush(); err != nil {
		return err
	}
	return l.removeOldEventFiles()
}

// removeOldEventFiles removes the run directory's ringtrain event files
// other than the log's own.
func (l *Log) removeOldEventFiles() error {
	return removeEventFilesBut(l.dir, l.ev.path)
}

// Records returns the records so far (the caller must not modify them).
func (l *Log) Records() []Record { return l.records }

// Flush writes buffered records to the file.
func (l *Log) Flush() error {
	if l.err != nil {
		return l.err
	}
	if err := l.w.Flush(); err != nil {
		l.err = fmt.Errorf("runlog: %w", err)
		return l.err
	}
	l.err = l.ev.flush()
	return l.err
}

// Close flushes and closes the log.
func (l *Log) Close() error {
	err := l.Flush()
	if cerr := l.f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("runlog: %w", cerr)
	}
	if cerr := l.ev.close(); err == nil && cerr != nil {
		err = cerr
	}
	return err
}

// WriteSummary writes summary.json atomically.
func WriteSummary(dir string, s Summary) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("runlog: %w", err)
	}
	return WriteFile(dir, SummaryFile, append(b, '\n'))
}

// WriteFile replaces the file name in the run directory dir with data
// atomically (a temporary file in dir, synced, then renamed over name), so
// a reader never sees a half-written summary, plot or job file, not even
// after a crash. A new file gets mode 0644; a replaced one keeps its mode.
func WriteFile(dir, name string, data []byte) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("runlog: %w", err)
	}
	if err := renameio.WriteFile(filepath.Join(dir, name), data, 0o644, renameio.WithTempDir(dir)); err != nil {
		return fmt.Errorf("runlog: %w", err)
	}
	return nil
}

// ReadSummary reads a run directory's summary.json.
func ReadSummary(dir string) (Summary, error) {
	var s Summary
	b, err := os.ReadFile(filepath.Join(dir, SummaryFile))
	if err != nil {
		return s, fmt.Errorf("runlog: %w", err)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("runlog: %s: %w", filepath.Join(dir, SummaryFile), err)
	}
	return s, nil
}

// PeakRSS is the process's peak resident set size in bytes.
func PeakRSS() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return int64(ru.Maxrss) * 1024 // Linux reports KiB
}
