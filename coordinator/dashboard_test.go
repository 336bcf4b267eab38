package coordinator

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/ringtrain/ringtrain/api"
	"github.com/ringtrain/ringtrain/checkpoint"
	"github.com/ringtrain/ringtrain/dashboard"
)

// TestServerDashboard: the coordinator's HTTP listener serves the job's
// dashboard at / and its JSON under /api/ (the generation history, the
// status, the committed checkpoints, the run's records, the job file),
// and still /healthz, /readyz, /metrics and /status.
func TestServerDashboard(t *testing.T) {
	c := newCluster(t)
	runDir := t.TempDir()
	cd := c.start("coord-a", func(cfg *ServerConfig) { cfg.RunDir = runDir })
	cd.waitLeader(t)
	w1, _ := c.join(t, cd, "w1")
	w2, _ := c.join(t, cd, "w2")
	g1 := w1.waitGeneration(t, 0, func(g *api.Generation) bool { return len(g.Ring) == 2 })
	w1.heartbeat(t, g1.Number, 50, false)
	w2.heartbeat(t, g1.Number, 50, false)
	name := c.checkpointAll(t, g1, map[string]*worker{"w1": w1, "w2": w2}, 50, 6, 16, nil)
	c.waitCommitted(t, name)
	eventually(t, "the dashboard to list "+name, func() bool {
		ck := cd.srv.Checkpoints()
		return len(ck.Checkpoints) == 1 && ck.Checkpoints[0].Name == name
	})

	if rec := httpGet(cd.srv, "/"); rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `id="generations"`) {
		t.Errorf("GET /: %d", rec.Code)
	}
	var gens dashboard.GenerationsReply
	if err := json.Unmarshal(httpGet(cd.srv, "/api/generations").Body.Bytes(), &gens); err != nil ||
		!slices.Equal(describeEvents(gens.Generations), describeEvents(cd.srv.Generations())) || len(gens.Generations) != 1 {
		t.Errorf("/api/generations: %v\n%s", err, strings.Join(describeEvents(gens.Generations), "\n"))
	}
	var st api.StatusReply
	if err := json.Unmarshal(httpGet(cd.srv, "/api/status").Body.Bytes(), &st); err != nil || st.Generation != g1.Number ||
		len(st.Workers) != 2 || st.Workers[1].Generation != g1.Number {
		t.Errorf("/api/status: %+v, %v", st, err)
	}
	var ck dashboard.Checkpoints
	if err := json.Unmarshal(httpGet(cd.srv, "/api/checkpoints").Body.Bytes(), &ck); err != nil || ck.Store != c.store.Dir() ||
		len(ck.Checkpoints) != 1 || ck.Checkpoints[0].Name != name || ck.Checkpoints[0].Files != 2 || ck.Checkpoints[0].Bytes == 0 ||
		ck.Checkpoints[0].Generation != int(g1.Number) || ck.Checkpoints[0].WorldSize != 2 || ck.Checkpoints[0].TrainLoss != 0.25 {
		t.Errorf("/api/checkpoints: %+v, %v", ck, err)
	}
	var recs dashboard.RecordsReply
	if err := json.Unmarshal(httpGet(cd.srv, "/api/records").Body.Bytes(), &recs); err != nil ||
		len(recs.Records) != 1 || recs.Records[0].Kind != "train" || recs.Records[0].Step != 50 || recs.Next != 1 {
		t.Errorf("/api/records: %+v, %v", recs, err)
	}
	if rec := httpGet(cd.srv, "/api/job"); !strings.Contains(rec.Body.String(), "name: testjob") {
		t.Errorf("/api/job:\n%s", rec.Body.String())
	}
	for _, path := range []string{"/healthz", "/readyz", "/metrics", "/status"} {
		if rec := httpGet(cd.srv, path); rec.Code != http.StatusOK || strings.Contains(rec.Body.String(), "<html") {
			t.Errorf("GET %s: %d", path, rec.Code)
		}
	}

	// A standby's dashboard shows the run's records from the run
	// directory, and no checkpoints: it commits none.
	sb := c.start("coord-b", func(cfg *ServerConfig) { cfg.RunDir = runDir })
	var sst api.StatusReply
	if err := json.Unmarshal(httpGet(sb.srv, "/api/status").Body.Bytes(), &sst); err != nil || sst.State != "standby" {
		t.Errorf("standby /api/status: %+v, %v", sst, err)
	}
	recs = dashboard.RecordsReply{}
	if err := json.Unmarshal(httpGet(sb.srv, "/api/records").Body.Bytes(), &recs); err != nil || len(recs.Records) != 1 {
		t.Errorf("standby /api/records: %+v, %v", recs, err)
	}
	if ck := sb.srv.Checkpoints(); len(ck.Checkpoints) != 0 || ck.Store != c.store.Dir() {
		t.Errorf("standby checkpoints: %+v", ck)
	}
}

// TestKeepCommitted: the dashboard's list of committed checkpoints follows
// commits and retention, and a restored run's commits replace the ones
// past them.
func TestKeepCommitted(t *testing.T) {
	var list []checkpoint.Manifest
	for _, step := range []int{10, 20, 30, 40} {
		list = keepCommitted(list, checkpoint.Manifest{Name: checkpoint.NameForStep(step), Step: step}, 3)
	}
	list = keepCommitted(list, checkpoint.Manifest{Name: checkpoint.NameForStep(25), Step: 25}, 3)
	var steps []int
	for _, m := range list {
		steps = append(steps, m.Step)
	}
	if !slices.Equal(steps, []int{20, 25}) {
		t.Errorf("steps %v, want [20 25]", steps)
	}
}
