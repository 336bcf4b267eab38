package runlog

import (
	"bytes"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

const goldenPath = "testdata/tfevents/golden.tfevents"

func TestCRC32CAndMask(t *testing.T) {
	if got := crc32c([]byte("123456789")); got != 0xE3069283 {
		t.Errorf("crc32c(123456789) = %#08x, want 0xe3069283 (the CRC-32C check value)", got)
	}
	for _, tc := range []struct{ in, want uint32 }{
		{0, 0xa282ead8},
		// ((0x12345678 >> 15) | (0x12345678 << 17)) = 0xacf02468; + 0xa282ead8,
		// wrapped to 32 bits.
		{0x12345678, 0x4f730f40},
		{0xE3069283, 0xc78ab0e5},
	} {
		if got := maskCRC(tc.in); got != tc.want {
			t.Errorf("maskCRC(%#08x) = %#08x, want %#08x", tc.in, got, tc.want)
		}
	}
}

// goldenRecords are the records whose events make_golden.py writes, after
// a version event at goldenStart.
var goldenStart = time.Unix(1767225600, 0)

func goldenRecords() []Record {
	at := func(sec, nsec int64) time.Time { return time.Unix(sec, nsec).UTC() }
	return []Record{
		{Kind: "eval", Time: at(1767225600, 5e8), Step: 0, Loss: 2.302585, Accuracy: 0},
		{Kind: "train", Time: at(1767225601, 25e7), Step: 50, Progress: 0.0533, LR: 0.01, Loss: 1.75, Accuracy: 0.40625,
			ImagesPerSecond: 1234.5, DataWaitSeconds: 0.125},
		{Kind: "train", Time: at(1767225602, 75e7), Step: 100, Progress: 0.1066, Loss: 0.5, Accuracy: 0.875},
		{Kind: "eval", Time: at(1767225603, 0), Step: 100, Epoch: 0, Progress: 1, Loss: 0.0625, Accuracy: 0.9814},
		{Kind: "train", Time: at(1767225700, 125e6), Step: 300000, Epoch: 2, Progress: 3, LR: 0.001, Loss: 0.015625, Accuracy: 1,
			ImagesPerSecond: 20480},
	}
}

// goldenEvents is what golden.tfevents holds, as make_golden.py lists it.
func goldenEvents() []Event {
	return []Event{
		{WallTime: 1767225600, FileVersion: "brain.Event:2"},
		{WallTime: 1767225600.5, Scalars: []Scalar{{"test/loss", 2.302585}, {"test/accuracy", 0}}},
		{WallTime: 1767225601.25, Step: 50, Scalars: []Scalar{{"train/loss", 1.75}, {"train/accuracy", 0.40625},
			{"train/epoch", 0.0533}, {"train/lr", 0.01}, {"train/images_per_second", 1234.5}, {"train/data_wait_seconds", 0.125}}},
		{WallTime: 1767225602.75, Step: 100, Scalars: []Scalar{{"train/loss", 0.5}, {"train/accuracy", 0.875}, {"train/epoch", 0.1066}}},
		{WallTime: 1767225603, Step: 100, Scalars: []Scalar{{"test/loss", 0.0625}, {"test/accuracy", 0.9814}}},
		{WallTime: 1767225700.125, Step: 300000, Scalars: []Scalar{{"train/loss", 0.015625}, {"train/accuracy", 1},
			{"train/epoch", 3}, {"train/lr", 0.001}, {"train/images_per_second", 20480}}},
	}
}

func fixClock(t *testing.T, at time.Time) {
	t.Helper()
	old := now
	now = func() time.Time { return at }
	t.Cleanup(func() { now = old })
}

// onlyEventFile returns the run directory's one ringtrain event file.
func onlyEventFile(t *testing.T, dir string) string {
	t.Helper()
	files, err := EventFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 1 {
		t.Fatalf("%s holds %d ringtrain event files, want 1: %v", dir, len(files), files)
	}
	return files[0]
}

// The Log's event file is byte for byte what an independent writer
// (make_golden.py) makes of the same events.
func TestGoldenEventFile(t *testing.T) {
	golden, err := os.ReadFile(goldenPath)
	if err != nil {
		t.Fatal(err)
	}
	fixClock(t, goldenStart)
	dir := t.TempDir()
	l, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range goldenRecords() {
		l.Add(r)
	}
	l.Add(Record{Kind: "other", Time: goldenStart, Step: 7, Loss: 1}) // no scalars in the event file
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	path := onlyEventFile(t, dir)
	name := regexp.MustCompile(`^events\.out\.tfevents\.1767225600\.[^/]+\.[0-9]+\.[0-9]+\.ringtrain$`)
	if !name.MatchString(filepath.Base(path)) {
		t.Errorf("event file name %q does not match %v", filepath.Base(path), name)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, golden) {
		at := 0
		for at < min(len(got), len(golden)) && got[at] == golden[at] {
			at++
		}
		t.Fatalf("the Go writer's event file (%d bytes) differs from %s (%d bytes) from byte %d on", len(got), goldenPath, len(golden), at)
	}

	events, err := ReadEvents(goldenPath)
	if err != nil {
		t.Fatal(err)
	}
	if want := goldenEvents(); !reflect.DeepEqual(events, want) {
		t.Fatalf("ReadEvents(%s):\n got %+v\nwant %+v", goldenPath, events, want)
	}
}

// stepsOf returns the steps of the summary events of an event file, after
// checking that it starts with the version event and holds nothing else.
func stepsOf(t *testing.T, path string) []int64 {
	t.Helper()
	events, err := ReadEvents(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(events) == 0 || events[0].FileVersion != FileVersion {
		t.Fatalf("%s does not start with a version event: %+v", path, events)
	}
	var steps []int64
	for _, ev := range events[1:] {
		if ev.FileVersion != "" || len(ev.Scalars) == 0 {
			t.Fatalf("%s: event %+v is not a summary", path, ev)
		}
		steps = append(steps, ev.Step)
	}
	return steps
}

// A resumed run's event file holds what metrics.jsonl holds: reopening
// writes the records again into a new file and removes the old one, and
// TruncateAfter drops the scalars past the resume step with the records.
func TestEventFileFollowsResume(t *testing.T) {
	dir := t.TempDir()
	// Another writer's event file, and one a crashed ringtrain left.
	foreign := filepath.Join(dir, "events.out.tfevents.1700000000.elsewhere.42.0")
	stale := filepath.Join(dir, "events.out.tfevents.1700000000.elsewhere.42.0.ringtrain")
	for _, p := range []string{foreign, stale} {
		if err := os.WriteFile(p, golden(t), 0o644); err != nil {
			t.Fatal(err)
		}
	}
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
	first := onlyEventFile(t, dir)
	if first == stale {
		t.Fatal("the stale event file was kept")
	}
	if got, want := stepsOf(t, first), []int64{1, 2, 3, 4, 5, 5}; !reflect.DeepEqual(got, want) {
		t.Fatalf("steps in the event file: %v, want %v", got, want)
	}

	l, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	second := onlyEventFile(t, dir)
	if second == first {
		t.Fatal("Open appended to the old event file instead of writing a new one")
	}
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}
	if got, want := stepsOf(t, second), []int64{1, 2, 3, 4, 5, 5}; !reflect.DeepEqual(got, want) {
		t.Fatalf("steps in the reopened event file: %v, want %v", got, want)
	}
	// Nothing past step 5: both files stay as they are.
	if err := l.TruncateAfter(5); err != nil {
		t.Fatal(err)
	}
	if got := onlyEventFile(t, dir); got != second {
		t.Fatalf("TruncateAfter dropping nothing replaced the event file %s with %s", second, got)
	}
	if err := l.TruncateAfter(3); err != nil {
		t.Fatal(err)
	}
	third := onlyEventFile(t, dir)
	l.Add(rec("train", 4, 1))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	events, err := ReadEvents(third)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := stepsOf(t, third), []int64{1, 2, 3, 4}; !reflect.DeepEqual(got, want) {
		t.Fatalf("steps in the event file after resuming from step 3: %v, want %v", got, want)
	}
	if third == second {
		t.Fatal("TruncateAfter dropping records kept the event file's name (a TensorBoard reading it would not see the rewrite)")
	}
	if last := events[len(events)-1].Scalars[0]; last != (Scalar{"train/loss", 1}) {
		t.Fatalf("last event's first scalar: %+v, want train/loss 1", last)
	}
	if _, err := os.Stat(foreign); err != nil {
		t.Fatalf("another writer's event file was removed: %v", err)
	}
}

func golden(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(goldenPath)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// frame frames data as one TFRecord with correct CRCs.
func frame(data []byte) []byte { return appendRecord(nil, data) }

// Malformed event files are errors naming the file, the record and its
// offset, with the events before the bad record.
func TestReadEventsRejects(t *testing.T) {
	g := golden(t)
	// Offsets of the golden file's records.
	var offs []int
	for off := 0; off < len(g); off += 16 + int(binary.LittleEndian.Uint64(g[off:])) {
		offs = append(offs, off)
	}
	if len(offs) != len(goldenEvents()) {
		t.Fatalf("golden file has %d records, want %d", len(offs), len(goldenEvents()))
	}
	flip := func(at int) []byte {
		b := bytes.Clone(g)
		b[at] ^= 0x40
		return b
	}
	hostile := make([]byte, 12)
	binary.LittleEndian.PutUint64(hostile, 1<<40)
	binary.LittleEndian.PutUint32(hostile[8:], maskCRC(crc32c(hostile[:8])))
	short := make([]byte, 12, 40)
	binary.LittleEndian.PutUint64(short, 1000)
	binary.LittleEndian.PutUint32(short[8:], maskCRC(crc32c(short[:8])))
	short = append(short, make([]byte, 20)...)
	wrongType := protowire.AppendTag(nil, eventStep, protowire.Fixed64Type)
	wrongType = protowire.AppendFixed64(wrongType, 7)
	badValue := protowire.AppendTag(nil, eventSummary, protowire.BytesType)
	badValue = protowire.AppendBytes(badValue, []byte{0x0a, 0x03, 0x0a, 0x05, 'a'})

	for _, tc := range []struct {
		name   string
		data   []byte
		record int
		want   string
	}{
		{"length CRC", flip(offs[0] + 8), 0, "length CRC mismatch"},
		{"length", flip(offs[2] + 1), 2, "length CRC mismatch"},
		{"data CRC", flip(offs[3] + 20), 3, "data CRC mismatch"},
		{"data CRC field", flip(len(g) - 1), 5, "data CRC mismatch"},
		{"cut in the data", g[:offs[4]+15], 4, "truncated"},
		{"cut in the header", g[:offs[1]+5], 1, "truncated header"},
		{"hostile length", append(bytes.Clone(g), hostile...), 6, "over the 16777216-byte limit"},
		{"length past the end", append(bytes.Clone(g), short...), 6, "truncated: length 1000"},
		{"wrong wire type", append(bytes.Clone(g), frame(wrongType)...), 6, "Event.step has wire type 1, want 0"},
		{"bad nested message", append(bytes.Clone(g), frame(badValue)...), 6, "Summary.Value"},
		{"bad tag", append(bytes.Clone(g), frame([]byte{0x00})...), 6, "bad field tag"},
	} {
		path := filepath.Join(t.TempDir(), "bad.tfevents")
		if err := os.WriteFile(path, tc.data, 0o644); err != nil {
			t.Fatal(err)
		}
		events, err := ReadEvents(path)
		if err == nil {
			t.Errorf("%s: no error", tc.name)
			continue
		}
		at := len(g)
		if tc.record < len(offs) {
			at = offs[tc.record]
		}
		for _, w := range []string{path + ":", "record " + strconv.Itoa(tc.record) + " at byte " + strconv.Itoa(at) + ":", tc.want} {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not say %q", tc.name, err, w)
			}
		}
		if len(events) != tc.record {
			t.Errorf("%s: %d events before the error, want %d", tc.name, len(events), tc.record)
		}
	}
	if _, err := ReadEvents(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("a missing file read without error")
	}
}

// Fields ringtrain does not write (another writer's) are skipped; values
// other than simple_value scalars are too.
func TestReadEventsSkipsOtherFields(t *testing.T) {
	var v []byte
	v = protowire.AppendTag(v, 7, protowire.BytesType) // node_name
	v = protowire.AppendString(v, "n")
	v = protowire.AppendTag(v, valueTag, protowire.BytesType)
	v = protowire.AppendString(v, "a")
	v = protowire.AppendTag(v, valueSimpleValue, protowire.Fixed32Type)
	v = protowire.AppendFixed32(v, math.Float32bits(2.5))
	var img []byte // a value with an image, no simple_value
	img = protowire.AppendTag(img, valueTag, protowire.BytesType)
	img = protowire.AppendString(img, "picture")
	img = protowire.AppendTag(img, 4, protowire.BytesType)
	img = protowire.AppendBytes(img, []byte{1, 2, 3})
	var sum []byte
	sum = protowire.AppendTag(sum, summaryValue, protowire.BytesType)
	sum = protowire.AppendBytes(sum, img)
	sum = protowire.AppendTag(sum, summaryValue, protowire.BytesType)
	sum = protowire.AppendBytes(sum, v)
	var ev []byte
	ev = protowire.AppendTag(ev, eventStep, protowire.VarintType)
	ev = protowire.AppendVarint(ev, 9)
	ev = protowire.AppendTag(ev, 6, protowire.BytesType) // log_message
	ev = protowire.AppendBytes(ev, []byte{0x08, 0x01})
	ev = protowire.AppendTag(ev, eventSummary, protowire.BytesType)
	ev = protowire.AppendBytes(ev, sum)
	events, err := readEvents("x", bytes.NewReader(frame(ev)), int64(len(frame(ev))))
	if err != nil {
		t.Fatal(err)
	}
	want := []Event{{Step: 9, Scalars: []Scalar{{"a", 2.5}}}}
	if !reflect.DeepEqual(events, want) {
		t.Fatalf("got %+v, want %+v", events, want)
	}
}

// FuzzReadEvents reads each input as an event file, and also framed as
// one record with correct CRCs, so that the proto decoding is fuzzed too
// and not only the framing (a random change rarely keeps a CRC right).
func FuzzReadEvents(f *testing.F) {
	g, err := os.ReadFile(goldenPath)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(g)
	f.Add([]byte{})
	f.Add(g[12:40]) // the version event's proto
	f.Fuzz(func(t *testing.T, data []byte) {
		checkReadEvents(t, data)
		checkReadEvents(t, frame(data))
	})
}

// checkReadEvents reads data as an event file: it must return an error
// naming the file and record, or events that write out and read back the
// same.
func checkReadEvents(t *testing.T, data []byte) {
	events, err := readEvents("fuzz", bytes.NewReader(data), int64(len(data)))
	if err != nil {
		if !strings.HasPrefix(err.Error(), "runlog: fuzz: record ") {
			t.Fatalf("error does not name the file and record: %v", err)
		}
		return
	}
	var out []byte
	for _, ev := range events {
		out = appendRecord(out, appendEvent(nil, ev))
	}
	back, err := readEvents("again", bytes.NewReader(out), int64(len(out)))
	if err != nil {
		t.Fatalf("events read back with error: %v", err)
	}
	if !sameEvents(events, back) {
		t.Fatalf("read %+v, wrote and read back %+v", events, back)
	}
}

// sameEvents compares events bit for bit (NaN included), an absent and an
// empty list of scalars alike.
func sameEvents(a, b []Event) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if math.Float64bits(x.WallTime) != math.Float64bits(y.WallTime) || x.Step != y.Step ||
			x.FileVersion != y.FileVersion || len(x.Scalars) != len(y.Scalars) {
			return false
		}
		for j := range x.Scalars {
			if x.Scalars[j].Tag != y.Scalars[j].Tag || math.Float32bits(x.Scalars[j].Value) != math.Float32bits(y.Scalars[j].Value) {
				return false
			}
		}
	}
	return true
}
