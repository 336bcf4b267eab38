package repro

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestQuickForms runs every experiment's quick form and checks what a user
// gets: a report naming the paper, the command and every claim, a
// result.json that reads back to the same record, and the figures it
// lists on disk.
func TestQuickForms(t *testing.T) {
	for _, e := range All() {
		t.Run(e.Name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), e.Name)
			rec, err := Run(context.Background(), e, Env{Dir: dir, Quick: true, Seed: 1, Logf: t.Logf}, "ringtrain repro "+e.Name+" --quick")
			if err != nil {
				t.Fatal(err)
			}
			if len(rec.Claims) == 0 {
				t.Fatal("no claims")
			}
			report, err := os.ReadFile(filepath.Join(dir, "report.md"))
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{e.Paper, rec.Verdict, "ringtrain repro " + e.Name, "Quick form"} {
				if !strings.Contains(string(report), want) {
					t.Errorf("report.md lacks %q", want)
				}
			}
			for _, c := range rec.Claims {
				if c.What == "" || c.Target == "" || c.Ours == "" || !strings.Contains(string(report), c.Ours) {
					t.Errorf("claim %+v is incomplete or not in the report", c)
				}
			}
			for _, f := range rec.Figures {
				if st, err := os.Stat(filepath.Join(dir, f.File)); err != nil || st.Size() == 0 {
					t.Errorf("figure %s: %v", f.File, err)
				}
			}
			var back Record
			data, err := os.ReadFile(filepath.Join(dir, "result.json"))
			if err == nil {
				err = json.Unmarshal(data, &back)
			}
			if err != nil || back.Name != e.Name || back.Verdict != rec.Verdict || len(back.Claims) != len(rec.Claims) {
				t.Errorf("result.json: %v; got %+v", err, back)
			}
		})
	}
}

func TestVerdict(t *testing.T) {
	pass, fail := Claim{Pass: true}, Claim{}
	stretchFail := Claim{Stretch: true}
	for _, c := range []struct {
		claims []Claim
		want   string
	}{
		{nil, "no claims"},
		{[]Claim{pass, stretchFail}, "reproduced"},
		{[]Claim{pass, fail}, "partly reproduced"},
		{[]Claim{fail, {Pass: true, Stretch: true}}, "not reproduced"},
	} {
		if got := (&Result{Claims: c.claims}).Verdict(); got != c.want {
			t.Errorf("%+v: verdict %q, want %q", c.claims, got, c.want)
		}
	}
}

func TestLastRecords(t *testing.T) {
	dir := t.TempDir()
	if rec, err := LoadLast(dir, "backprop-mlp"); rec != nil || err != nil {
		t.Fatalf("empty dir: %v, %v", rec, err)
	}
	rec := &Record{Name: "backprop-mlp", Verdict: "reproduced", Result: Result{Claims: []Claim{{What: "x", Ours: "1%", Pass: true}}}}
	if err := SaveLast(dir, rec); err != nil {
		t.Fatal(err)
	}
	got, err := LoadLast(dir, "backprop-mlp")
	if err != nil || got.Verdict != "reproduced" || got.Claims[0].Ours != "1%" {
		t.Fatalf("read back %+v, %v", got, err)
	}
	// A corrupt record, or one holding another experiment, is an error
	// that names the file.
	os.WriteFile(filepath.Join(dir, "psd.json"), []byte("{not json"), 0o644)
	if _, err := LoadLast(dir, "psd"); err == nil || !strings.Contains(err.Error(), "psd.json") {
		t.Errorf("corrupt record: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "lista-lcod.json"), []byte(`{"name":"psd"}`), 0o644)
	if _, err := LoadLast(dir, "lista-lcod"); err == nil || !strings.Contains(err.Error(), "lista-lcod.json") {
		t.Errorf("misplaced record: %v", err)
	}
}

func TestLookup(t *testing.T) {
	if _, err := Lookup("backprop-mlp"); err != nil {
		t.Fatal(err)
	}
	_, err := Lookup("nope")
	if err == nil || !strings.Contains(err.Error(), "backprop-mlp") {
		t.Errorf("unknown name: %v", err)
	}
}
