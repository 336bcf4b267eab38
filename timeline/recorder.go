package timeline

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// DefaultMaxBytes is the size at which a worker's current timeline file is
// rotated (see the package comment).
const DefaultMaxBytes = 8 << 20

// Options configure a Recorder.
type Options struct {
	// MaxBytes is the size past which the current file is rotated at the
	// end of a step (0: DefaultMaxBytes).
	MaxBytes int64
	// FlushBytes is how many encoded bytes are buffered before they are
	// written (0: 32 KiB); they are written at least once a second of
	// recorded time as well.
	FlushBytes int
}

// File is the name of worker name's current timeline file.
func File(name string) string { return name + ".jsonl" }

// Previous is the name of the file worker name's recorder last rotated.
func Previous(name string) string { return name + ".jsonl.1" }

// A Recorder writes one worker's events to its timeline file. Its methods
// are called from one goroutine (the training loop's); a nil *Recorder
// records nothing, so callers need not check. The first error writing the
// file stops recording; Close returns it.
type Recorder struct {
	path, prev string
	o          Options
	f          *os.File
	base       time.Time // the anchor: its monotonic reading times events
	header     []byte

	pending []Event // the events of the step in progress
	buf     []byte  // encoded lines not yet written
	size    int64   // the current file's bytes, written and buffered
	flushed int64   // the End of the last event when buf was last written
	last    int64   // the largest End committed
	err     error   // the first error; nothing is recorded after it
	closed  bool
}

// Open starts recording worker name's timeline in dir (created if need
// be): it appends a new segment to dir/File(name), anchored now.
func Open(dir, name string, o Options) (*Recorder, error) {
	if name == "" {
		return nil, errors.New("timeline: no worker name")
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.FlushBytes <= 0 {
		o.FlushBytes = 32 << 10
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("timeline: %w", err)
	}
	base := time.Now()
	r := &Recorder{
		path: filepath.Join(dir, File(name)), prev: filepath.Join(dir, Previous(name)),
		o: o, base: base,
		header:  appendHeader(nil, Header{Version: Version, Worker: name, PID: os.Getpid(), WallNS: base.UnixNano()}),
		pending: make([]Event, 0, 64), buf: make([]byte, 0, o.FlushBytes+4096),
	}
	if err := r.open(); err != nil {
		return nil, err
	}
	if r.size >= r.o.MaxBytes {
		if err := r.rotate(); err != nil {
			r.f.Close()
			return nil, err
		}
	}
	return r, nil
}

// open opens the current file for appending, drops a last line cut off by
// a kill, and buffers a header.
func (r *Recorder) open() error {
	f, err := os.OpenFile(r.path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("timeline: %w", err)
	}
	size, err := wholeLines(f)
	if err == nil {
		_, err = f.Seek(size, io.SeekStart)
	}
	if err != nil {
		f.Close()
		return fmt.Errorf("timeline: %s: %w", r.path, err)
	}
	r.f, r.size = f, size
	r.buf = append(r.buf, r.header...)
	r.size += int64(len(r.header))
	return nil
}

// wholeLines truncates f after its last newline and returns its new size.
func wholeLines(f *os.File) (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	size := st.Size()
	var chunk [4096]byte
	for end := size; end > 0; {
		n := min(end, int64(len(chunk)))
		if _, err := f.ReadAt(chunk[:n], end-n); err != nil {
			return 0, err
		}
		if i := bytes.LastIndexByte(chunk[:n], '\n'); i >= 0 {
			keep := end - n + int64(i) + 1
			if keep != size {
				return keep, f.Truncate(keep)
			}
			return size, nil
		}
		end -= n
	}
	if size != 0 {
		return 0, f.Truncate(0)
	}
	return 0, nil
}

// rotate makes the current file the previous one and starts a new one.
func (r *Recorder) rotate() error {
	if err := r.write(); err != nil {
		return err
	}
	if err := r.f.Close(); err != nil {
		return fmt.Errorf("timeline: %w", err)
	}
	r.f = nil
	if err := os.Rename(r.path, r.prev); err != nil {
		return fmt.Errorf("timeline: %w", err)
	}
	return r.open()
}

// Path is the file the recorder writes.
func (r *Recorder) Path() string { return r.path }

// At is t as an event time: nanoseconds after the anchor, by the monotonic
// clock.
func (r *Recorder) At(t time.Time) int64 { return int64(t.Sub(r.base)) }

// Add records an event of kind k that ended with step steps taken.
func (r *Recorder) Add(k Kind, step int64, start, end time.Time) {
	if r == nil || r.err != nil {
		return
	}
	r.pending = append(r.pending, Event{Kind: k, Step: step, Start: r.At(start), End: r.At(end)})
}

// AddAllReduce records bucket's all-reduce in step, of bytes fp32 bytes.
func (r *Recorder) AddAllReduce(step int64, bucket int, bytes int64, start, end time.Time) {
	if r == nil || r.err != nil {
		return
	}
	r.pending = append(r.pending, Event{Kind: AllReduce, Step: step, Bucket: int32(bucket), Bytes: bytes, Start: r.At(start), End: r.At(end)})
}

// Commit ends a step (or an event between steps): its events are encoded,
// written when enough are buffered or a second has passed since the last
// write, and the file is rotated when it has grown past MaxBytes.
func (r *Recorder) Commit() {
	if r == nil || r.err != nil {
		return
	}
	before := len(r.buf)
	for i := range r.pending {
		ev := &r.pending[i]
		r.buf = appendEvent(r.buf, ev)
		r.last = max(r.last, ev.End)
	}
	r.pending = r.pending[:0]
	r.size += int64(len(r.buf) - before)
	if len(r.buf) >= r.o.FlushBytes || r.last-r.flushed >= int64(time.Second) {
		r.err = r.write()
	}
	if r.err == nil && r.size >= r.o.MaxBytes {
		r.err = r.rotate()
	}
}

// Flush commits the pending events and writes everything buffered.
func (r *Recorder) Flush() error {
	if r == nil {
		return nil
	}
	r.Commit()
	if r.err == nil {
		r.err = r.write()
	}
	return r.err
}

// write writes the buffered lines.
func (r *Recorder) write() error {
	r.flushed = r.last
	if len(r.buf) == 0 {
		return nil
	}
	_, err := r.f.Write(r.buf)
	r.buf = r.buf[:0]
	if err != nil {
		return fmt.Errorf("timeline: %w", err)
	}
	return nil
}

// Close writes what is buffered and closes the file; it returns the first
// error recording met. Nothing is recorded after it.
func (r *Recorder) Close() error {
	if r == nil || r.closed {
		return nil
	}
	r.closed = true
	err := r.Flush()
	if r.f != nil {
		if cerr := r.f.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("timeline: %w", cerr)
		}
		r.f = nil
	}
	if r.err == nil {
		r.err = errClosed
	}
	return err
}

