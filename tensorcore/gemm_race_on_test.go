//go:build race

package tensorcore

// raceEnabled: the race detector makes sync.Pool drop items, so tests of
// the nil Pool's allocation count do not hold.
const raceEnabled = true
