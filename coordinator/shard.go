package coordinator

import "github.com/ringtrain/ringtrain/dataset"

// The data-order policy (positions, epoch orders, shards) is dataset's, so
// workers compute their shards with the same functions without importing
// the coordinator; these names keep the state machine's API self-contained.
type (
	Position  = dataset.Position
	ShardSpec = dataset.ShardSpec
)

// AdvancePosition is dataset.AdvancePosition.
func AdvancePosition(p Position, n, batch int, steps int64) Position {
	return dataset.AdvancePosition(p, n, batch, steps)
}
