package faults

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/ringtrain/ringtrain/checkpoint"
)

// The invariants a run keeps whatever the faults, as violations name them.
const (
	// InvEnds: the job ends (done, or a clear error) within the bound.
	InvEnds = "ends"
	// InvReplicas: every worker ends with the same parameters.
	InvReplicas = "replicas-identical"
	// InvCheckpoints: no committed checkpoint is ever lost (deleted other
	// than by retention, or failing its manifest at the end), overwritten
	// or half-visible (`latest` naming no record, a record committed
	// before its files verify).
	InvCheckpoints = "checkpoints-kept"
	// InvMonotonic: the step `latest` names never goes backwards.
	InvMonotonic = "latest-monotonic"
	// InvBitIdentical: the final parameters equal those of an
	// uninterrupted run of the same job.
	InvBitIdentical = "bit-identical"
)

// latestKey is the `latest` pointer's key under the checkpoints prefix.
const latestKey = "latest"

// KeyEvent is one change of a key under the job's checkpoints prefix
// (checkpoint.EtcdCheckpointsPrefix), in etcd's revision order.
type KeyEvent struct {
	Rev int64 `json:"rev"`
	// Key is relative to the prefix: a checkpoint's name, or "latest".
	Key    string `json:"key"`
	Delete bool   `json:"delete,omitempty"`
	Value  string `json:"value,omitempty"`
	// VerifyErr is, for a checkpoint's first put, why its files did not
	// verify against the manifest when the put was seen ("" when they
	// did, or when the record was gone before they could be checked).
	VerifyErr string `json:"verify_err,omitempty"`
}

// Final is one checkpoint committed at the end, as etcd holds it, with
// whether its files still verify.
type Final struct {
	Name      string `json:"name"`
	Manifest  string `json:"manifest"`
	VerifyErr string `json:"verify_err,omitempty"`
}

// Digest is a worker's final parameters: the step and the hash of the
// parameters' bits it logged on finishing the job.
type Digest struct {
	Step int64  `json:"step"`
	Sum  string `json:"sum"`
}

// Observations are what the harness recorded of one run, all the checker
// reads.
type Observations struct {
	// Ended: the job finished (done); Err, when it did not, is what it
	// reported or why the harness gave up; Elapsed its duration, Bound
	// the limit.
	Ended   bool          `json:"ended"`
	Err     string        `json:"err,omitempty"`
	Elapsed time.Duration `json:"elapsed"`
	Bound   time.Duration `json:"bound"`
	// Keys are the checkpoint key events seen throughout; Finals the
	// committed checkpoints at the end; Keep the job's retention.
	Keys   []KeyEvent `json:"keys"`
	Finals []Final    `json:"finals"`
	Keep   int        `json:"keep"`
	// Digests are the workers' final parameters, by worker name;
	// Reference those of an uninterrupted run (nil: not compared).
	Digests   map[string]Digest `json:"digests"`
	Reference *Digest           `json:"reference,omitempty"`
}

// Violation is one broken invariant.
type Violation struct {
	Invariant string `json:"invariant"`
	Detail    string `json:"detail"`
}

func (v Violation) String() string { return v.Invariant + ": " + v.Detail }

// Check returns every violation of the invariants in obs; none means the
// run kept them all. It is pure over obs.
func Check(obs Observations) []Violation {
	var vs []Violation
	vs = append(vs, checkEnds(obs)...)
	vs = append(vs, checkCheckpoints(obs)...)
	vs = append(vs, checkReplicas(obs)...)
	return vs
}

func checkEnds(obs Observations) []Violation {
	switch {
	case !obs.Ended && obs.Err == "":
		return []Violation{{InvEnds, fmt.Sprintf("the job did not end within %v", obs.Bound)}}
	case !obs.Ended:
		return []Violation{{InvEnds, "the job failed: " + obs.Err}}
	case obs.Bound > 0 && obs.Elapsed > obs.Bound:
		return []Violation{{InvEnds, fmt.Sprintf("the job took %v, over the bound of %v", obs.Elapsed.Round(time.Millisecond), obs.Bound)}}
	}
	return nil
}

