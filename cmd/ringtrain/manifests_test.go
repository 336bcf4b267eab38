package main

// Tests of the Kubernetes manifests under deploy/k8s: every overlay is
// rendered with kustomize, every object decoded strictly into its
// Kubernetes API type, and the result checked against this binary's real
// commands and flags, the real etcd server's flags, and the job file parser.

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.etcd.io/etcd/server/v3/embed"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/ringtrain/ringtrain/dataset"
	"github.com/ringtrain/ringtrain/job"
	"github.com/ringtrain/ringtrain/models"
	"github.com/ringtrain/ringtrain/worker"
)

// k8sDir is deploy/k8s, relative to this package.
const k8sDir = "../../deploy/k8s"

// The images the manifests run (before the overlay's image transformer).
const (
	ringtrainImage = "ringtrain"
	etcdImage      = "ringtrain-etcd"
)

// knownEnv lists the environment variables the binary reads.
var knownEnv = map[string]bool{
	"RINGTRAIN_JOIN_TOKEN": true,
	"RINGTRAIN_DATA":       true,
}

// rendered is one kustomization's output, decoded into API types.
type rendered struct {
	namespaces   []corev1.Namespace
	services     []corev1.Service
	configMaps   []corev1.ConfigMap
	secrets      []corev1.Secret
	pvcs         []corev1.PersistentVolumeClaim
	deployments  []appsv1.Deployment
	statefulSets []appsv1.StatefulSet
	pdbs         []policyv1.PodDisruptionBudget
	netpols      []networkingv1.NetworkPolicy
}

// workload is a pod template with the object that owns it.
type workload struct {
	kind, name string
	replicas   int32
	selector   map[string]string
	template   corev1.PodTemplateSpec
}

func (r *rendered) workloads() []workload {
	var ws []workload
	for _, d := range r.deployments {
		ws = append(ws, workload{"Deployment", d.Name, replicasOf(d.Spec.Replicas), selectorLabels(d.Spec.Selector), d.Spec.Template})
	}
	for _, s := range r.statefulSets {
		ws = append(ws, workload{"StatefulSet", s.Name, replicasOf(s.Spec.Replicas), selectorLabels(s.Spec.Selector), s.Spec.Template})
	}
	return ws
}

func replicasOf(p *int32) int32 {
	if p == nil {
		return 1
	}
	return *p
}

func selectorLabels(s *metav1.LabelSelector) map[string]string {
	if s == nil {
		return nil
	}
	return s.MatchLabels
}

// overlays lists deploy/k8s/overlays/*.
func overlays(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(k8sDir, "overlays"))
	if err != nil {
		t.Fatalf("reading overlays: %v", err)
	}
	var dirs []string
	for _, e := range entries {
		if e.IsDir() {
			dirs = append(dirs, e.Name())
		}
	}
	if len(dirs) < 2 {
		t.Fatalf("want at least the mnist and imagenet overlays, found %v", dirs)
	}
	return dirs
}

// render runs kustomize on dir and decodes every object strictly: an
// unknown field, an unknown kind or a value of the wrong type is an error.
func render(dir string) (*rendered, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	resMap, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize %s: %w", dir, err)
	}
	r := &rendered{}
	for _, res := range resMap.Resources() {
		data, err := res.AsYAML()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", res.CurId(), err)
		}
		id := fmt.Sprintf("%s/%s", res.GetKind(), res.GetName())
		var strictErr error
		switch res.GetKind() {
		case "Namespace":
			strictErr = decodeInto(data, &r.namespaces)
		case "Service":
			strictErr = decodeInto(data, &r.services)
		case "ConfigMap":
			strictErr = decodeInto(data, &r.configMaps)
		case "Secret":
			strictErr = decodeInto(data, &r.secrets)
		case "PersistentVolumeClaim":
			strictErr = decodeInto(data, &r.pvcs)
		case "Deployment":
			strictErr = decodeInto(data, &r.deployments)
		case "StatefulSet":
			strictErr = decodeInto(data, &r.statefulSets)
		case "PodDisruptionBudget":
			strictErr = decodeInto(data, &r.pdbs)
		case "NetworkPolicy":
			strictErr = decodeInto(data, &r.netpols)
		default:
			strictErr = fmt.Errorf("kind %s is not one the tests know", res.GetKind())
		}
		if strictErr != nil {
			return nil, fmt.Errorf("%s: %w", id, strictErr)
		}
	}
	return r, nil
}

// decodeInto decodes one YAML object strictly and appends it to *list.
func decodeInto[T any](data []byte, list *[]T) error {
	var v T
	if err := yaml.UnmarshalStrict(data, &v); err != nil {
		return err
	}
	*list = append(*list, v)
	return nil
}

func TestManifests(t *testing.T) {
	for _, name := range overlays(t) {
		t.Run(name, func(t *testing.T) {
			r, err := render(filepath.Join(k8sDir, "overlays", name))
			if err != nil {
				t.Fatal(err)
			}
			if len(r.namespaces) != 1 {
				t.Fatalf("want one Namespace, got %d", len(r.namespaces))
			}
			ns := r.namespaces[0].Name
			t.Run("namespace", func(t *testing.T) { checkNamespace(t, r, ns) })
			t.Run("args", func(t *testing.T) { checkArgs(t, r) })
			t.Run("env", func(t *testing.T) { checkEnv(t, r) })
			t.Run("ports", func(t *testing.T) { checkPorts(t, r) })
			t.Run("probes", func(t *testing.T) { checkProbes(t, r) })
			t.Run("services", func(t *testing.T) { checkServices(t, r) })
			t.Run("selectors", func(t *testing.T) { checkSelectors(t, r) })
			t.Run("files", func(t *testing.T) { checkFiles(t, r) })
			t.Run("job", func(t *testing.T) { checkJob(t, r) })
			t.Run("etcd", func(t *testing.T) { checkEtcd(t, r) })
			t.Run("security", func(t *testing.T) { checkSecurity(t, r) })
			t.Run("resources", func(t *testing.T) { checkResources(t, r) })
			t.Run("storage", func(t *testing.T) { checkStorage(t, r) })
		})
	}
}

