package checkpoint

import "fmt"

// DescribePosition says where training stands at a data position, for
// people: epoch is 0-based and consumed counts the samples of it already
// used, as in Manifest (Epoch, Position); samples is the size of an epoch,
// 0 when unknown. Epochs count from 1, and a position at an epoch's
// boundary is "after" the epoch that ended there:
//
//	epoch 0, consumed 0         "before epoch 1"
//	epoch 1, consumed 0         "after epoch 1"
//	epoch 0, consumed = samples "after epoch 1"
//	epoch 1, consumed 3200      "epoch 2, 3200 of 60000 samples" ("epoch 2, 3200 samples in" when samples is 0)
//
// Logs, `ringtrain status` and `ringtrain checkpoint list` all use it.
func DescribePosition(epoch, consumed, samples int) string {
	switch {
	case samples > 0 && consumed >= samples:
		return fmt.Sprintf("after epoch %d", epoch+1)
	case consumed == 0 && epoch == 0:
		return "before epoch 1"
	case consumed == 0:
		return fmt.Sprintf("after epoch %d", epoch)
	case samples > 0:
		return fmt.Sprintf("epoch %d, %d of %d samples", epoch+1, consumed, samples)
	}
	return fmt.Sprintf("epoch %d, %d samples in", epoch+1, consumed)
}
