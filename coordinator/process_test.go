package coordinator

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/ringtrain/ringtrain/job"
)

// The job is checked before anything else: a job the workers cannot run
// fails NewServer (and Listen) with the check's error, having opened no
// store, joined no gossip and bound no port.
func TestTheJobIsCheckedFirst(t *testing.T) {
	bad := errors.New("job: codec: unknown codec \"bf17\"")
	var checked []job.Spec
	check := func(s job.Spec) error {
		checked = append(checked, s)
		return bad
	}
	store := filepath.Join(t.TempDir(), "store")
	cfg := ServerConfig{Name: "c", Spec: testSpec(), CheckJob: check, Token: testToken, StoreDir: store} // no etcd client either
	if _, err := NewServer(cfg); !errors.Is(err, bad) {
		t.Errorf("NewServer: %v, want the check's error", err)
	}
	if _, err := Listen(ProcessConfig{Server: cfg, Listen: "127.0.0.1:0", Gossip: "127.0.0.1:0", HTTP: "127.0.0.1:0"}); !errors.Is(err, bad) {
		t.Errorf("Listen: %v, want the check's error", err)
	}
	if len(checked) != 2 || checked[0].Hash() != testSpec().Hash() {
		t.Errorf("CheckJob saw %d specs, want the job once per call", len(checked))
	}
	if _, err := os.Stat(store); err == nil {
		t.Error("a refused job opened the store")
	}
	// Without a check, the server takes the job as Validate leaves it.
	cfg.CheckJob = nil
	if _, err := NewServer(cfg); err == nil || errors.Is(err, bad) {
		t.Errorf("NewServer without a check nor etcd: %v, want the missing etcd client", err)
	}
}