// TestManifestsStrictDecode checks that the strict decoding the manifest
// tests rely on rejects what it must.
func TestManifestsStrictDecode(t *testing.T) {
	for _, tc := range []struct{ name, yaml string }{
		{"unknown field", "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {selectr: {a: b}}\n"},
		{"wrong type", "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {ports: [{port: seventy}]}\n"},
		{"unknown container field", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {template: {spec: {containers: [{name: c, imagePullPolice: Always}]}}}\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var list []appsv1.Deployment
			var svcs []corev1.Service
			var err error
			if strings.Contains(tc.yaml, "Deployment") {
				err = decodeInto([]byte(tc.yaml), &list)
			} else {
				err = decodeInto([]byte(tc.yaml), &svcs)
			}
			if err == nil {
				t.Errorf("decoded %q without error", tc.yaml)
			}
		})
	}
}

func checkNamespace(t *testing.T, r *rendered, ns string) {
	check := func(kind, name, got string) {
		if got != ns {
			t.Errorf("%s/%s is in namespace %q, want %q", kind, name, got, ns)
		}
	}
	for _, o := range r.services {
		check("Service", o.Name, o.Namespace)
	}
	for _, o := range r.configMaps {
		check("ConfigMap", o.Name, o.Namespace)
	}
	for _, o := range r.secrets {
		check("Secret", o.Name, o.Namespace)
	}
	for _, o := range r.pvcs {
		check("PersistentVolumeClaim", o.Name, o.Namespace)
	}
	for _, w := range r.workloads() {
		check(w.kind, w.name, namespaceOf(r, w))
	}
	for _, o := range r.pdbs {
		check("PodDisruptionBudget", o.Name, o.Namespace)
	}
	for _, o := range r.netpols {
		check("NetworkPolicy", o.Name, o.Namespace)
	}
}

func namespaceOf(r *rendered, w workload) string {
	for _, d := range r.deployments {
		if w.kind == "Deployment" && d.Name == w.name {
			return d.Namespace
		}
	}
	for _, s := range r.statefulSets {
		if w.kind == "StatefulSet" && s.Name == w.name {
			return s.Namespace
		}
	}
	return ""
}

// podContainers returns the init containers and containers of a pod.
func podContainers(spec *corev1.PodSpec) []*corev1.Container {
	var cs []*corev1.Container
	for i := range spec.InitContainers {
		cs = append(cs, &spec.InitContainers[i])
	}
	for i := range spec.Containers {
		cs = append(cs, &spec.Containers[i])
	}
	return cs
}

// imageName is an image reference without its tag or digest.
func imageName(ref string) string {
	if i := strings.IndexByte(ref, '@'); i >= 0 {
		ref = ref[:i]
	}
	if i := strings.LastIndexByte(ref, ':'); i > strings.LastIndexByte(ref, '/') {
		ref = ref[:i]
	}
	return ref
}

// isRingtrain says whether c runs the ringtrain image; isEtcd whether it
// runs the etcd image. Overlays may point the images at a registry, so the
// last path element is compared.
func isRingtrain(c *corev1.Container) bool { return path.Base(imageName(c.Image)) == ringtrainImage }
func isEtcd(c *corev1.Container) bool      { return path.Base(imageName(c.Image)) == etcdImage }

var envRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// expandArgs replaces $(VAR) references the way the kubelet does, with
// stand-in values for the downward API, and reports references to
// variables the container does not define (the kubelet would pass them on
// literally).
func expandArgs(c *corev1.Container) ([]string, error) {
	defined := map[string]string{}
	for _, e := range c.Env {
		v := e.Value
		if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			switch e.ValueFrom.FieldRef.FieldPath {
			case "metadata.name":
				v = "pod-0"
			case "status.podIP":
				v = "10.1.2.3"
			default:
				v = "x"
			}
		}
		defined[e.Name] = v
	}
	var errs []error
	out := make([]string, len(c.Args))
	for i, a := range c.Args {
		out[i] = envRef.ReplaceAllStringFunc(a, func(m string) string {
			name := envRef.FindStringSubmatch(m)[1]
			v, ok := defined[name]
			if !ok {
				errs = append(errs, fmt.Errorf("argument %q refers to $(%s), which the container does not define", a, name))
				return m
			}
			return v
		})
	}
	return out, errors.Join(errs...)
}

// flagValue returns the value of --name in args (either --name=v or
// --name v) and whether it is there.
func flagValue(args []string, name string) (string, bool) {
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
		if a == "--"+name && i+1 < len(args) {
			return args[i+1], true
		}
	}
	return "", false
}

