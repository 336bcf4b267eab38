package timeline

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const header = `{"timeline":1,"worker":"w","pid":7,"wall_ns":1000}` + "\n"

// A malformed file is an error that names the file and the line, and says
// what is wrong.
func TestReadNamesTheFileAndLine(t *testing.T) {
	for _, tc := range []struct {
		text, want string
	}{
		{`{"ev":"step","step":1,"t":0,"d":1}` + "\n", ":1: event before the first header"},
		{header + "not json\n", ":2: invalid character"},
		{header + `{"ev":"step","step":1,"t":0}` + "\n", `:2: step event without "d"`},
		{header + `{"ev":"step","step":1,"t":-5,"d":1}` + "\n", `:2: step event with negative "t"`},
		{header + `{"ev":"step","step":1.5,"t":0,"d":1}` + "\n", ":2: json: cannot unmarshal number 1.5"},
		{header + `{"ev":"nap","step":1,"t":0,"d":1}` + "\n", `:2: unknown event "nap"`},
		{header + `{"ev":"allreduce","step":1,"t":0,"d":1}` + "\n", `:2: allreduce event without "bucket" or "bytes"`},
		{header + `{"ev":"allreduce","step":1,"t":0,"d":1,"bucket":-1,"bytes":4}` + "\n", ":2: allreduce event of bucket -1"},
		{header + `{"ev":"step","step":1,"t":0,"d":9223372036854775807}` + "\n", ":2: step event ends past the year 2262"},
		{header + "\n\n[1,2]\n", ":4: json: cannot unmarshal array"},
		{header + "{}\n", `:2: neither a header ("timeline") nor an event ("ev")`},
		{`{"timeline":2,"worker":"w","wall_ns":1}` + "\n", ":1: timeline format version 2; this ringtrain reads version 1"},
		{`{"timeline":1,"wall_ns":1}` + "\n", ":1: header without a worker name"},
		{`{"timeline":1,"worker":"w"}` + "\n", ":1: header without a wall clock"},
		{header + strings.Repeat(" ", MaxLine+10) + "\n", ":2: line longer than"},
	} {
		_, err := Read(strings.NewReader(tc.text), "run/timeline/w.jsonl")
		if err == nil {
			t.Errorf("%q: no error", tc.text)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, "timeline: run/timeline/w.jsonl"+tc.want) || strings.Contains(msg, "\n") {
			t.Errorf("%.60q: error %q, want one line with %q", tc.text, msg, tc.want)
		}
	}
}

// The last line, cut off without its newline, is dropped; the same line
// with its newline is an error.
func TestReadDropsACutOffLastLine(t *testing.T) {
	ok := header + `{"ev":"step","step":1,"t":0,"d":1}` + "\n"
	segs, err := Read(strings.NewReader(ok+`{"ev":"st`), "f")
	if err != nil || len(segs) != 1 || len(segs[0].Events) != 1 {
		t.Fatalf("segments %+v, error %v", segs, err)
	}
	if _, err := Read(strings.NewReader(ok+`{"ev":"st`+"\n"), "f"); err == nil {
		t.Fatal("a cut-off line in the middle is no error")
	}
	// A whole last line without its newline counts.
	segs, err = Read(strings.NewReader(ok+`{"ev":"eval","step":1,"t":5,"d":1}`), "f")
	if err != nil || len(segs[0].Events) != 2 {
		t.Fatalf("segments %+v, error %v", segs, err)
	}
}

func TestReadDirNamesTheBadFile(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.jsonl"), []byte(header), 0o644)
	os.WriteFile(filepath.Join(dir, "b.jsonl"), []byte(header+"{\n"), 0o644)
	_, err := ReadDir(dir)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "b.jsonl")+":2:") {
		t.Fatalf("error %v", err)
	}
	if _, err := ReadDir(t.TempDir()); err == nil || !strings.Contains(err.Error(), "no timelines in") {
		t.Fatalf("empty directory: error %v", err)
	}
}

// FuzzRead feeds the reader arbitrary files: it never panics, what it
// accepts exports as a valid trace, and written again reads back the same.
func FuzzRead(f *testing.F) {
	f.Add([]byte(header + `{"ev":"step","step":1,"t":0,"d":8000000}` + "\n" +
		`{"ev":"allreduce","step":1,"t":100,"d":500,"bucket":2,"bytes":4096}` + "\n"))
	f.Add([]byte(header + `{"ev":"forward","step":3,"t":12,"d":3,"x":[1]}` + "\n" + header))
	f.Add([]byte(`{"timeline":1,"worker":"w\u00e9\"","pid":-1,"wall_ns":0}` + "\n\n" + `{"ev":"eval","step":0,"t":0,"d":0}`))
	f.Add([]byte(header + `{"ev":"sync","step":1,"t":1e3,"d":1}` + "\n"))
	f.Add([]byte("\xff\n" + header))
	f.Fuzz(func(t *testing.T, data []byte) {
		segs, err := Read(bytes.NewReader(data), "fuzz.jsonl")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "timeline: fuzz.jsonl") {
				t.Fatalf("error %q does not name the file", err)
			}
			return
		}
		var trace bytes.Buffer
		if _, err := WriteChrome(&trace, []Worker{{Name: "w", Segments: segs}}); err != nil || !json.Valid(trace.Bytes()) {
			t.Fatalf("exported: %v\n%s", err, trace.Bytes())
		}
		again, err := Read(bytes.NewReader(encode(segs)), "again.jsonl")
		if err != nil {
			t.Fatalf("written again: %v\n%s", err, encode(segs))
		}
		for i := range segs {
			segs[i].File, again[i].File = "", ""
			segs[i].Line, again[i].Line = 0, 0
			if len(segs[i].Events) == 0 {
				segs[i].Events = nil
			}
		}
		if !reflect.DeepEqual(segs, again) {
			t.Fatalf("read %+v, written and read again %+v", segs, again)
		}
	})
}
