package timeline

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Segment is a header and the events after it, up to the next header.
type Segment struct {
	Header
	// File and Line are where the header is.
	File   string
	Line   int
	Events []Event
}

// Worker is every segment of one worker's timeline, oldest first.
type Worker struct {
	Name     string
	Segments []Segment
}

// MaxLine is the longest line a timeline may hold.
const MaxLine = 64 << 10

// line is one line of a timeline file: a header or an event.
type line struct {
	Timeline *int    `json:"timeline"`
	Worker   *string `json:"worker"`
	PID      int     `json:"pid"`
	WallNS   *int64  `json:"wall_ns"`

	Ev     *string `json:"ev"`
	Step   *int64  `json:"step"`
	T      *int64  `json:"t"`
	D      *int64  `json:"d"`
	Bucket *int64  `json:"bucket"`
	Bytes  *int64  `json:"bytes"`
}

// Read reads a timeline file's segments from rd; file names it in errors,
// which say the line: "timeline: FILE:LINE: what is wrong". Blank lines are
// skipped, and so is a last line without its newline that does not parse
// (a write cut off by a kill).
func Read(rd io.Reader, file string) ([]Segment, error) {
	var segs []Segment
	br := bufio.NewReaderSize(rd, 64<<10)
	for n := 1; ; n++ {
		text, err := readLine(br)
		last := err == io.EOF
		if err != nil && !last {
			if errors.Is(err, errLong) {
				return nil, fmt.Errorf("timeline: %s:%d: %w", file, n, err)
			}
			return nil, fmt.Errorf("timeline: %s: %w", file, err)
		}
		if len(bytes.TrimSpace(text)) > 0 {
			next, err := parseLine(segs, text, file, n)
			if err != nil {
				if last {
					return segs, nil // cut off by a kill
				}
				return nil, err
			}
			segs = next
		}
		if last {
			return segs, nil
		}
	}
}

var errLong = fmt.Errorf("line longer than %d bytes", MaxLine)

// readLine reads one line without its newline; io.EOF comes with the last
// line when it has no newline (an empty one at the end of the input).
func readLine(br *bufio.Reader) ([]byte, error) {
	var long []byte
	for {
		part, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			if len(long)+len(part) > MaxLine {
				return nil, errLong
			}
			long = append(long, part...)
			continue
		}
		if long != nil {
			part = append(long, part...)
		}
		if len(part) > MaxLine+1 {
			return nil, errLong
		}
		if err == nil {
			return part[:len(part)-1], nil
		}
		return part, err
	}
}

func parseLine(segs []Segment, text []byte, file string, n int) ([]Segment, error) {
	bad := func(format string, a ...any) ([]Segment, error) {
		return nil, fmt.Errorf("timeline: %s:%d: %s", file, n, fmt.Sprintf(format, a...))
	}
	var l line
	if err := json.Unmarshal(text, &l); err != nil {
		return bad("%v", err)
	}
	switch {
	case l.Timeline != nil:
		if *l.Timeline != Version {
			return bad("timeline format version %d; this ringtrain reads version %d", *l.Timeline, Version)
		}
		if l.Worker == nil || *l.Worker == "" {
			return bad("header without a worker name")
		}
		if l.WallNS == nil || *l.WallNS < 0 {
			return bad(`header without a wall clock ("wall_ns", Unix nanoseconds)`)
		}
		return append(segs, Segment{Header: Header{Version: *l.Timeline, Worker: *l.Worker, PID: l.PID, WallNS: *l.WallNS}, File: file, Line: n}), nil
	case l.Ev != nil:
		if len(segs) == 0 {
			return bad("event before the first header")
		}
		k, ok := kindOf(*l.Ev)
		if !ok {
			return bad("unknown event %q", *l.Ev)
		}
		ev := Event{Kind: k}
		for _, f := range []struct {
			name string
			v    *int64
			dst  *int64
		}{{"step", l.Step, &ev.Step}, {"t", l.T, &ev.Start}, {"d", l.D, &ev.End}} {
			if f.v == nil {
				return bad("%s event without %q", k, f.name)
			}
			if *f.v < 0 {
				return bad("%s event with negative %q: %d", k, f.name, *f.v)
			}
			*f.dst = *f.v
		}
		wall := segs[len(segs)-1].WallNS
		if ev.End > math.MaxInt64-wall-ev.Start {
			return bad("%s event ends past the year 2262", k)
		}
		ev.End += ev.Start
		if k == AllReduce {
			switch {
			case l.Bucket == nil || l.Bytes == nil:
				return bad(`allreduce event without "bucket" or "bytes"`)
			case *l.Bucket < 0 || *l.Bucket > math.MaxInt32:
				return bad("allreduce event of bucket %d", *l.Bucket)
			case *l.Bytes < 0:
				return bad("allreduce event of %d bytes", *l.Bytes)
			}
			ev.Bucket, ev.Bytes = int32(*l.Bucket), *l.Bytes
		}
		s := &segs[len(segs)-1]
		s.Events = append(s.Events, ev)
		return segs, nil
	}
	return bad(`neither a header ("timeline") nor an event ("ev")`)
}

// ReadFile reads the timeline file at path.
func ReadFile(path string) ([]Segment, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("timeline: %w", err)
	}
	defer f.Close()
	return Read(f, path)
}

// ReadDir reads every timeline file in dir (NAME.jsonl and NAME.jsonl.1)
// and returns the workers' timelines in name order, each worker's segments
// in the order of their anchors.
func ReadDir(dir string) ([]Worker, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("timeline: %w", err)
	}
	// The rotated files first: a recorder's segments share its anchor, and
	// the sort below keeps the order they are read in.
	var files []string
	for _, suffix := range []string{".jsonl.1", ".jsonl"} {
		for _, e := range ents {
			if n := e.Name(); !e.IsDir() && strings.HasSuffix(n, suffix) {
				files = append(files, n)
			}
		}
	}
	byName := map[string]*Worker{}
	for _, n := range files {
		segs, err := ReadFile(filepath.Join(dir, n))
		if err != nil {
			return nil, err
		}
		for _, s := range segs {
			w := byName[s.Worker]
			if w == nil {
				w = &Worker{Name: s.Worker}
				byName[s.Worker] = w
			}
			w.Segments = append(w.Segments, s)
		}
	}
	if len(byName) == 0 {
		return nil, fmt.Errorf("timeline: no timelines in %s", dir)
	}
	var out []Worker
	for _, w := range byName {
		slices.SortStableFunc(w.Segments, func(a, b Segment) int { return cmp.Compare(a.WallNS, b.WallNS) })
		out = append(out, *w)
	}
	slices.SortFunc(out, func(a, b Worker) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}