// subcommand returns the ringtrain command a container runs ("worker",
// "data verify", ...).
func subcommand(c *corev1.Container) string {
	var words []string
	for _, a := range c.Args {
		if strings.HasPrefix(a, "-") {
			break
		}
		words = append(words, a)
	}
	if len(words) > 0 && (words[0] == "data" || words[0] == "checkpoint") && len(words) > 1 {
		return words[0] + " " + words[1]
	}
	if len(words) > 0 {
		return words[0]
	}
	return ""
}

// checkArgs parses each ringtrain container's arguments with the real
// command tree: the command must exist, every flag must be one of its flags
// with a value of the right type, required flags must be given and the
// positional arguments must be accepted.
func checkArgs(t *testing.T, r *rendered) {
	for _, w := range r.workloads() {
		for _, c := range podContainers(&w.template.Spec) {
			if !isRingtrain(c) {
				continue
			}
			if len(c.Command) != 0 {
				t.Errorf("%s/%s container %s sets command %q; the image's entrypoint is /ringtrain", w.kind, w.name, c.Name, c.Command)
			}
			args, err := expandArgs(c)
			if err != nil {
				t.Errorf("%s/%s container %s: %v", w.kind, w.name, c.Name, err)
			}
			if err := parseRingtrainArgs(args); err != nil {
				t.Errorf("%s/%s container %s: ringtrain %s: %v", w.kind, w.name, c.Name, strings.Join(args, " "), err)
			}
		}
	}
}

// parseRingtrainArgs checks args against the command tree without running
// anything.
func parseRingtrainArgs(args []string) error {
	root := newRootCmd()
	root.SetOut(io.Discard)
	root.SetErr(io.Discard)
	cmd, rest, err := root.Find(args)
	if err != nil {
		return err
	}
	// A parent command (`ringtrain data`) only shows its help.
	if cmd == root || !cmd.Runnable() || cmd.HasAvailableSubCommands() {
		return fmt.Errorf("%q is not a runnable ringtrain command", strings.Join(args, " "))
	}
	if err := cmd.ParseFlags(rest); err != nil {
		return err
	}
	if err := cmd.ValidateArgs(cmd.Flags().Args()); err != nil {
		return err
	}
	if err := cmd.ValidateRequiredFlags(); err != nil {
		return err
	}
	return cmd.ValidateFlagGroups()
}

func TestParseRingtrainArgsRejects(t *testing.T) {
	for _, args := range [][]string{
		{"no-such-command"},
		{"train", "--no-such-flag=1"},
		{"train", "--epochs=three"},
		{"data", "verify"},
		{"data"},
	} {
		if err := parseRingtrainArgs(args); err == nil {
			t.Errorf("ringtrain %s: accepted", strings.Join(args, " "))
		}
	}
	if err := parseRingtrainArgs([]string{"data", "verify", "mnist", "--dir=/x"}); err != nil {
		t.Errorf("ringtrain data verify mnist --dir=/x: %v", err)
	}
}

// checkEnv: RINGTRAIN_* variables must be ones the binary reads, and
// secrets must come from Secrets, not literals.
func checkEnv(t *testing.T, r *rendered) {
	for _, w := range r.workloads() {
		for _, c := range podContainers(&w.template.Spec) {
			for _, e := range c.Env {
				if strings.HasPrefix(e.Name, "RINGTRAIN_") && !knownEnv[e.Name] {
					t.Errorf("%s/%s container %s sets %s, which ringtrain does not read", w.kind, w.name, c.Name, e.Name)
				}
				if e.Name == "RINGTRAIN_JOIN_TOKEN" && (e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil) {
					t.Errorf("%s/%s container %s: RINGTRAIN_JOIN_TOKEN must come from a Secret", w.kind, w.name, c.Name)
				}
			}
		}
	}
}

// listenPort returns the port of a listen address (":7070", "0.0.0.0:7070"
// or "http://0.0.0.0:2379").
func listenPort(addr string) (int32, error) {
	if u, err := url.Parse(addr); err == nil && u.Scheme != "" && u.Host != "" {
		addr = u.Host
	}
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("bad port in %q", addr)
	}
	return int32(n), nil
}

// listeners returns, for a long-running container, the ports its
// arguments make it listen on, with the protocols each needs.
func listeners(c *corev1.Container) (map[int32][]corev1.Protocol, error) {
	args, _ := expandArgs(c)
	type lf struct {
		flag   string
		protos []corev1.Protocol
		list   bool
	}
	var flags []lf
	switch {
	case isRingtrain(c):
		switch subcommand(c) {
		case "coordinator":
			flags = []lf{{"listen", tcp, false}, {"http", tcp, false}, {"gossip", tcpUDP, false}}
		case "worker":
			flags = []lf{{"listen", tcp, false}, {"http", tcp, false}, {"gossip", tcpUDP, false}}
		default:
			return nil, nil
		}
	case isEtcd(c):
		flags = []lf{{"listen-client-urls", tcp, true}, {"listen-peer-urls", tcp, true}, {"listen-metrics-urls", tcp, true}}
	default:
		return nil, fmt.Errorf("image %s is neither %s nor %s", c.Image, ringtrainImage, etcdImage)
	}
	out := map[int32][]corev1.Protocol{}
	for _, f := range flags {
		v, ok := flagValue(args, f.flag)
		if !ok {
			return nil, fmt.Errorf("--%s is not given, so the port it listens on is the binary's default: give it explicitly", f.flag)
		}
		vals := []string{v}
		if f.list {
			vals = strings.Split(v, ",")
		}
		for _, v := range vals {
			p, err := listenPort(v)
			if err != nil {
				return nil, fmt.Errorf("--%s=%s: %w", f.flag, v, err)
			}
			out[p] = append(out[p], f.protos...)
		}
	}
	return out, nil
}

