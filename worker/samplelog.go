package worker

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/ringtrain/ringtrain/dataset"
)

// SampleRecord is one line of a sample log: the samples one rank took for
// one training step, written when the rank takes the step's batch, before
// it computes anything. A step that a ring began but never finished (a
// member died) is taken again by the next generation, so the steps of a
// run's history are, for each step number, the records of the highest
// generation that took it.
type SampleRecord struct {
	Generation  uint64
	Step        int64 // the step's number, counting from 1
	Epoch       int
	Consumed    int // samples of the epoch's order consumed before the step
	Rank, World int
	Samples     []int // the indices this rank trained on, in order
}

// appendSampleRecord appends r's line:
//
//	gen G step S epoch E consumed C rank R world W samples I I I…
func appendSampleRecord(b []byte, r SampleRecord) []byte {
	b = fmt.Appendf(b, "gen %d step %d epoch %d consumed %d rank %d world %d samples", r.Generation, r.Step, r.Epoch, r.Consumed, r.Rank, r.World)
	for _, i := range r.Samples {
		b = append(b, ' ')
		b = strconv.AppendInt(b, int64(i), 10)
	}
	return append(b, '\n')
}

// ReadSampleLog reads a sample log. A last line without its newline (a
// worker killed while writing it) is dropped; any other malformed line is
// an error naming its number.
func ReadSampleLog(r io.Reader) ([]SampleRecord, error) {
	br := bufio.NewReader(r)
	var recs []SampleRecord
	for n := 1; ; n++ {
		line, err := br.ReadString('\n')
		if err == io.EOF {
			return recs, nil // a partial last line, or none
		}
		if err != nil {
			return recs, fmt.Errorf("worker: sample log: %w", err)
		}
		rec, err := parseSampleRecord(strings.TrimSuffix(line, "\n"))
		if err != nil {
			return recs, fmt.Errorf("worker: sample log line %d: %w", n, err)
		}
		recs = append(recs, rec)
	}
}

func parseSampleRecord(line string) (SampleRecord, error) {
	var r SampleRecord
	f := strings.Fields(line)
	keys := []string{"gen", "step", "epoch", "consumed", "rank", "world", "samples"}
	if len(f) < 2*len(keys)-1 {
		return r, fmt.Errorf("%d fields, want at least %d", len(f), 2*len(keys)-1)
	}
	var nums [6]int64
	for i, k := range keys {
		if f[2*i] != k {
			return r, fmt.Errorf("field %d is %q, want %q", 2*i+1, f[2*i], k)
		}
		if i < len(nums) {
			v, err := strconv.ParseInt(f[2*i+1], 10, 64)
			if err != nil || v < 0 {
				return r, fmt.Errorf("%s %q is not a count", k, f[2*i+1])
			}
			nums[i] = v
		}
	}
	r = SampleRecord{Generation: uint64(nums[0]), Step: nums[1], Epoch: int(nums[2]), Consumed: int(nums[3]), Rank: int(nums[4]), World: int(nums[5])}
	for _, s := range f[2*len(keys)-1:] {
		v, err := strconv.Atoi(s)
		if err != nil || v < 0 {
			return r, fmt.Errorf("sample %q is not an index", s)
		}
		r.Samples = append(r.Samples, v)
	}
	return r, nil
}

// sampleLogger writes a worker's sample log, one write per line so that
// a worker killed mid-run leaves whole lines (and at most one partial
// last one). Its buffer is reused from step to step.
type sampleLogger struct {
	w    io.Writer
	logf func(string, ...any) // told the first write error
	buf  []byte
	err  error // the first write error; later steps write nothing
}

func (l *sampleLogger) record(gen uint64, step int64, pos dataset.Position, rank, world int, samples []int) {
	if l == nil || l.err != nil {
		return
	}
	l.buf = appendSampleRecord(l.buf[:0], SampleRecord{Generation: gen, Step: step, Epoch: pos.Epoch, Consumed: pos.Consumed, Rank: rank, World: world, Samples: samples})
	if _, l.err = l.w.Write(l.buf); l.err != nil {
		l.logf("warning: sample log: %v (no more steps are logged)", l.err)
	}
}
