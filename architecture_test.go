package ringtrain_test

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
)

const module = "github.com/ringtrain/ringtrain/"

// renameio is how the packages that write files replace them atomically.
const renameio = "github.com/google/renameio/v2"

// protowire encodes the protos of runlog's TensorBoard event file: the
// wire format only, with no generated code or proto registry.
const protowire = "google.golang.org/protobuf/encoding/protowire"

// allowedImports is the package map of ARCHITECTURE.md: for each package,
// the project packages and outside modules its non-test code may import.
// Imports only go down: tensorcore knows nothing of networks, models nothing
// of the wire, allreduce nothing of models, and the coordinator and worker
// never import each other. Standard-library imports are always allowed.
var allowedImports = map[string][]string{
	"tensorcore":  {"golang.org/x/sys/cpu"},
	"safetensors": {renameio},
	"job":         {"sigs.k8s.io/yaml"},
	"runlog":      {"gonum.org/v1/plot", renameio, protowire},
	"models":      {module + "tensorcore", module + "job"},
	"dataset":     {module + "tensorcore", module + "dataset/", renameio, "golang.org/x/sys/cpu"},
	"allreduce":   {module + "allreduce", module + "internal/netlimit", "google.golang.org/grpc", "google.golang.org/protobuf", "github.com/klauspost/compress", "golang.org/x/sys/cpu", "gonum.org/v1/gonum"},
	"checkpoint":  {module + "safetensors", "go.etcd.io/etcd/", renameio},
	"etcdtest":    {module + "etcdlocal"},
	"etcdlocal":   {module + "internal/freeport", "go.etcd.io/etcd/"},
	"api":         {"google.golang.org/grpc"},
	"membership":  {"github.com/hashicorp/memberlist"},
	// Identities: the authority, certificates, and TLS that checks them.
	"pki": {"google.golang.org/grpc", renameio},
	// The dashboard shows what a coordinator or a single-node run answers
	// (its Source); it knows neither.
	"dashboard": {module + "api", module + "runlog"},
	"coordinator": {module + "api", module + "pki", module + "dataset", module + "checkpoint", module + "job", module + "runlog", module + "membership",
		module + "dashboard", module + "internal/netlimit", "go.etcd.io/etcd/", "google.golang.org/grpc", "github.com/prometheus/client_golang"},
	"worker": {module + "tensorcore", module + "models", module + "dataset", module + "allreduce",
		module + "checkpoint", module + "safetensors", module + "job", module + "runlog", module + "api", module + "membership", module + "timeline",
		"google.golang.org/grpc", "github.com/prometheus/client_golang"},
	// The step timeline: its events, recorder, file format and Chrome
	// trace export, on the standard library alone.
	"timeline": {},
	// The local cluster of `train --workers N` drives a coordinator and
	// worker processes; it is the one package besides cmd/ that knows both.
	// The fault campaign runs processes of the ringtrain binary and
	// watches etcd; it reads the worker's final-parameters log line.
	"faults": {module + "api", module + "checkpoint", module + "job", module + "worker", module + "etcdlocal", module + "localcluster",
		"go.etcd.io/etcd/", "go.uber.org/zap"},
	// The talk's reproductions are clients of the engine: training jobs
	// (worker, or a local cluster) and the models and tensor core
	// directly; never the coordinator or the wire.
	"repro": {module + "tensorcore", module + "models", module + "dataset", module + "job", module + "runlog",
		module + "worker", module + "localcluster", "gonum.org/v1/gonum", "gonum.org/v1/plot"},
	"localcluster": {module + "internal/freeport", module + "coordinator", module + "worker", module + "etcdlocal", module + "job", module + "runlog",
		module + "api", module + "checkpoint", module + "dataset", "go.etcd.io/etcd/", "go.uber.org/zap"},
}

func TestImportsGoDown(t *testing.T) {
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != "." && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || name == "testdata" || name == "bench") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		top := strings.Split(filepath.ToSlash(path), "/")[0]
		allowed, ruled := allowedImports[top]
		if !ruled {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		for _, imp := range f.Imports {
			p := strings.Trim(imp.Path.Value, `"`)
			if isStdlib(p) || hasAnyPrefix(p, allowed) {
				continue
			}
			t.Errorf("%s imports %s, which %s/ may not import (see ARCHITECTURE.md)", path, p, top)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func isStdlib(path string) bool {
	first, _, _ := strings.Cut(path, "/")
	return !strings.Contains(first, ".")
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// TestRuleCatchesForbiddenImport checks that the rule table rejects what it
// must, so the walk above cannot pass by accident.
func TestRuleCatchesForbiddenImport(t *testing.T) {
	for _, tc := range []struct {
		pkg, imp string
		ok       bool
	}{
		{"tensorcore", module + "models", false},
		{"tensorcore", "google.golang.org/grpc", false},
		{"models", module + "allreduce", false},
		{"allreduce", module + "models", false},
		{"worker", module + "coordinator", false},
		{"coordinator", module + "localcluster", false},
		{"worker", module + "localcluster", false},
		{"localcluster", module + "coordinator", true},
		{"localcluster", module + "worker", true},
		{"localcluster", module + "models", false},
		{"repro", module + "worker", true},
		{"repro", module + "coordinator", false},
		{"repro", module + "allreduce", false},
		{"dashboard", module + "coordinator", false},
		{"dashboard", module + "worker", false},
		{"dashboard", module + "checkpoint", false},
		{"coordinator", module + "dashboard", true},
		{"models", module + "tensorcore", true},
		{"tensorcore", "golang.org/x/sys/cpu", true},
		{"safetensors", "encoding/json", true},
		{"runlog", protowire, true},
		{"runlog", "google.golang.org/protobuf/proto", false},
		{"runlog", "google.golang.org/grpc", false},
		{"timeline", module + "worker", false},
		{"timeline", "encoding/json", true},
		{"worker", module + "timeline", true},
	} {
		got := isStdlib(tc.imp) || hasAnyPrefix(tc.imp, allowedImports[tc.pkg])
		if got != tc.ok {
			t.Errorf("%s importing %s: allowed = %v, want %v", tc.pkg, tc.imp, got, tc.ok)
		}
	}
}