var (
	tcp    = []corev1.Protocol{corev1.ProtocolTCP}
	tcpUDP = []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP}
)

func protocol(p corev1.Protocol) corev1.Protocol {
	if p == "" {
		return corev1.ProtocolTCP
	}
	return p
}

// checkPorts: the containerPorts are exactly the ports the arguments listen
// on, with the right protocols.
func checkPorts(t *testing.T, r *rendered) {
	for _, w := range r.workloads() {
		for i := range w.template.Spec.Containers {
			c := &w.template.Spec.Containers[i]
			want, err := listeners(c)
			if err != nil {
				t.Errorf("%s/%s container %s: %v", w.kind, w.name, c.Name, err)
				continue
			}
			have := map[string]bool{}
			for _, p := range c.Ports {
				key := fmt.Sprintf("%d/%s", p.ContainerPort, protocol(p.Protocol))
				have[key] = true
				if protos, ok := want[p.ContainerPort]; !ok || !slices.Contains(protos, protocol(p.Protocol)) {
					t.Errorf("%s/%s container %s declares port %s (%s), which its arguments do not listen on", w.kind, w.name, c.Name, key, p.Name)
				}
			}
			for port, protos := range want {
				for _, proto := range protos {
					if !have[fmt.Sprintf("%d/%s", port, proto)] {
						t.Errorf("%s/%s container %s listens on %d/%s but declares no such containerPort", w.kind, w.name, c.Name, port, proto)
					}
				}
			}
		}
	}
}

// resolvePort turns a named or numbered port into a containerPort of c.
func resolvePort(c *corev1.Container, p intstr.IntOrString, proto corev1.Protocol) (int32, bool) {
	for _, cp := range c.Ports {
		if protocol(cp.Protocol) != protocol(proto) {
			continue
		}
		if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
			return cp.ContainerPort, true
		}
	}
	return 0, false
}

// checkProbes: ringtrain's probes hit /healthz (liveness) and /readyz
// (readiness) on the --http port; etcd's hit its health endpoints on the
// metrics port.
func checkProbes(t *testing.T, r *rendered) {
	for _, w := range r.workloads() {
		for i := range w.template.Spec.Containers {
			c := &w.template.Spec.Containers[i]
			args, _ := expandArgs(c)
			var port int32
			var paths map[string]bool
			switch {
			case isRingtrain(c):
				v, ok := flagValue(args, "http")
				if !ok {
					t.Errorf("%s/%s container %s: no --http, so probes have no port", w.kind, w.name, c.Name)
					continue
				}
				p, err := listenPort(v)
				if err != nil {
					t.Errorf("%s/%s container %s: --http=%s: %v", w.kind, w.name, c.Name, v, err)
					continue
				}
				port, paths = p, map[string]bool{"/healthz": true, "/readyz": true}
			case isEtcd(c):
				v, ok := flagValue(args, "listen-metrics-urls")
				if !ok {
					t.Errorf("%s/%s container %s: no --listen-metrics-urls, so probes have no port", w.kind, w.name, c.Name)
					continue
				}
				p, err := listenPort(strings.Split(v, ",")[0])
				if err != nil {
					t.Errorf("%s/%s container %s: %v", w.kind, w.name, c.Name, err)
					continue
				}
				port, paths = p, map[string]bool{"/livez": true, "/readyz": true, "/health": true}
			}
			probes := []struct {
				kind string
				p    *corev1.Probe
				want string
			}{{"liveness", c.LivenessProbe, "/healthz"}, {"readiness", c.ReadinessProbe, "/readyz"}, {"startup", c.StartupProbe, ""}}
			for _, pr := range probes {
				if pr.p == nil {
					if pr.kind != "startup" {
						t.Errorf("%s/%s container %s has no %s probe", w.kind, w.name, c.Name, pr.kind)
					}
					continue
				}
				g := pr.p.HTTPGet
				if g == nil {
					t.Errorf("%s/%s container %s: %s probe is not an HTTP GET", w.kind, w.name, c.Name, pr.kind)
					continue
				}
				if !paths[g.Path] {
					t.Errorf("%s/%s container %s: %s probe GETs %s, not a health endpoint", w.kind, w.name, c.Name, pr.kind, g.Path)
				}
				if isRingtrain(c) && pr.want != "" && g.Path != pr.want {
					t.Errorf("%s/%s container %s: %s probe GETs %s, want %s", w.kind, w.name, c.Name, pr.kind, g.Path, pr.want)
				}
				if got, ok := resolvePort(c, g.Port, corev1.ProtocolTCP); !ok || got != port {
					t.Errorf("%s/%s container %s: %s probe port %s is not the HTTP port %d", w.kind, w.name, c.Name, pr.kind, g.Port.String(), port)
				}
			}
		}
	}
}

// selects returns the workloads whose pods a selector matches.
func selects(r *rendered, sel map[string]string) []workload {
	if len(sel) == 0 {
		return nil
	}
	s := labels.SelectorFromSet(sel)
	var out []workload
	for _, w := range r.workloads() {
		if s.Matches(labels.Set(w.template.Labels)) {
			out = append(out, w)
		}
	}
	return out
}

