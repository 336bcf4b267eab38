package runlog

// The run directory's TensorBoard event file: the scalars of metrics.jsonl
// as TFRecord-framed Event protos, so `tensorboard --logdir runs/` shows a
// ringtrain run.
//
// Framing of one record (TFRecord):
//
//	uint64 length, little-endian
//	uint32 masked CRC-32C of the 8 length bytes
//	length bytes of data (one serialized Event)
//	uint32 masked CRC-32C of the data
//
// The masked CRC of b is mask(crc32c(b)), mask(c) = ((c >> 15) | (c << 17))
// + 0xa282ead8 in uint32 arithmetic; CRC-32C is the Castagnoli CRC.
//
// The protos, proto3 (only the fields ringtrain writes or reads):
//
//	message Event   { double wall_time = 1; int64 step = 2;
//	                  oneof what { string file_version = 3; Summary summary = 5; } }
//	message Summary { repeated Value value = 1; }
//	message Summary.Value { string tag = 1; oneof value { float simple_value = 2; } }

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// FileVersion is the file_version of an event file's first event.
const FileVersion = "brain.Event:2"

// EventFilePrefix starts the name of every TensorBoard event file;
// ringtrain's end in EventFileSuffix (see Log).
const (
	EventFilePrefix = "events.out.tfevents."
	EventFileSuffix = ".ringtrain"
)

// MaxEventRecord is the largest record ReadEvents accepts: 16 MiB. A
// length field above it is an error before anything is allocated for it,
// and so is one longer than what is left of the file, so a hostile length
// costs at most min(16 MiB, the file's size).
const MaxEventRecord = 16 << 20

// Event is one event of an event file: either the file's version (its
// first event) or a summary of scalars.
type Event struct {
	WallTime    float64 // seconds since the Unix epoch
	Step        int64
	FileVersion string   // set on the version event only
	Scalars     []Scalar // a summary's simple_value scalars
}

// Scalar is one tagged value of a summary.
type Scalar struct {
	Tag   string
	Value float32
}

