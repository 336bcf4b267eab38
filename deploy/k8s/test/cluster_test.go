// Package k8stest applies the Kubernetes manifests under deploy/k8s to a real
// control plane that run.sh starts: etcd and kube-apiserver (layer 1), and
// kube-controller-manager and kube-scheduler (layer 2). Without run.sh the
// tests skip: they never touch the cluster of the caller's KUBECONFIG.
package k8stest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// fieldManager owns every field the tests apply.
const fieldManager = "ringtrain-k8s-test"

// The environment run.sh sets. The kubeconfig has its own name so that a
// plain `go test` here never applies to the caller's cluster.
const (
	envKubeconfig  = "RINGTRAIN_K8S_TEST_KUBECONFIG"
	envOverlays    = "RINGTRAIN_K8S_OVERLAYS"
	envControllers = "RINGTRAIN_K8S_CONTROLLERS"
)

// warnings records the Warning headers of the API server's responses.
type warnings struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warnings) HandleWarningHeader(code int, agent, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, text)
}

// take returns the warnings since the last take and forgets them.
func (w *warnings) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := w.msgs
	w.msgs = nil
	return m
}

// cluster is a connection to run.sh's API server.
type cluster struct {
	typed    kubernetes.Interface
	dynamic  dynamic.Interface
	mapper   meta.RESTMapper
	warnings *warnings
}

// connect connects to run.sh's API server, or skips the test when run.sh
// did not start one.
func connect(t *testing.T) *cluster {
	t.Helper()
	path := os.Getenv(envKubeconfig)
	if path == "" {
		t.Skipf("no test API server: run deploy/k8s/test/run.sh (it sets %s)", envKubeconfig)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatalf("kubeconfig %s: %v", path, err)
	}
	w := &warnings{}
	cfg.WarningHandler = w
	cfg.QPS, cfg.Burst = 100, 200
	return newCluster(t, cfg, w)
}

func newCluster(t *testing.T, cfg *rest.Config, w *warnings) *cluster {
	t.Helper()
	typed, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &cluster{
		typed:    typed,
		dynamic:  dyn,
		mapper:   restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc)),
		warnings: w,
	}
}

// overlay is one rendered kustomization.
type overlay struct {
	name      string // the directory's name: mnist, imagenet
	namespace string
	objects   []*unstructured.Unstructured // the Namespace first
}

// renderOverlays renders every directory of deploy/k8s/overlays with
// kustomize, as `kubectl apply -k` would.
func renderOverlays(t *testing.T) []overlay {
	t.Helper()
	dir := os.Getenv(envOverlays)
	if dir == "" {
		dir = filepath.Join("..", "overlays")
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("reading overlays: %v", err)
	}
	var out []overlay
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		o, err := render(e.Name(), filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, o)
	}
	if len(out) < 2 {
		t.Fatalf("want at least the mnist and imagenet overlays in %s, found %d", dir, len(out))
	}
	return out
}

func render(name, dir string) (overlay, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	resMap, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return overlay{}, fmt.Errorf("kustomize %s: %w", dir, err)
	}
	o := overlay{name: name}
	for _, res := range resMap.Resources() {
		m, err := res.Map()
		if err != nil {
			return overlay{}, fmt.Errorf("%s: %w", res.CurId(), err)
		}
		u := &unstructured.Unstructured{Object: m}
		if u.GetKind() == "Namespace" {
			if o.namespace != "" {
				return overlay{}, fmt.Errorf("%s: two Namespaces, %s and %s", dir, o.namespace, u.GetName())
			}
			o.namespace = u.GetName()
			o.objects = slices.Insert(o.objects, 0, u)
			continue
		}
		o.objects = append(o.objects, u)
	}
	if o.namespace == "" {
		return overlay{}, fmt.Errorf("%s: no Namespace", dir)
	}
	for _, u := range o.objects[1:] {
		if u.GetNamespace() != o.namespace {
			return overlay{}, fmt.Errorf("%s: %s %s is in namespace %q, not the overlay's %q", dir, u.GetKind(), u.GetName(), u.GetNamespace(), o.namespace)
		}
	}
	return o, nil
}

// restrictedLabels are the PodSecurity labels the tests put on each
// overlay's namespace: enforce, audit and warn at the restricted level
// the pods claim to meet.
var restrictedLabels = map[string]string{
	"pod-security.kubernetes.io/enforce":         "restricted",
	"pod-security.kubernetes.io/enforce-version": "latest",
	"pod-security.kubernetes.io/audit":           "restricted",
	"pod-security.kubernetes.io/audit-version":   "latest",
	"pod-security.kubernetes.io/warn":            "restricted",
	"pod-security.kubernetes.io/warn-version":    "latest",
}