// checkServices: each Service selects pods, and each of its ports reaches a
// containerPort of every selected pod. StatefulSets name a headless Service
// that selects them.
func checkServices(t *testing.T, r *rendered) {
	byName := map[string]corev1.Service{}
	for _, s := range r.services {
		byName[s.Name] = s
		ws := selects(r, s.Spec.Selector)
		if len(ws) == 0 {
			t.Errorf("Service/%s selects no pods (selector %v)", s.Name, s.Spec.Selector)
		}
		for _, w := range ws {
			for _, sp := range s.Spec.Ports {
				target := sp.TargetPort
				if target.Type == intstr.Int && target.IntVal == 0 {
					target = intstr.FromInt32(sp.Port)
				}
				found := false
				for i := range w.template.Spec.Containers {
					if _, ok := resolvePort(&w.template.Spec.Containers[i], target, sp.Protocol); ok {
						found = true
					}
				}
				if !found {
					t.Errorf("Service/%s port %s targets %s/%s, which %s/%s does not declare", s.Name, sp.Name, target.String(), protocol(sp.Protocol), w.kind, w.name)
				}
			}
		}
	}
	for _, s := range r.statefulSets {
		svc, ok := byName[s.Spec.ServiceName]
		if !ok {
			t.Errorf("StatefulSet/%s names Service %q, which does not exist", s.Name, s.Spec.ServiceName)
			continue
		}
		if svc.Spec.ClusterIP != corev1.ClusterIPNone {
			t.Errorf("StatefulSet/%s's Service %s is not headless", s.Name, svc.Name)
		}
		if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(s.Spec.Template.Labels)) {
			t.Errorf("StatefulSet/%s's Service %s does not select its pods", s.Name, svc.Name)
		}
		if !svc.Spec.PublishNotReadyAddresses {
			t.Errorf("Service/%s must publish not-ready pods: peers resolve each other before they are ready", svc.Name)
		}
	}
}

// checkSelectors: each workload's selector matches its own pods and no
// other workload's; PDBs select a workload; the NetworkPolicy covers every
// pod and admits every pod.
func checkSelectors(t *testing.T, r *rendered) {
	ws := r.workloads()
	for _, w := range ws {
		if len(w.selector) == 0 {
			t.Errorf("%s/%s has an empty selector", w.kind, w.name)
			continue
		}
		got := selects(r, w.selector)
		if len(got) != 1 || got[0].name != w.name || got[0].kind != w.kind {
			var names []string
			for _, g := range got {
				names = append(names, g.kind+"/"+g.name)
			}
			t.Errorf("%s/%s's selector %v matches %v, want only its own pods", w.kind, w.name, w.selector, names)
		}
	}
	for _, p := range r.pdbs {
		if p.Spec.Selector == nil || len(selects(r, p.Spec.Selector.MatchLabels)) != 1 {
			t.Errorf("PodDisruptionBudget/%s does not select exactly one workload", p.Name)
		}
	}
	if len(r.netpols) == 0 {
		t.Errorf("no NetworkPolicy")
	}
	for _, np := range r.netpols {
		covered := selects(r, np.Spec.PodSelector.MatchLabels)
		if len(covered) != len(ws) {
			t.Errorf("NetworkPolicy/%s covers %d of %d workloads", np.Name, len(covered), len(ws))
		}
		if len(np.Spec.Ingress) == 0 {
			t.Errorf("NetworkPolicy/%s admits nothing", np.Name)
		}
		for _, rule := range np.Spec.Ingress {
			if len(rule.From) == 0 {
				t.Errorf("NetworkPolicy/%s has a rule admitting every source", np.Name)
			}
			for _, from := range rule.From {
				if from.IPBlock != nil || from.NamespaceSelector != nil || from.PodSelector == nil {
					t.Errorf("NetworkPolicy/%s admits sources other than this namespace's pods", np.Name)
					continue
				}
				if n := len(selects(r, from.PodSelector.MatchLabels)); n != len(ws) {
					t.Errorf("NetworkPolicy/%s admits %d of %d workloads' pods", np.Name, n, len(ws))
				}
			}
		}
	}
}

// mountedFile finds what a path in container c is: a key of a ConfigMap or
// Secret, or a file on a PVC or emptyDir. It returns the volume and the
// path inside it.
func mountedFile(spec *corev1.PodSpec, c *corev1.Container, p string) (*corev1.Volume, *corev1.VolumeMount, string, error) {
	best := mountFor(c, p)
	if best == nil {
		return nil, nil, "", fmt.Errorf("%s is on no volume (the root file system is read-only and empty)", p)
	}
	for i := range spec.Volumes {
		if spec.Volumes[i].Name == best.Name {
			rel := strings.TrimPrefix(strings.TrimPrefix(p, best.MountPath), "/")
			if best.SubPath != "" {
				rel = path.Join(best.SubPath, rel)
			}
			return &spec.Volumes[i], best, rel, nil
		}
	}
	return nil, nil, "", fmt.Errorf("volume mount %s names no volume", best.Name)
}

// mountFor returns the volume mount of c that holds path p: the one with
// the longest mount path above it.
func mountFor(c *corev1.Container, p string) *corev1.VolumeMount {
	var best *corev1.VolumeMount
	for i := range c.VolumeMounts {
		m := &c.VolumeMounts[i]
		if p == m.MountPath || strings.HasPrefix(p, strings.TrimSuffix(m.MountPath, "/")+"/") {
			if best == nil || len(m.MountPath) > len(best.MountPath) {
				best = m
			}
		}
	}
	return best
}

