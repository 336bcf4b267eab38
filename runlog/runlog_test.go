package runlog

import (
	"bytes"
	"image/png"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func rec(kind string, step int, loss float64) Record {
	return Record{Kind: kind, Time: time.Unix(int64(step), 0).UTC(), Step: step, Progress: float64(step) / 10, Loss: loss, Accuracy: 1 - loss/10}
}

func TestLogPersistsAndResumes(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	for s := 1; s <= 5; s++ {
		l.Add(rec("train", s, float64(10-s)))
	}
	l.Add(rec("eval", 5, 4.5))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// A crash mid-write leaves a torn last line.
	f, _ := os.OpenFile(filepath.Join(dir, MetricsFile), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"kind":"train","st`)
	f.Close()

	l, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(l.Records()); got != 6 {
		t.Fatalf("reopened log has %d records, want 6", got)
	}
	if err := l.TruncateAfter(3); err != nil {
		t.Fatal(err)
	}
	l.Add(rec("train", 4, 1))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	back, err := readRecords(filepath.Join(dir, MetricsFile))
	if err != nil {
		t.Fatal(err)
	}
	if len(back) != 4 || back[3].Step != 4 || back[3].Loss != 1 || back[2].Step != 3 {
		t.Fatalf("records on disk after resume: %+v", back)
	}
}

func TestPlotWritesPNG(t *testing.T) {
	dir := t.TempDir()
	var rs []Record
	for s := 0; s < 30; s++ {
		rs = append(rs, rec("train", s, 3/float64(s+1)))
	}
	rs = append(rs, rec("eval", 10, 0.3), rec("eval", 20, 0.2), rec("train", 31, 0))
	if err := WritePlot(dir, "lenet5", rs); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, PlotFile))
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if r := img.Bounds(); r.Dx() < 500 || r.Dy() < 200 {
		t.Fatalf("plot is %v", r)
	}
}

// A run that stops before its first record still gets a (blank) plot,
// not a panic.
func TestPlotWithoutRecords(t *testing.T) {
	for _, rs := range [][]Record{nil, {rec("eval", 0, 0)}} {
		dir := t.TempDir()
		if err := WritePlot(dir, "lenet5", rs); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(dir, PlotFile)); err != nil {
			t.Fatal(err)
		}
	}
}

// WriteFile replaces a file whole, leaves no temporary file behind, gives a
// new file the mode of one created 0644 and keeps a replaced file's mode.
func TestWriteFileReplaces(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	path := filepath.Join(dir, "job.yaml")
	if err := WriteFile(dir, "job.yaml", []byte("first\n")); err != nil {
		t.Fatal(err)
	}
	ref := filepath.Join(t.TempDir(), "ref")
	if err := os.WriteFile(ref, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if got, want := mode(t, path), mode(t, ref); got != want {
		t.Errorf("new file: mode %v, want %v", got, want)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(dir, "job.yaml", []byte("second\n")); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "second\n" {
		t.Fatalf("read %q, %v", b, err)
	}
	if got := mode(t, path); got != 0o600 {
		t.Errorf("replaced file: mode %v, want -rw-------", got)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 {
		t.Errorf("run directory holds %d entries, want only job.yaml", len(ents))
	}
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode()
}

func TestSummaryRoundTrip(t *testing.T) {
	dir := t.TempDir()
	s := Summary{Model: "lenet5", Dataset: "mnist", Epochs: 3, BatchSize: 64, Seed: 7, TestAccuracy: 0.991, PeakRSSBytes: PeakRSS()}
	if s.PeakRSSBytes <= 0 {
		t.Fatal("PeakRSS is not positive")
	}
	if err := WriteSummary(dir, s); err != nil {
		t.Fatal(err)
	}
	back, err := ReadSummary(dir)
	if err != nil {
		t.Fatal(err)
	}
	if back != s {
		t.Fatalf("read %+v, wrote %+v", back, s)
	}
}
