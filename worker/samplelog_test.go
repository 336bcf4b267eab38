package worker

import (
	"bytes"
	"reflect"
	"strings"
	"testing"

	"github.com/ringtrain/ringtrain/dataset"
)

// TestSampleLogRoundTrip: records written by the logger read back equal,
// an empty share included; a partial last line is dropped; a malformed
// line is an error naming it.
func TestSampleLogRoundTrip(t *testing.T) {
	var b bytes.Buffer
	l := &sampleLogger{w: &b, logf: t.Logf}
	want := []SampleRecord{
		{Generation: 3, Step: 7, Epoch: 1, Consumed: 48, Rank: 2, World: 4, Samples: []int{9, 0, 123456}},
		{Generation: 4, Step: 8, Epoch: 1, Consumed: 56, Rank: 3, World: 4},
	}
	for _, r := range want {
		l.record(r.Generation, r.Step, dataset.Position{Epoch: r.Epoch, Consumed: r.Consumed}, r.Rank, r.World, r.Samples)
	}
	b.WriteString("gen 4 step 9 epoch 1 consumed 64 rank 3 wor") // killed mid-write
	got, err := ReadSampleLog(&b)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("read back %+v, %v; want %+v", got, err, want)
	}
	for _, bad := range []string{
		"gen 1 step 2 epoch 0 consumed 0 rank 0 world 1 samples x\n",
		"gen 1 step 2 epoch 0 consumed 0 rank 0 samples 1\n",
		"gen 1 step -2 epoch 0 consumed 0 rank 0 world 1 samples 1\n",
	} {
		if _, err := ReadSampleLog(strings.NewReader(want0(t) + bad)); err == nil || !strings.Contains(err.Error(), "line 2") {
			t.Errorf("%q: error %v, want one naming line 2", bad, err)
		}
	}
}

func want0(t *testing.T) string {
	t.Helper()
	return string(appendSampleRecord(nil, SampleRecord{Generation: 1, Step: 1, World: 1, Samples: []int{0}}))
}