// checkFiles: the files named by --job, --token-file and --tls-* exist in
// the ConfigMap or Secret mounted there; --store and --data-dir are on the
// shared ReadWriteMany volume, --store writable.
func checkFiles(t *testing.T, r *rendered) {
	cms := map[string]corev1.ConfigMap{}
	for _, cm := range r.configMaps {
		cms[cm.Name] = cm
	}
	secrets := map[string]corev1.Secret{}
	for _, s := range r.secrets {
		secrets[s.Name] = s
	}
	for _, w := range r.workloads() {
		spec := &w.template.Spec
		for _, c := range podContainers(spec) {
			if !isRingtrain(c) {
				continue
			}
			args, _ := expandArgs(c)
			for _, f := range []string{"job", "token-file", "tls-cert", "tls-key", "tls-ca"} {
				p, ok := flagValue(args, f)
				if !ok {
					continue
				}
				v, _, key, err := mountedFile(spec, c, p)
				if err != nil {
					t.Errorf("%s/%s container %s: --%s: %v", w.kind, w.name, c.Name, f, err)
					continue
				}
				switch {
				case v.ConfigMap != nil:
					cm, ok := cms[v.ConfigMap.Name]
					if !ok {
						t.Errorf("%s/%s: --%s=%s: ConfigMap %s does not exist", w.kind, w.name, f, p, v.ConfigMap.Name)
					} else if _, ok := cm.Data[key]; !ok {
						t.Errorf("%s/%s: --%s=%s: ConfigMap %s has no key %q", w.kind, w.name, f, p, cm.Name, key)
					}
				case v.Secret != nil:
					s, ok := secrets[v.Secret.SecretName]
					if !ok {
						t.Errorf("%s/%s: --%s=%s: Secret %s does not exist", w.kind, w.name, f, p, v.Secret.SecretName)
					} else if len(s.Data[key]) == 0 && s.StringData[key] == "" {
						t.Errorf("%s/%s: --%s=%s: Secret %s has no (or an empty) key %q", w.kind, w.name, f, p, s.Name, key)
					}
				default:
					t.Errorf("%s/%s: --%s=%s is on volume %s, not a ConfigMap or Secret", w.kind, w.name, f, p, v.Name)
				}
			}
			for _, f := range []string{"store", "data-dir", "dir"} {
				p, ok := flagValue(args, f)
				if !ok {
					continue
				}
				v, m, _, err := mountedFile(spec, c, p)
				if err != nil {
					t.Errorf("%s/%s container %s: --%s: %v", w.kind, w.name, c.Name, f, err)
					continue
				}
				if v.PersistentVolumeClaim == nil {
					t.Errorf("%s/%s container %s: --%s=%s is on volume %s, not the shared PVC", w.kind, w.name, c.Name, f, p, v.Name)
				}
				if f == "store" && m.ReadOnly {
					t.Errorf("%s/%s container %s: --store=%s is mounted read-only", w.kind, w.name, c.Name, p)
				}
			}
		}
	}
}

// jobOf returns the job file the coordinator runs, parsed and validated.
func jobOf(r *rendered) (job.Spec, error) {
	for _, d := range r.deployments {
		spec := &d.Spec.Template.Spec
		for i := range spec.Containers {
			c := &spec.Containers[i]
			if !isRingtrain(c) || subcommand(c) != "coordinator" {
				continue
			}
			p, ok := flagValue(c.Args, "job")
			if !ok {
				return job.Spec{}, fmt.Errorf("the coordinator has no --job")
			}
			v, _, key, err := mountedFile(spec, c, p)
			if err != nil || v.ConfigMap == nil {
				return job.Spec{}, fmt.Errorf("the coordinator's --job=%s is not in a ConfigMap (%v)", p, err)
			}
			for _, cm := range r.configMaps {
				if cm.Name == v.ConfigMap.Name {
					s, err := job.Parse([]byte(cm.Data[key]), "ConfigMap "+cm.Name+" "+key)
					if err != nil {
						return s, err
					}
					return s, worker.CheckJob(s)
				}
			}
			return job.Spec{}, fmt.Errorf("ConfigMap %s does not exist", v.ConfigMap.Name)
		}
	}
	return job.Spec{}, fmt.Errorf("no coordinator Deployment")
}

// checkJob: the job file parses and validates, names a model of the zoo
// and a known data set, and agrees with the cluster: worker replicas equal
// `workers`, `threads` fits the worker's CPU limit, `data_dir` is where the
// workers read data.
func checkJob(t *testing.T, r *rendered) {
	spec, err := jobOf(r)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(models.Names(), spec.Model) {
		t.Errorf("job model %q is not in the zoo %v", spec.Model, models.Names())
	}
	if err := dataset.CheckName(spec.Dataset); err != nil {
		t.Errorf("job: %v", err)
	}
	var worker *appsv1.StatefulSet
	for i := range r.statefulSets {
		for _, c := range r.statefulSets[i].Spec.Template.Spec.Containers {
			if isRingtrain(&c) && subcommand(&c) == "worker" {
				worker = &r.statefulSets[i]
			}
		}
	}
	if worker == nil {
		t.Fatal("no worker StatefulSet")
	}
	if got := replicasOf(worker.Spec.Replicas); int(got) != spec.Workers {
		t.Errorf("StatefulSet/%s has %d replicas, the job has workers: %d", worker.Name, got, spec.Workers)
	}
	if spec.MinWorkers > spec.Workers || (spec.MaxWorkers > 0 && spec.MaxWorkers < spec.Workers) {
		t.Errorf("job workers %d is outside [min_workers %d, max_workers %d]", spec.Workers, spec.MinWorkers, spec.MaxWorkers)
	}
	for _, c := range podContainers(&worker.Spec.Template.Spec) {
		if !isRingtrain(c) {
			continue
		}
		switch subcommand(c) {
		case "worker":
			limit := c.Resources.Limits.Cpu()
			if spec.Threads < 1 || limit.IsZero() || int64(spec.Threads) > limit.Value() {
				t.Errorf("job threads %d must be between 1 and the worker's CPU limit %s", spec.Threads, limit)
			}
			if d, ok := flagValue(c.Args, "data-dir"); ok && spec.DataDir != "" && d != spec.DataDir {
				t.Errorf("worker --data-dir=%s, job data_dir %s", d, spec.DataDir)
			}
		case "data verify", "data get":
			d, _ := flagValue(c.Args, "dir")
			if d != spec.DataDir {
				t.Errorf("init container %s prepares %s, job data_dir is %s", c.Name, d, spec.DataDir)
			}
			if len(c.Args) < 3 || c.Args[2] != spec.Dataset {
				t.Errorf("init container %s prepares data set %v, the job trains on %s", c.Name, c.Args[2:], spec.Dataset)
			}
		}
	}
}

