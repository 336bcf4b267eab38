//go:build !race

package tensorcore

const raceEnabled = false