func checkReplicas(obs Observations) []Violation {
	if !obs.Ended {
		return nil
	}
	if len(obs.Digests) == 0 {
		return []Violation{{InvReplicas, "no worker reported its final parameters"}}
	}
	var vs []Violation
	names := slices.Sorted(maps.Keys(obs.Digests))
	first := obs.Digests[names[0]]
	for _, n := range names[1:] {
		if d := obs.Digests[n]; d != first {
			vs = append(vs, Violation{InvReplicas, fmt.Sprintf("%s ended at step %d with parameters %s, %s at step %d with %s",
				names[0], first.Step, first.Sum, n, d.Step, d.Sum)})
		}
	}
	if r := obs.Reference; r != nil && len(vs) == 0 && first != *r {
		vs = append(vs, Violation{InvBitIdentical, fmt.Sprintf("the workers ended at step %d with parameters %s, an uninterrupted run at step %d with %s",
			first.Step, first.Sum, r.Step, r.Sum)})
	}
	return vs
}

// files returns a manifest's files as name → sha256, or an error when the
// value is not a manifest.
func files(value string) (map[string]string, error) {
	var m checkpoint.Manifest
	if err := json.Unmarshal([]byte(value), &m); err != nil {
		return nil, err
	}
	if len(m.Files) == 0 {
		return nil, fmt.Errorf("a manifest without files")
	}
	out := make(map[string]string, len(m.Files))
	for _, f := range m.Files {
		out[f.Name] = fmt.Sprintf("%d:%s", f.Size, f.SHA256)
	}
	return out, nil
}

// checkCheckpoints replays the key events in revision order, checking each
// against the state before its revision (a retention deletes a range in
// one revision; a commit puts a record and `latest` in one), then the
// finals against the replayed state.
func checkCheckpoints(obs Observations) []Violation {
	var vs []Violation
	bad := func(inv, format string, args ...any) { vs = append(vs, Violation{inv, fmt.Sprintf(format, args...)}) }
	records := map[string]map[string]string{} // committed name → files
	latest := ""
	for i := 0; i < len(obs.Keys); {
		rev := obs.Keys[i].Rev
		j := i
		for j < len(obs.Keys) && obs.Keys[j].Rev == rev {
			j++
		}
		batch := obs.Keys[i:j]
		i = j
		before := maps.Clone(records)
		for _, e := range batch {
			switch {
			case e.Key == latestKey && e.Delete:
				bad(InvCheckpoints, "rev %d: `latest` deleted", rev)
				latest = ""
			case e.Key == latestKey:
				if _, ok := records[e.Value]; !ok {
					bad(InvCheckpoints, "rev %d: `latest` names %s, which has no record (a half-visible commit)", rev, e.Value)
				}
				if e.Value < latest {
					bad(InvMonotonic, "rev %d: `latest` went back from %s to %s", rev, latest, e.Value)
				}
				latest = e.Value
			case e.Delete:
				newer := 0
				for n := range before {
					if n > e.Key && n <= latest {
						newer++
					}
				}
				if _, ok := before[e.Key]; ok && newer < obs.Keep {
					bad(InvCheckpoints, "rev %d: checkpoint %s deleted with %d newer committed, retention keeps %d (lost)", rev, e.Key, newer, obs.Keep)
				}
				delete(records, e.Key)
			default:
				fs, err := files(e.Value)
				if err != nil {
					bad(InvCheckpoints, "rev %d: the record of %s is not a manifest: %v", rev, e.Key, err)
					continue
				}
				if old, ok := before[e.Key]; ok && e.Key <= latest && !maps.Equal(old, fs) {
					bad(InvCheckpoints, "rev %d: committed checkpoint %s overwritten with other files", rev, e.Key)
				}
				if e.VerifyErr != "" {
					bad(InvCheckpoints, "rev %d: checkpoint %s committed while its files do not verify: %s", rev, e.Key, e.VerifyErr)
				}
				records[e.Key] = fs
			}
		}
	}
	seen := map[string]bool{}
	for _, f := range obs.Finals {
		seen[f.Name] = true
		if f.VerifyErr != "" {
			bad(InvCheckpoints, "at the end, committed checkpoint %s fails its manifest: %s", f.Name, f.VerifyErr)
		}
		fs, err := files(f.Manifest)
		want, ok := records[f.Name]
		switch {
		case err != nil:
			bad(InvCheckpoints, "at the end, the record of %s is not a manifest: %v", f.Name, err)
		case !ok:
			bad(InvCheckpoints, "at the end, %s is committed but was never seen committed", f.Name)
		case !maps.Equal(want, fs):
			bad(InvCheckpoints, "at the end, the record of %s differs from the one first seen", f.Name)
		}
	}
	var missing []string
	for n := range records {
		if n <= latest && !seen[n] {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		bad(InvCheckpoints, "at the end, %s no longer committed, with no deletion seen (lost)", strings.Join(missing, ", "))
	}
	return vs
}