// etcdFlags is the etcd server's real flag set: embed.Config's flags and
// the few etcdmain adds.
func etcdFlags() (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet("etcd", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	embed.NewConfig().AddFlags(fs)
	fs.String("config-file", "", "")
	fs.String("discovery-fallback", "", "")
	state := fs.String("initial-cluster-state", "new", "")
	fs.String("v2-deprecation", "", "")
	fs.Bool("version", false, "")
	return fs, state
}

// checkEtcd: etcd's arguments parse with etcd's own flags; the initial
// cluster lists exactly the StatefulSet's pods under its headless Service;
// the coordinator's --etcd-endpoints reach those pods' client port.
func checkEtcd(t *testing.T, r *rendered) {
	var sts *appsv1.StatefulSet
	var c *corev1.Container
	for i := range r.statefulSets {
		for j := range r.statefulSets[i].Spec.Template.Spec.Containers {
			if cc := &r.statefulSets[i].Spec.Template.Spec.Containers[j]; isEtcd(cc) {
				sts, c = &r.statefulSets[i], cc
			}
		}
	}
	if sts == nil {
		t.Fatal("no etcd StatefulSet")
	}
	args, err := expandArgs(c)
	if err != nil {
		t.Error(err)
	}
	fs, state := etcdFlags()
	if err := fs.Parse(args); err != nil {
		t.Fatalf("etcd %s: %v", strings.Join(args, " "), err)
	}
	if fs.NArg() != 0 {
		t.Errorf("etcd takes no positional arguments, got %q", fs.Args())
	}
	if *state != "new" && *state != "existing" {
		t.Errorf("--initial-cluster-state=%s", *state)
	}
	replicas := int(replicasOf(sts.Spec.Replicas))
	if replicas%2 != 1 {
		t.Errorf("etcd has %d members; an odd number tolerates as many failures with fewer members", replicas)
	}
	peerPort, clientPort := int32(0), int32(0)
	if v, ok := flagValue(args, "listen-peer-urls"); ok {
		peerPort, _ = listenPort(v)
	}
	if v, ok := flagValue(args, "listen-client-urls"); ok {
		clientPort, _ = listenPort(v)
	}
	var want []string
	for i := range replicas {
		want = append(want, fmt.Sprintf("%s-%d=http://%s-%d.%s:%d", sts.Name, i, sts.Name, i, sts.Spec.ServiceName, peerPort))
	}
	if got, _ := flagValue(c.Args, "initial-cluster"); got != strings.Join(want, ",") {
		t.Errorf("--initial-cluster=%s\nwant %s", got, strings.Join(want, ","))
	}
	for _, name := range []string{"name", "advertise-client-urls", "initial-advertise-peer-urls"} {
		if v, _ := flagValue(c.Args, name); !strings.Contains(v, "$(POD_NAME)") {
			t.Errorf("etcd --%s=%s does not use the pod name", name, v)
		}
	}
	if v, _ := flagValue(args, "data-dir"); v != "" {
		if m := mountFor(c, v); m == nil {
			t.Errorf("etcd --data-dir=%s is on no volume", v)
		} else if !slices.ContainsFunc(sts.Spec.VolumeClaimTemplates, func(p corev1.PersistentVolumeClaim) bool { return p.Name == m.Name }) {
			t.Errorf("etcd --data-dir=%s is not on a volume claim template", v)
		}
	} else {
		t.Error("etcd has no --data-dir")
	}
	found := false
	for _, d := range r.deployments {
		for _, cc := range d.Spec.Template.Spec.Containers {
			if !isRingtrain(&cc) || subcommand(&cc) != "coordinator" {
				continue
			}
			found = true
			eps, _ := flagValue(cc.Args, "etcd-endpoints")
			var wantEPs []string
			for i := range replicas {
				wantEPs = append(wantEPs, fmt.Sprintf("http://%s-%d.%s:%d", sts.Name, i, sts.Spec.ServiceName, clientPort))
			}
			if eps != strings.Join(wantEPs, ",") {
				t.Errorf("coordinator --etcd-endpoints=%s\nwant %s", eps, strings.Join(wantEPs, ","))
			}
		}
	}
	if !found {
		t.Error("no coordinator")
	}
	// The worker reaches the coordinator through a Service port that targets
	// the coordinator's control port.
	for _, s := range r.statefulSets {
		for _, cc := range s.Spec.Template.Spec.Containers {
			if !isRingtrain(&cc) || subcommand(&cc) != "worker" {
				continue
			}
			addr, _ := flagValue(cc.Args, "coordinator")
			if err := checkCoordinatorAddr(r, addr); err != nil {
				t.Errorf("worker --coordinator=%s: %v", addr, err)
			}
		}
	}
}

func checkCoordinatorAddr(r *rendered, addrs string) error {
	for _, addr := range strings.Split(addrs, ",") {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return err
		}
		for _, s := range r.services {
			if s.Name != host {
				continue
			}
			for _, sp := range s.Spec.Ports {
				if strconv.Itoa(int(sp.Port)) != port {
					continue
				}
				for _, w := range selects(r, s.Spec.Selector) {
					for _, c := range w.template.Spec.Containers {
						if subcommand(&c) != "coordinator" {
							return fmt.Errorf("Service %s selects %s/%s, not a coordinator", s.Name, w.kind, w.name)
						}
						target, ok := resolvePort(&c, sp.TargetPort, sp.Protocol)
						listen, _ := flagValue(c.Args, "listen")
						lp, err := listenPort(listen)
						if !ok || err != nil || target != lp {
							return fmt.Errorf("Service %s port %s does not reach the coordinator's --listen %s", s.Name, port, listen)
						}
					}
				}
				if s.Spec.PublishNotReadyAddresses {
					return fmt.Errorf("Service %s publishes not-ready coordinators; only the leader is ready", s.Name)
				}
				return nil
			}
			return fmt.Errorf("Service %s has no port %s", host, port)
		}
		return fmt.Errorf("no Service named %s", host)
	}
	return nil
}