// Field numbers of the protos above.
const (
	eventWallTime    protowire.Number = 1
	eventStep        protowire.Number = 2
	eventFileVersion protowire.Number = 3
	eventSummary     protowire.Number = 5
	summaryValue     protowire.Number = 1
	valueTag         protowire.Number = 1
	valueSimpleValue protowire.Number = 2
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func crc32c(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// maskCRC is TFRecord's masking of a CRC stored next to the data it covers.
func maskCRC(c uint32) uint32 { return ((c >> 15) | (c << 17)) + 0xa282ead8 }

// wallTime is t in float seconds since the Unix epoch.
func wallTime(t time.Time) float64 {
	return float64(t.Unix()) + float64(t.Nanosecond())/1e9
}

// recordEvent is the summary event of a record: tags train/… for a
// "train" record and test/… for an "eval" one. Loss and accuracy are
// always there; a train record's lr, images_per_second and
// data_wait_seconds are left out when zero, as metrics.jsonl leaves them
// out; train/epoch is the record's Progress (the fractional epoch). A
// record of another kind has no event (ok is false).
func recordEvent(r Record) (ev Event, ok bool) {
	ev = Event{WallTime: wallTime(r.Time), Step: int64(r.Step)}
	add := func(tag string, v float64) { ev.Scalars = append(ev.Scalars, Scalar{tag, float32(v)}) }
	switch r.Kind {
	case "train":
		add("train/loss", r.Loss)
		add("train/accuracy", r.Accuracy)
		add("train/epoch", r.Progress)
		for _, o := range []struct {
			tag string
			v   float64
		}{{"train/lr", r.LR}, {"train/images_per_second", r.ImagesPerSecond}, {"train/data_wait_seconds", r.DataWaitSeconds}} {
			if o.v != 0 {
				add(o.tag, o.v)
			}
		}
	case "eval":
		add("test/loss", r.Loss)
		add("test/accuracy", r.Accuracy)
	default:
		return Event{}, false
	}
	return ev, true
}

// appendEvent appends ev's proto3 encoding: wall_time and step are left
// out when zero (proto3 defaults; a wall_time of -0 is written); the oneof is file_version when set,
// else the summary (simple_value is a oneof member, so a zero is written).
func appendEvent(b []byte, ev Event) []byte {
	if math.Float64bits(ev.WallTime) != 0 {
		b = protowire.AppendTag(b, eventWallTime, protowire.Fixed64Type)
		b = protowire.AppendFixed64(b, math.Float64bits(ev.WallTime))
	}
	if ev.Step != 0 {
		b = protowire.AppendTag(b, eventStep, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(ev.Step))
	}
	if ev.FileVersion != "" {
		b = protowire.AppendTag(b, eventFileVersion, protowire.BytesType)
		return protowire.AppendString(b, ev.FileVersion)
	}
	var sum []byte
	for _, s := range ev.Scalars {
		var v []byte
		if s.Tag != "" {
			v = protowire.AppendTag(v, valueTag, protowire.BytesType)
			v = protowire.AppendString(v, s.Tag)
		}
		v = protowire.AppendTag(v, valueSimpleValue, protowire.Fixed32Type)
		v = protowire.AppendFixed32(v, math.Float32bits(s.Value))
		sum = protowire.AppendTag(sum, summaryValue, protowire.BytesType)
		sum = protowire.AppendBytes(sum, v)
	}
	b = protowire.AppendTag(b, eventSummary, protowire.BytesType)
	return protowire.AppendBytes(b, sum)
}

// appendRecord appends data framed as one TFRecord.
func appendRecord(b, data []byte) []byte {
	var head [12]byte
	binary.LittleEndian.PutUint64(head[:8], uint64(len(data)))
	binary.LittleEndian.PutUint32(head[8:], maskCRC(crc32c(head[:8])))
	b = append(b, head[:]...)
	b = append(b, data...)
	var tail [4]byte
	binary.LittleEndian.PutUint32(tail[:], maskCRC(crc32c(data)))
	return append(b, tail[:]...)
}

// eventWriter appends framed events to one event file.
type eventWriter struct {
	path string
	f    *os.File
	w    *bufio.Writer
	buf  []byte
}

// now is the clock of event file names and version events (tests fix it).
var now = time.Now

// eventSeq numbers the event files this process creates, so two created
// in the same second get different names.
var eventSeq atomic.Uint64

// createEventFile creates a new event file in dir, named
// events.out.tfevents.<unix seconds>.<hostname>.<pid>.<n>.ringtrain (n
// counts the files this process created), and writes its version event.
func createEventFile(dir string) (*eventWriter, error) {
	host, err := os.Hostname()
	if err != nil || host == "" || strings.ContainsAny(host, `/\`) {
		host = "localhost"
	}
	t := now()
	for {
		name := fmt.Sprintf("%s%d.%s.%d.%d%s", EventFilePrefix, t.Unix(), host, os.Getpid(), eventSeq.Add(1), EventFileSuffix)
		path := filepath.Join(dir, name)
		f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if errors.Is(err, os.ErrExist) {
			continue // a file left by an earlier process of the same pid
		}
		if err != nil {
			return nil, fmt.Errorf("runlog: %w", err)
		}
		ew := &eventWriter{path: path, f: f, w: bufio.NewWriter(f)}
		if err := ew.write(Event{WallTime: wallTime(t), FileVersion: FileVersion}); err != nil {
			f.Close()
			os.Remove(path)
			return nil, err
		}
		return ew, nil
	}
}

func (ew *eventWriter) write(ev Event) error {
	ew.buf = appendEvent(ew.buf[:0], ev)
	if _, err := ew.w.Write(appendRecord(nil, ew.buf)); err != nil {
		return fmt.Errorf("runlog: %s: %w", ew.path, err)
	}
	return nil
}

func (ew *eventWriter) flush() error {
	if err := ew.w.Flush(); err != nil {
		return fmt.Errorf("runlog: %s: %w", ew.path, err)
	}
	return nil
}

func (ew *eventWriter) close() error {
	err := ew.flush()
	if cerr := ew.f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("runlog: %w", cerr)
	}
	return err
}

// EventFiles lists ringtrain's event files in the run directory dir, in
// name order.
func EventFiles(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("runlog: %w", err)
	}
	var out []string
	for _, e := range ents {
		if n := e.Name(); isEventFile(n) && e.Type().IsRegular() {
			out = append(out, filepath.Join(dir, n))
		}
	}
	return out, nil
}

func isEventFile(name string) bool {
	return strings.HasPrefix(name, EventFilePrefix) && strings.HasSuffix(name, EventFileSuffix)
}

// removeEventFilesBut removes ringtrain's event files in dir other than
// keep. Event files of other writers (no .ringtrain suffix) stay.
func removeEventFilesBut(dir, keep string) error {
	files, err := EventFiles(dir)
	if err != nil {
		return err
	}
	for _, p := range files {
		if p == keep {
			continue
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("runlog: %w", err)
		}
	}
	return nil
}

// ReadEvents reads and checks an event file: both CRCs of every record,
// then the Event proto in it. Fields it does not know are skipped, and so
// are summary values that are not simple_value scalars. On malformed input
// it returns the events before the bad record and an error naming the
// file, the record's index (from 0) and its byte offset; a file still
// being written may end in such a partial record. No record may be longer
// than MaxEventRecord (16 MiB).
func ReadEvents(path string) ([]Event, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("runlog: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("runlog: %w", err)
	}
	// The file as it is now: what a writer appends later is not read.
	return readEvents(path, bufio.NewReaderSize(io.LimitReader(f, fi.Size()), 64<<10), fi.Size())
}

// readEvents reads the events of r, which holds size bytes; name is for
// errors.
func readEvents(name string, r io.Reader, size int64) ([]Event, error) {
	var events []Event
	var off int64
	var head [12]byte
	var tail [4]byte
	for i := 0; ; i++ {
		fail := func(format string, a ...any) ([]Event, error) {
			return events, fmt.Errorf("runlog: %s: record %d at byte %d: %s", name, i, off, fmt.Sprintf(format, a...))
		}
		n, err := io.ReadFull(r, head[:])
		if err == io.EOF {
			return events, nil
		}
		if err != nil {
			if n > 0 && errors.Is(err, io.ErrUnexpectedEOF) {
				return fail("truncated header: %d of 12 bytes", n)
			}
			return fail("%v", err)
		}
		length := binary.LittleEndian.Uint64(head[:8])
		if got, want := binary.LittleEndian.Uint32(head[8:]), maskCRC(crc32c(head[:8])); got != want {
			return fail("length CRC mismatch (stored %#08x, computed %#08x)", got, want)
		}
		if length > MaxEventRecord {
			return fail("length %d is over the %d-byte limit", length, MaxEventRecord)
		}
		if left := size - off - 12; int64(length)+4 > left {
			return fail("truncated: length %d needs %d bytes with its CRC, %d left", length, length+4, max(left, 0))
		}
		data := make([]byte, length)
		if _, err := io.ReadFull(r, data); err != nil {
			return fail("reading %d bytes of data: %v", length, err)
		}
		if _, err := io.ReadFull(r, tail[:]); err != nil {
			return fail("reading the data CRC: %v", err)
		}
		if got, want := binary.LittleEndian.Uint32(tail[:]), maskCRC(crc32c(data)); got != want {
			return fail("data CRC mismatch (stored %#08x, computed %#08x)", got, want)
		}
		ev, err := decodeEvent(data)
		if err != nil {
			return fail("%v", err)
		}
		events = append(events, ev)
		off += 12 + int64(length) + 4
	}
}

// decodeEvent decodes an Event proto. As proto3 has it, the last of
// file_version and summary wins (they are a oneof), and repeated summary
// fields merge.
func decodeEvent(b []byte) (Event, error) {
	var ev Event
	err := eachField(b, "Event", func(num protowire.Number, typ protowire.Type, v []byte) error {
		switch num {
		case eventWallTime:
			if typ != protowire.Fixed64Type {
				return wireTypeError("Event.wall_time", typ, protowire.Fixed64Type)
			}
			x, _ := protowire.ConsumeFixed64(v)
			ev.WallTime = math.Float64frombits(x)
		case eventStep:
			if typ != protowire.VarintType {
				return wireTypeError("Event.step", typ, protowire.VarintType)
			}
			x, _ := protowire.ConsumeVarint(v)
			ev.Step = int64(x)
		case eventFileVersion:
			if typ != protowire.BytesType {
				return wireTypeError("Event.file_version", typ, protowire.BytesType)
			}
			s, _ := protowire.ConsumeBytes(v)
			ev.FileVersion, ev.Scalars = string(s), nil
		case eventSummary:
			if typ != protowire.BytesType {
				return wireTypeError("Event.summary", typ, protowire.BytesType)
			}
			s, _ := protowire.ConsumeBytes(v)
			scalars, err := decodeSummary(s, ev.Scalars)
			if err != nil {
				return err
			}
			ev.FileVersion, ev.Scalars = "", scalars
		}
		return nil
	})
	return ev, err
}

func decodeSummary(b []byte, scalars []Scalar) ([]Scalar, error) {
	err := eachField(b, "Summary", func(num protowire.Number, typ protowire.Type, v []byte) error {
		if num != summaryValue {
			return nil
		}
		if typ != protowire.BytesType {
			return wireTypeError("Summary.value", typ, protowire.BytesType)
		}
		m, _ := protowire.ConsumeBytes(v)
		var s Scalar
		simple := false
		err := eachField(m, "Summary.Value", func(num protowire.Number, typ protowire.Type, v []byte) error {
			switch num {
			case valueTag:
				if typ != protowire.BytesType {
					return wireTypeError("Summary.Value.tag", typ, protowire.BytesType)
				}
				t, _ := protowire.ConsumeBytes(v)
				s.Tag = string(t)
			case valueSimpleValue:
				if typ != protowire.Fixed32Type {
					return wireTypeError("Summary.Value.simple_value", typ, protowire.Fixed32Type)
				}
				x, _ := protowire.ConsumeFixed32(v)
				s.Value, simple = math.Float32frombits(x), true
			}
			return nil
		})
		if err != nil {
			return err
		}
		if simple {
			scalars = append(scalars, s)
		}
		return nil
	})
	return scalars, err
}

// eachField calls fn with each field of the message b: its number, wire
// type and encoded value (checked to be well-formed).
func eachField(b []byte, msg string, fn func(protowire.Number, protowire.Type, []byte) error) error {
	for pos := 0; pos < len(b); {
		num, typ, n := protowire.ConsumeTag(b[pos:])
		if n < 0 {
			return fmt.Errorf("%s: bad field tag at byte %d of the message: %v", msg, pos, protowire.ParseError(n))
		}
		m := protowire.ConsumeFieldValue(num, typ, b[pos+n:])
		if m < 0 {
			return fmt.Errorf("%s: bad value of field %d at byte %d of the message: %v", msg, num, pos, protowire.ParseError(m))
		}
		if err := fn(num, typ, b[pos+n:pos+n+m]); err != nil {
			return err
		}
		pos += n + m
	}
	return nil
}

func wireTypeError(field string, got, want protowire.Type) error {
	return fmt.Errorf("%s has wire type %d, want %d", field, got, want)
}
