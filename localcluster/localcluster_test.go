package localcluster

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ringtrain/ringtrain/job"
)

// Run refuses what it cannot run before it starts or writes anything.
func TestRunRefusesBeforeStartingAnything(t *testing.T) {
	spec := job.Default()
	spec.Workers = 2
	held := t.TempDir() // holds a cluster run already
	if err := os.Mkdir(filepath.Join(held, etcdDir), 0o755); err != nil {
		t.Fatal(err)
	}
	badCodec := spec
	badCodec.Codec = "bf17"
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"an unknown codec", Options{Spec: badCodec, Dir: filepath.Join(t.TempDir(), "run")}, "codec"},
		{"negative restarts", Options{Spec: spec, Dir: filepath.Join(t.TempDir(), "run"), MaxRestarts: -1}, "must not be negative"},
		{"a run directory in use", Options{Spec: spec, Dir: held}, "already holds a cluster run"},
	} {
		_, err := Run(context.Background(), tc.o)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", tc.name, err, tc.want)
		}
		if tc.o.Dir != held {
			if _, err := os.Stat(tc.o.Dir); err == nil {
				t.Errorf("%s: the run directory was created", tc.name)
			}
		}
	}
	if entries, _ := os.ReadDir(held); len(entries) != 1 {
		t.Errorf("a refused run wrote into the run directory it found in use: %v", entries)
	}
}