// checkSecurity: every pod runs as non-root under the RuntimeDefault
// seccomp profile without a service account token; every container drops
// all capabilities, cannot escalate and has a read-only root file system.
func checkSecurity(t *testing.T, r *rendered) {
	for _, w := range r.workloads() {
		spec := &w.template.Spec
		psc := spec.SecurityContext
		switch {
		case psc == nil:
			t.Errorf("%s/%s has no pod securityContext", w.kind, w.name)
			continue
		case psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot:
			t.Errorf("%s/%s: runAsNonRoot is not true", w.kind, w.name)
		case psc.RunAsUser == nil || *psc.RunAsUser == 0:
			t.Errorf("%s/%s: runAsUser is not a non-root UID", w.kind, w.name)
		case psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
			t.Errorf("%s/%s: the seccomp profile is not RuntimeDefault", w.kind, w.name)
		}
		if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
			t.Errorf("%s/%s mounts a service account token it does not use", w.kind, w.name)
		}
		if spec.HostNetwork || spec.HostPID || spec.HostIPC {
			t.Errorf("%s/%s shares a host namespace", w.kind, w.name)
		}
		for _, c := range podContainers(spec) {
			sc := c.SecurityContext
			if sc == nil {
				t.Errorf("%s/%s container %s has no securityContext", w.kind, w.name, c.Name)
				continue
			}
			if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				t.Errorf("%s/%s container %s allows privilege escalation", w.kind, w.name, c.Name)
			}
			if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
				t.Errorf("%s/%s container %s has a writable root file system", w.kind, w.name, c.Name)
			}
			if sc.Privileged != nil && *sc.Privileged {
				t.Errorf("%s/%s container %s is privileged", w.kind, w.name, c.Name)
			}
			if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) != 0 {
				t.Errorf("%s/%s container %s does not drop all capabilities", w.kind, w.name, c.Name)
			}
			if sc.RunAsUser != nil && *sc.RunAsUser == 0 {
				t.Errorf("%s/%s container %s runs as root", w.kind, w.name, c.Name)
			}
		}
	}
}

// checkResources: every container requests and limits CPU and memory.
func checkResources(t *testing.T, r *rendered) {
	for _, w := range r.workloads() {
		for _, c := range podContainers(&w.template.Spec) {
			for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				req, hasReq := c.Resources.Requests[res]
				lim, hasLim := c.Resources.Limits[res]
				if !hasReq || !hasLim {
					t.Errorf("%s/%s container %s lacks a %s request or limit", w.kind, w.name, c.Name, res)
					continue
				}
				if req.Cmp(lim) > 0 {
					t.Errorf("%s/%s container %s requests more %s (%s) than its limit (%s)", w.kind, w.name, c.Name, res, req.String(), lim.String())
				}
			}
		}
	}
}

// checkStorage: the PVC the coordinator and workers share exists and is
// ReadWriteMany.
func checkStorage(t *testing.T, r *rendered) {
	pvcs := map[string]corev1.PersistentVolumeClaim{}
	for _, p := range r.pvcs {
		pvcs[p.Name] = p
	}
	for _, w := range r.workloads() {
		for _, v := range w.template.Spec.Volumes {
			if v.PersistentVolumeClaim == nil {
				continue
			}
			p, ok := pvcs[v.PersistentVolumeClaim.ClaimName]
			if !ok {
				t.Errorf("%s/%s mounts PVC %s, which does not exist", w.kind, w.name, v.PersistentVolumeClaim.ClaimName)
				continue
			}
			if w.replicas > 1 && !slices.Contains(p.Spec.AccessModes, corev1.ReadWriteMany) {
				t.Errorf("PVC %s is shared by %d pods of %s/%s but is not ReadWriteMany", p.Name, w.replicas, w.kind, w.name)
			}
		}
	}
}