// withRestricted returns a copy of a Namespace with restrictedLabels added.
func withRestricted(ns *unstructured.Unstructured) *unstructured.Unstructured {
	c := ns.DeepCopy()
	l := c.GetLabels()
	if l == nil {
		l = map[string]string{}
	}
	for k, v := range restrictedLabels {
		l[k] = v
	}
	c.SetLabels(l)
	return c
}

// applyOptions are server-side apply's options. Strict field validation:
// an unknown or duplicated field is an error, not a warning.
type applyOptions struct {
	dryRun bool
	force  bool
}

// apply applies obj with server-side apply as fieldManager and returns the
// object the server stored (or would store, dry-run), with the warnings of
// the request. Requests are made one at a time, so the warnings are
// obj's own.
func (c *cluster) apply(ctx context.Context, obj *unstructured.Unstructured, opts applyOptions) (*unstructured.Unstructured, []string, error) {
	c.warnings.take()
	gvk := obj.GroupVersionKind()
	m, err := c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", gvk, err)
	}
	data, err := json.Marshal(obj.Object)
	if err != nil {
		return nil, nil, err
	}
	po := metav1.PatchOptions{FieldManager: fieldManager, FieldValidation: "Strict", Force: &opts.force}
	if opts.dryRun {
		po.DryRun = []string{metav1.DryRunAll}
	}
	var ri dynamic.ResourceInterface = c.dynamic.Resource(m.Resource)
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		ri = c.dynamic.Resource(m.Resource).Namespace(obj.GetNamespace())
	}
	got, err := ri.Patch(ctx, obj.GetName(), types.ApplyPatchType, data, po)
	return got, c.warnings.take(), err
}

// id names an object in messages: Kind/namespace/name.
func id(u *unstructured.Unstructured) string {
	if u.GetNamespace() == "" {
		return u.GetKind() + "/" + u.GetName()
	}
	return u.GetKind() + "/" + u.GetNamespace() + "/" + u.GetName()
}

// applyOverlay applies every object of o (its Namespace with
// restrictedLabels) and fails the test on an error or a warning. It
// returns the stored objects by id.
func applyOverlay(ctx context.Context, t *testing.T, c *cluster, o overlay) map[string]*unstructured.Unstructured {
	t.Helper()
	stored := map[string]*unstructured.Unstructured{}
	for i, obj := range o.objects {
		if i == 0 {
			obj = withRestricted(obj)
		}
		got, warns, err := c.apply(ctx, obj, applyOptions{force: true})
		if err != nil {
			t.Errorf("applying %s: %v", id(obj), err)
			continue
		}
		if len(warns) > 0 {
			t.Errorf("applying %s: the API server warned:\n\t%s", id(obj), strings.Join(warns, "\n\t"))
		}
		stored[id(obj)] = got
	}
	if t.Failed() {
		t.FailNow()
	}
	return stored
}

// toTyped converts a stored object into its API type.
func toTyped[T any](t *testing.T, u *unstructured.Unstructured) *T {
	t.Helper()
	var v T
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &v); err != nil {
		t.Fatalf("%s: %v", id(u), err)
	}
	return &v
}

// kindOf returns the stored objects of one kind, by name.
func kindOf(stored map[string]*unstructured.Unstructured, kind string) map[string]*unstructured.Unstructured {
	out := map[string]*unstructured.Unstructured{}
	for _, u := range stored {
		if u.GetKind() == kind {
			out[u.GetName()] = u
		}
	}
	return out
}

// podTemplates returns each workload's pod template, by Kind/name.
func podTemplates(t *testing.T, stored map[string]*unstructured.Unstructured) map[string]corev1.PodTemplateSpec {
	t.Helper()
	out := map[string]corev1.PodTemplateSpec{}
	for _, u := range stored {
		switch u.GetKind() {
		case "Deployment", "StatefulSet", "Job":
		default:
			continue
		}
		m, ok, err := unstructured.NestedMap(u.Object, "spec", "template")
		if err != nil || !ok {
			t.Fatalf("%s has no pod template (%v)", id(u), err)
		}
		var tmpl corev1.PodTemplateSpec
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(m, &tmpl); err != nil {
			t.Fatalf("%s: %v", id(u), err)
		}
		out[u.GetKind()+"/"+u.GetName()] = tmpl
	}
	return out
}
