package worker

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"
	"unicode"

	"github.com/ringtrain/ringtrain/api"
	"github.com/ringtrain/ringtrain/checkpoint"
)

// The heartbeat intervals a worker accepts from a coordinator.
const (
	minHeartbeat = 10 * time.Millisecond
	maxHeartbeat = time.Minute
)

// maxStatus bounds the status line of a heartbeat reply (it is logged).
const maxStatus = 4096

// checkJoinReply checks every field of a join reply the worker uses, and
// returns the heartbeat interval: within [10ms, 1m]; the gossip addresses
// HOST:PORT; the job file present (the caller parses it and checks its
// hash); and, unless the worker has its own store (ownStore), the store
// directory absolute and clean.
func checkJoinReply(rep *api.JoinReply, ownStore bool) (time.Duration, error) {
	ms := rep.HeartbeatMillis
	if ms < int(minHeartbeat/time.Millisecond) || ms > int(maxHeartbeat/time.Millisecond) {
		return 0, fmt.Errorf("heartbeat interval of %d ms is outside [%v, %v]", ms, minHeartbeat, maxHeartbeat)
	}
	if strings.TrimSpace(rep.Job) == "" {
		return 0, errors.New("no job file in the join reply")
	}
	for _, a := range rep.Gossip {
		if err := api.CheckAddress(a); err != nil {
			return 0, fmt.Errorf("gossip address %w", err)
		}
	}
	if !ownStore {
		if err := checkStoreDir(rep.StoreDir); err != nil {
			return 0, err
		}
	}
	return time.Duration(ms) * time.Millisecond, nil
}

// checkStoreDir checks the checkpoint store a coordinator advertises.
func checkStoreDir(dir string) error {
	switch {
	case dir == "":
		return errors.New("no checkpoint store: the coordinator advertises none and --store is not set")
	case !filepath.IsAbs(dir):
		return fmt.Errorf("checkpoint store %q is not absolute", dir)
	case filepath.Clean(dir) != dir || strings.ContainsRune(dir, 0):
		return fmt.Errorf("checkpoint store %q is not clean (want %q)", dir, filepath.Clean(dir))
	}
	return nil
}

// checkWorkerName checks a worker name as NewClusterWorker does.
func checkWorkerName(name string) error {
	if name == "" || strings.ContainsAny(name, " \t\r\n/\\\x00") || !printable(name) {
		return fmt.Errorf("bad worker name %q", name)
	}
	return nil
}

// printable reports whether s holds no control characters.
func printable(s string) bool {
	return !strings.ContainsFunc(s, unicode.IsControl)
}

// checkHeartbeatReply checks every field of a heartbeat reply the worker
// uses: a non-negative checkpoint step, a printable status line of at most
// maxStatus bytes, and a generation (when there is one) with a number, a
// ring of distinct, well-formed worker names at HOST:PORT data addresses,
// a non-negative step and data position, at most one of a source (a member
// of the ring) and a restore (a checkpoint name, so a path inside the
// store).
func checkHeartbeatReply(rep *api.HeartbeatReply) error {
	if rep.CheckpointAt < 0 {
		return fmt.Errorf("checkpoint step %d", rep.CheckpointAt)
	}
	if len(rep.Status) > maxStatus || !printable(rep.Status) {
		return fmt.Errorf("status line of %d bytes with control characters or over %d bytes", len(rep.Status), maxStatus)
	}
	g := rep.Generation
	if g == nil {
		return nil
	}
	if g.Number == 0 {
		return errors.New("generation 0")
	}
	if len(g.Ring) == 0 {
		return fmt.Errorf("generation %d has an empty ring", g.Number)
	}
	ranks := make(map[string]int, len(g.Ring))
	for i, p := range g.Ring {
		if err := checkWorkerName(p.Name); err != nil {
			return fmt.Errorf("generation %d, rank %d: %w", g.Number, i, err)
		}
		if r, dup := ranks[p.Name]; dup {
			return fmt.Errorf("generation %d names %s twice (ranks %d and %d)", g.Number, p.Name, r, i)
		}
		ranks[p.Name] = i
		if err := api.CheckAddress(p.DataAddr); err != nil {
			return fmt.Errorf("generation %d, rank %d (%s): data address %w", g.Number, i, p.Name, err)
		}
	}
	if g.ResumeStep < 0 {
		return fmt.Errorf("generation %d: resume step %d", g.Number, g.ResumeStep)
	}
	if g.Epoch < 0 || g.Consumed < 0 {
		return fmt.Errorf("generation %d: data position epoch %d, consumed %d", g.Number, g.Epoch, g.Consumed)
	}
	if g.Source != "" && g.Restore != "" {
		return fmt.Errorf("generation %d names both a source (%s) and a checkpoint to restore (%q)", g.Number, g.Source, g.Restore)
	}
	if _, ok := ranks[g.Source]; g.Source != "" && !ok {
		return fmt.Errorf("generation %d names source %s, not in its ring", g.Number, g.Source)
	}
	if g.Restore != "" {
		if err := checkpoint.ValidName(g.Restore); err != nil {
			return fmt.Errorf("generation %d: restore %w", g.Number, err)
		}
	}
	return nil
}
