package faults

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/checkpoint"
)

// manifest is the record of checkpoint step with one file of the given
// content hash.
func manifest(step int, sha string) string {
	m := checkpoint.Manifest{Version: 1, Name: checkpoint.NameForStep(step), Step: step,
		Files: []checkpoint.FileInfo{{Name: "worker-0.safetensors", Size: 10, SHA256: sha}}}
	b, _ := json.Marshal(m)
	return string(b)
}

func name(step int) string { return checkpoint.NameForStep(step) }

// commit is the two key events of one commit, at revision rev.
func commit(rev int64, step int, sha string) []KeyEvent {
	return []KeyEvent{{Rev: rev, Key: name(step), Value: manifest(step, sha)}, {Rev: rev, Key: latestKey, Value: name(step)}}
}

// healthy is a run that keeps every invariant: four commits, a retention
// of 2 that deletes the two oldest in one revision, identical digests.
func healthy() Observations {
	var keys []KeyEvent
	keys = append(keys, commit(10, 10, "a")...)
	keys = append(keys, commit(11, 20, "b")...)
	keys = append(keys, commit(12, 30, "c")...)
	keys = append(keys, commit(13, 40, "d")...)
	keys = append(keys, KeyEvent{Rev: 14, Key: name(10), Delete: true}, KeyEvent{Rev: 14, Key: name(20), Delete: true})
	return Observations{
		Ended: true, Elapsed: 20 * time.Second, Bound: time.Minute, Keep: 2, Keys: keys,
		Finals:    []Final{{Name: name(30), Manifest: manifest(30, "c")}, {Name: name(40), Manifest: manifest(40, "d")}},
		Digests:   map[string]Digest{"worker-0": {100, "ab"}, "worker-1": {100, "ab"}},
		Reference: &Digest{100, "ab"},
	}
}

func TestCheckHealthyRun(t *testing.T) {
	if vs := Check(healthy()); len(vs) != 0 {
		t.Fatalf("violations in a healthy run: %v", vs)
	}
}

// Each case breaks one invariant of the healthy run; Check must name that
// invariant with the detail given, and nothing else.
func TestCheckFindsEachViolation(t *testing.T) {
	for _, c := range []struct {
		name, inv, detail string
		edit              func(o *Observations)
	}{
		{"hang", InvEnds, "did not end within 1m0s", func(o *Observations) { o.Ended = false }},
		{"failed", InvEnds, "the job failed: ring broke", func(o *Observations) { o.Ended, o.Err = false, "ring broke" }},
		{"slow", InvEnds, "over the bound", func(o *Observations) { o.Elapsed = 2 * time.Minute }},
		{"replicas differ", InvReplicas, "worker-1 at step 100 with cd", func(o *Observations) { o.Digests["worker-1"] = Digest{100, "cd"} }},
		{"no digest", InvReplicas, "no worker reported", func(o *Observations) { o.Digests = nil }},
		{"not bit-identical", InvBitIdentical, "an uninterrupted run at step 100 with ff", func(o *Observations) { o.Reference = &Digest{100, "ff"} }},
		{"retention too eager", InvCheckpoints, "checkpoint ckpt-000000000030 deleted with 1 newer committed, retention keeps 2", func(o *Observations) {
			o.Keys = append(o.Keys, KeyEvent{Rev: 15, Key: name(30), Delete: true})
			o.Finals = o.Finals[1:]
		}},
		{"overwritten", InvCheckpoints, "ckpt-000000000040 overwritten", func(o *Observations) {
			o.Keys = append(o.Keys, KeyEvent{Rev: 15, Key: name(40), Value: manifest(40, "x")})
			o.Finals[1].Manifest = manifest(40, "x")
		}},
		{"latest without record", InvCheckpoints, "names ckpt-000000000050, which has no record", func(o *Observations) {
			o.Keys = append(o.Keys, KeyEvent{Rev: 15, Key: latestKey, Value: name(50)})
		}},
		{"committed unverified", InvCheckpoints, "committed while its files do not verify: short", func(o *Observations) {
			o.Keys[6].VerifyErr = "short"
		}},
		{"latest deleted", InvCheckpoints, "`latest` deleted", func(o *Observations) {
			o.Keys = append(o.Keys, KeyEvent{Rev: 15, Key: latestKey, Delete: true})
		}},
		{"damaged at the end", InvCheckpoints, "ckpt-000000000040 fails its manifest: sha", func(o *Observations) { o.Finals[1].VerifyErr = "sha" }},
		{"changed at the end", InvCheckpoints, "record of ckpt-000000000030 differs", func(o *Observations) { o.Finals[0].Manifest = manifest(30, "z") }},
		{"lost unseen", InvCheckpoints, "ckpt-000000000030 no longer committed, with no deletion seen", func(o *Observations) { o.Finals = o.Finals[1:] }},
		{"never seen", InvCheckpoints, "ckpt-000000000050 is committed but was never seen", func(o *Observations) {
			o.Finals = append(o.Finals, Final{Name: name(50), Manifest: manifest(50, "e")})
		}},
		{"backwards", InvMonotonic, "went back from ckpt-000000000040 to ckpt-000000000030", func(o *Observations) {
			o.Keys = append(o.Keys, KeyEvent{Rev: 15, Key: latestKey, Value: name(30)})
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := healthy()
			c.edit(&o)
			vs := Check(o)
			if len(vs) != 1 || vs[0].Invariant != c.inv || !strings.Contains(vs[0].Detail, c.detail) {
				t.Fatalf("Check = %v, want one %s violation saying %q", vs, c.inv, c.detail)
			}
		})
	}
}

// A record newer than `latest` (left by a rollback to an older checkpoint)
// is replaced when training reaches its step again: that is no overwrite.
func TestCheckAllowsReplacingARolledBackRecord(t *testing.T) {
	o := healthy()
	o.Keys = append(o.Keys, KeyEvent{Rev: 15, Key: name(50), Value: manifest(50, "e")})
	o.Keys = append(o.Keys, KeyEvent{Rev: 16, Key: name(50), Value: manifest(50, "f")})
	o.Keys = append(o.Keys, commit(17, 50, "f")...)
	o.Keys = append(o.Keys, KeyEvent{Rev: 18, Key: name(30), Delete: true})
	o.Finals = []Final{{Name: name(40), Manifest: manifest(40, "d")}, {Name: name(50), Manifest: manifest(50, "f")}}
	if vs := Check(o); len(vs) != 0 {
		t.Fatalf("violations: %v", vs)
	}
}
