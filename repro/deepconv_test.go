package repro

import (
	"math"
	"testing"

	"github.com/ringtrain/ringtrain/runlog"
)

func TestFinalTrainLoss(t *testing.T) {
	recs := []runlog.Record{
		{Kind: "train", Step: 50, Loss: 2},
		{Kind: "train", Step: 100, Loss: 1.5},
		{Kind: "eval", Step: 100, Loss: 9},
		{Kind: "train", Step: 150, Loss: 1},
		{Kind: "train", Step: 200, Loss: 0.5},
		{Kind: "eval", Step: 200, Loss: 9},
	}
	for _, c := range []struct {
		span int
		want float64
	}{
		{100, 0.75},                     // windows ending at 150 and 200
		{50, 0.5},                       // the last window alone
		{1000, (2 + 1.5 + 1 + 0.5) / 4}, // all of them
	} {
		got, err := finalTrainLoss(recs, c.span)
		if err != nil || math.Abs(got-c.want) > 1e-12 {
			t.Errorf("span %d: %v, %v; want %v", c.span, got, err, c.want)
		}
	}
	// Uneven windows weigh by the steps they cover: an epoch's end cuts
	// a window short.
	uneven := []runlog.Record{{Kind: "train", Step: 50, Loss: 2}, {Kind: "train", Step: 60, Loss: 1}, {Kind: "train", Step: 100, Loss: 0}}
	if got, _ := finalTrainLoss(uneven, 50); math.Abs(got-(10*1+40*0)/50.0) > 1e-12 {
		t.Errorf("uneven windows: %v", got)
	}
	if _, err := finalTrainLoss([]runlog.Record{{Kind: "eval", Step: 10}}, 100); err == nil {
		t.Error("no training records: no error")
	}
}
