package checkpoint

import "testing"

func TestDescribePosition(t *testing.T) {
	for _, tc := range []struct {
		epoch, consumed, samples int
		want                     string
	}{
		{0, 0, 60000, "before epoch 1"},
		{0, 0, 0, "before epoch 1"},
		{0, 3200, 60000, "epoch 1, 3200 of 60000 samples"},
		{0, 3200, 0, "epoch 1, 3200 samples in"},
		// The final checkpoint of a 1-epoch run: the epoch is done, not
		// "epoch 2".
		{1, 0, 60000, "after epoch 1"},
		{1, 0, 0, "after epoch 1"},
		{0, 60000, 60000, "after epoch 1"},
		{2, 59968, 60000, "epoch 3, 59968 of 60000 samples"},
		{11, 0, 60000, "after epoch 11"},
	} {
		if got := DescribePosition(tc.epoch, tc.consumed, tc.samples); got != tc.want {
			t.Errorf("DescribePosition(%d, %d, %d) = %q, want %q", tc.epoch, tc.consumed, tc.samples, got, tc.want)
		}
	}
}