var errClosed = errors.New("timeline: closed")

// appendHeader appends h's line.
func appendHeader(b []byte, h Header) []byte {
	name, _ := json.Marshal(h.Worker) // a string always marshals
	b = append(b, `{"timeline":`...)
	b = strconv.AppendInt(b, int64(h.Version), 10)
	b = append(b, `,"worker":`...)
	b = append(b, name...)
	b = append(b, `,"pid":`...)
	b = strconv.AppendInt(b, int64(h.PID), 10)
	b = append(b, `,"wall_ns":`...)
	b = strconv.AppendInt(b, h.WallNS, 10)
	return append(b, "}\n"...)
}

// appendEvent appends ev's line. Times before the anchor and negative
// durations (neither happens on a monotonic clock) are written as 0.
func appendEvent(b []byte, ev *Event) []byte {
	start, d := max(ev.Start, 0), max(ev.End-max(ev.Start, 0), 0)
	b = append(b, `{"ev":"`...)
	b = append(b, ev.Kind.String()...)
	b = append(b, `","step":`...)
	b = strconv.AppendInt(b, ev.Step, 10)
	b = append(b, `,"t":`...)
	b = strconv.AppendInt(b, start, 10)
	b = append(b, `,"d":`...)
	b = strconv.AppendInt(b, d, 10)
	if ev.Kind == AllReduce {
		b = append(b, `,"bucket":`...)
		b = strconv.AppendInt(b, int64(ev.Bucket), 10)
		b = append(b, `,"bytes":`...)
		b = strconv.AppendInt(b, ev.Bytes, 10)
	}
	return append(b, "}\n"...)
}

// encode is segs as a timeline file holds them.
func encode(segs []Segment) []byte {
	var b []byte
	for _, s := range segs {
		b = appendHeader(b, s.Header)
		for i := range s.Events {
			b = appendEvent(b, &s.Events[i])
		}
	}
	return b
}
