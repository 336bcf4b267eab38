package k8stest

// Layer 1: every overlay against kube-apiserver and etcd, with no
// controllers. What the strict offline decoding in
// cmd/ringtrain/manifests_test.go cannot see: admission (PodSecurity
// "restricted" enforced on the namespace), the server's validation and
// defaulting, generated names and selectors, immutable fields, and
// server-side apply's ownership (a second apply changes nothing).

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func TestAPIServer(t *testing.T) {
	c := connect(t)
	v, err := c.typed.Discovery().ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kube-apiserver %s", v.GitVersion)
	for _, o := range renderOverlays(t) {
		t.Run(o.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()

			stored := applyOverlay(ctx, t, c, o)
			t.Logf("%d objects accepted in namespace %s with PodSecurity enforce=restricted, no warnings", len(stored), o.namespace)

			t.Run("PodSecurityIsEnforced", func(t *testing.T) { checkPodSecurityEnforced(ctx, t, c, o, stored) })
			t.Run("ReapplyIsNoOp", func(t *testing.T) { checkReapply(ctx, t, c, o, stored) })
			t.Run("Namespace", func(t *testing.T) { checkNamespace(t, stored[id(o.objects[0])]) })
			t.Run("Services", func(t *testing.T) { checkServices(t, stored) })
			t.Run("StatefulSets", func(t *testing.T) { checkStatefulSets(t, stored) })
			t.Run("Deployment", func(t *testing.T) { checkDeployments(t, stored) })
			t.Run("Job", func(t *testing.T) { checkJobs(t, stored) })
			t.Run("PodTemplates", func(t *testing.T) { checkPodTemplates(t, stored) })
			t.Run("References", func(t *testing.T) { checkReferences(t, stored) })
			t.Run("Secrets", func(t *testing.T) { checkSecrets(t, o, stored) })
			t.Run("PersistentVolumeClaims", func(t *testing.T) { checkPVCs(t, stored) })
			t.Run("PodDisruptionBudgets", func(t *testing.T) { checkPDBs(t, stored) })
			t.Run("NetworkPolicies", func(t *testing.T) { checkNetworkPolicies(t, stored) })
			t.Run("ImmutableFields", func(t *testing.T) { checkImmutable(ctx, t, c, stored) })
		})
	}
}

// checkPodSecurityEnforced shows that "accepted with no warnings" means
// something: in the same namespace the API server refuses a pod that runs
// as root with privilege escalation, and warns about a workload whose
// template does. Both are dry runs; nothing is stored.
func checkPodSecurityEnforced(ctx context.Context, t *testing.T, c *cluster, o overlay, stored map[string]*unstructured.Unstructured) {
	// The overlay's own worker template, made to break "restricted".
	sts := stored["StatefulSet/"+o.namespace+"/worker"]
	if sts == nil {
		t.Fatal("no StatefulSet worker")
	}
	bad := sts.DeepCopy()
	unstructured.RemoveNestedField(bad.Object, "metadata", "managedFields")
	unstructured.RemoveNestedField(bad.Object, "metadata", "resourceVersion")
	unstructured.RemoveNestedField(bad.Object, "metadata", "uid")
	unstructured.RemoveNestedField(bad.Object, "status")
	containers, _, _ := unstructured.NestedSlice(bad.Object, "spec", "template", "spec", "containers")
	c0 := containers[0].(map[string]any)
	c0["securityContext"] = map[string]any{"allowPrivilegeEscalation": true, "runAsUser": int64(0)}
	if err := unstructured.SetNestedSlice(bad.Object, containers, "spec", "template", "spec", "containers"); err != nil {
		t.Fatal(err)
	}
	bad.SetName("worker-pss-check")
	if err := unstructured.SetNestedField(bad.Object, "worker-pss-check", "spec", "serviceName"); err != nil {
		t.Fatal(err)
	}
	_, warns, err := c.apply(ctx, bad, applyOptions{dryRun: true, force: true})
	if err != nil {
		t.Fatalf("dry-run of a workload that breaks restricted: %v", err)
	}
	if !slices.ContainsFunc(warns, func(w string) bool { return strings.Contains(w, `violate PodSecurity "restricted:latest"`) }) {
		t.Errorf("a workload whose template breaks restricted drew no PodSecurity warning; warnings: %q", warns)
	}

	// The ServiceAccount admission plugin, which runs before PodSecurity,
	// refuses a pod whose ServiceAccount does not exist; without
	// kube-controller-manager nothing makes the namespace's default one.
	_, err = c.typed.CoreV1().ServiceAccounts(o.namespace).Create(ctx,
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	tmpl, _, _ := unstructured.NestedMap(bad.Object, "spec", "template")
	pod := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Pod",
		"metadata": map[string]any{"name": "pss-check", "namespace": o.namespace},
		"spec":     tmpl["spec"],
	}}
	_, _, err = c.apply(ctx, pod, applyOptions{dryRun: true, force: true})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), `violates PodSecurity "restricted:latest"`) {
		t.Errorf("a pod that breaks restricted: want PodSecurity's refusal, got %v", err)
	}
}

// checkReapply applies every object twice more. The first re-apply must
// change nothing but, at most, the resourceVersion: the API server
// rewrites a PersistentVolumeClaim once on its first update with nothing
// visible changed (kube-apiserver v1.37.2 does so for any claim). The
// second must store nothing at all, or every `kubectl apply` would churn
// the objects and roll the pods.
func checkReapply(ctx context.Context, t *testing.T, c *cluster, o overlay, stored map[string]*unstructured.Unstructured) {
	withoutVersion := func(u *unstructured.Unstructured) map[string]any {
		c := u.DeepCopy()
		c.SetResourceVersion("")
		return c.Object
	}
	for i, obj := range o.objects {
		if i == 0 {
			obj = withRestricted(obj)
		}
		was := stored[id(obj)]
		var versions []string
		for range 2 {
			got, warns, err := c.apply(ctx, obj, applyOptions{})
			if err != nil {
				t.Fatalf("re-applying %s: %v", id(obj), err)
			}
			if len(warns) > 0 {
				t.Errorf("re-applying %s: warnings %q", id(obj), warns)
			}
			if d := cmp.Diff(withoutVersion(was), withoutVersion(got)); d != "" {
				t.Errorf("re-applying %s changed it (-was +now):\n%s", id(obj), d)
			}
			versions = append(versions, got.GetResourceVersion())
		}
		switch {
		case versions[1] != versions[0]:
			t.Errorf("applying %s a third time stored it again: resourceVersion %s -> %s", id(obj), versions[0], versions[1])
		case versions[0] != was.GetResourceVersion():
			t.Logf("%s: written once more on the first re-apply, with no change (resourceVersion %s -> %s)", id(obj), was.GetResourceVersion(), versions[0])
		}
	}
}

func checkNamespace(t *testing.T, u *unstructured.Unstructured) {
	ns := toTyped[corev1.Namespace](t, u)
	// Set by the server, and what NetworkPolicies select namespaces by.
	if got := ns.Labels["kubernetes.io/metadata.name"]; got != ns.Name {
		t.Errorf("namespace %s: label kubernetes.io/metadata.name = %q", ns.Name, got)
	}
	if ns.Status.Phase != corev1.NamespaceActive {
		t.Errorf("namespace %s: phase %q", ns.Name, ns.Status.Phase)
	}
}

func checkServices(t *testing.T, stored map[string]*unstructured.Unstructured) {
	svcs := kindOf(stored, "Service")
	if len(svcs) == 0 {
		t.Fatal("no Services")
	}
	for name, u := range svcs {
		s := toTyped[corev1.Service](t, u)
		if s.Spec.Type != corev1.ServiceTypeClusterIP {
			t.Errorf("Service %s: type %q, want ClusterIP (defaulted)", name, s.Spec.Type)
		}
		if s.Spec.ClusterIP == corev1.ClusterIPNone {
			if !slices.Equal(s.Spec.ClusterIPs, []string{corev1.ClusterIPNone}) {
				t.Errorf("headless Service %s: clusterIPs %v", name, s.Spec.ClusterIPs)
			}
		} else if ip := net.ParseIP(s.Spec.ClusterIP); ip == nil {
			t.Errorf("Service %s: no cluster IP allocated (%q)", name, s.Spec.ClusterIP)
		} else {
			t.Logf("Service %s: cluster IP %s allocated", name, ip)
		}
		if s.Spec.SessionAffinity != corev1.ServiceAffinityNone {
			t.Errorf("Service %s: sessionAffinity %q", name, s.Spec.SessionAffinity)
		}
		if s.Spec.InternalTrafficPolicy == nil || *s.Spec.InternalTrafficPolicy != corev1.ServiceInternalTrafficPolicyCluster {
			t.Errorf("Service %s: internalTrafficPolicy %v, want Cluster", name, s.Spec.InternalTrafficPolicy)
		}
		if len(s.Spec.IPFamilies) == 0 || s.Spec.IPFamilyPolicy == nil {
			t.Errorf("Service %s: ipFamilies %v, ipFamilyPolicy %v not defaulted", name, s.Spec.IPFamilies, s.Spec.IPFamilyPolicy)
		}
		for _, p := range s.Spec.Ports {
			if p.Protocol == "" {
				t.Errorf("Service %s port %s: no protocol", name, p.Name)
			}
			if p.TargetPort.Type != intstr.String {
				t.Errorf("Service %s port %s: targetPort %s, want a named container port", name, p.Name, p.TargetPort.String())
			}
		}
	}
}

func checkStatefulSets(t *testing.T, stored map[string]*unstructured.Unstructured) {
	stss := kindOf(stored, "StatefulSet")
	svcs := kindOf(stored, "Service")
	for _, name := range []string{"etcd", "worker"} {
		u := stss[name]
		if u == nil {
			t.Errorf("no StatefulSet %s", name)
			continue
		}
		s := toTyped[appsv1.StatefulSet](t, u)
		if s.Spec.UpdateStrategy.Type != appsv1.RollingUpdateStatefulSetStrategyType ||
			s.Spec.UpdateStrategy.RollingUpdate == nil || s.Spec.UpdateStrategy.RollingUpdate.Partition == nil ||
			*s.Spec.UpdateStrategy.RollingUpdate.Partition != 0 {
			t.Errorf("StatefulSet %s: updateStrategy %+v, want RollingUpdate with partition 0", name, s.Spec.UpdateStrategy)
		}
		if s.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
			t.Errorf("StatefulSet %s: podManagementPolicy %q, want Parallel", name, s.Spec.PodManagementPolicy)
		}
		if s.Spec.RevisionHistoryLimit == nil || *s.Spec.RevisionHistoryLimit != 10 {
			t.Errorf("StatefulSet %s: revisionHistoryLimit %v, want the default 10", name, s.Spec.RevisionHistoryLimit)
		}
		// deploy/README.md, section 8: deleting the StatefulSets keeps the
		// volumes, and the job resumes from them.
		if p := s.Spec.PersistentVolumeClaimRetentionPolicy; p == nil ||
			p.WhenDeleted != appsv1.RetainPersistentVolumeClaimRetentionPolicyType ||
			p.WhenScaled != appsv1.RetainPersistentVolumeClaimRetentionPolicyType {
			t.Errorf("StatefulSet %s: persistentVolumeClaimRetentionPolicy %+v, want Retain on delete and scale", name, p)
		}
		// The pods' DNS names (etcd-0.etcd, worker-0.worker) need a headless
		// Service of the serviceName.
		svc := svcs[s.Spec.ServiceName]
		if svc == nil {
			t.Errorf("StatefulSet %s: serviceName %q names no Service", name, s.Spec.ServiceName)
		} else if ip, _, _ := unstructured.NestedString(svc.Object, "spec", "clusterIP"); ip != corev1.ClusterIPNone {
			t.Errorf("StatefulSet %s: Service %s is not headless (clusterIP %q)", name, s.Spec.ServiceName, ip)
		}
		for _, vct := range s.Spec.VolumeClaimTemplates {
			if vct.Spec.VolumeMode == nil || *vct.Spec.VolumeMode != corev1.PersistentVolumeFilesystem {
				t.Errorf("StatefulSet %s claim %s: volumeMode %v, want Filesystem", name, vct.Name, vct.Spec.VolumeMode)
			}
		}
		t.Logf("StatefulSet %s: %d replicas, serviceName %s, generation %d", name, *s.Spec.Replicas, s.Spec.ServiceName, s.Generation)
	}
}

func checkDeployments(t *testing.T, stored map[string]*unstructured.Unstructured) {
	u := kindOf(stored, "Deployment")["coordinator"]
	if u == nil {
		t.Fatal("no Deployment coordinator")
	}
	d := toTyped[appsv1.Deployment](t, u)
	// Recreate, as coordinator.yaml explains: no rolling update parameters.
	if d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType || d.Spec.Strategy.RollingUpdate != nil {
		t.Errorf("Deployment coordinator: strategy %+v, want Recreate", d.Spec.Strategy)
	}
	if d.Spec.ProgressDeadlineSeconds == nil || *d.Spec.ProgressDeadlineSeconds != 600 {
		t.Errorf("Deployment coordinator: progressDeadlineSeconds %v, want the default 600", d.Spec.ProgressDeadlineSeconds)
	}
	if d.Spec.RevisionHistoryLimit == nil || *d.Spec.RevisionHistoryLimit != 10 {
		t.Errorf("Deployment coordinator: revisionHistoryLimit %v, want the default 10", d.Spec.RevisionHistoryLimit)
	}
}

func checkJobs(t *testing.T, stored map[string]*unstructured.Unstructured) {
	u := kindOf(stored, "Job")["etcd-auth"]
	if u == nil {
		t.Fatal("no Job etcd-auth")
	}
	j := toTyped[batchv1.Job](t, u)
	// The selector the offline test cannot see: generated from the Job's uid.
	const uidLabel = "batch.kubernetes.io/controller-uid"
	if j.Spec.Selector == nil || j.Spec.Selector.MatchLabels[uidLabel] != string(j.UID) {
		t.Errorf("Job etcd-auth: selector %v, want the generated %s=%s", j.Spec.Selector, uidLabel, j.UID)
	}
	if j.Spec.Template.Labels[uidLabel] != string(j.UID) || j.Spec.Template.Labels["batch.kubernetes.io/job-name"] != j.Name {
		t.Errorf("Job etcd-auth: template labels %v lack the generated controller-uid and job-name", j.Spec.Template.Labels)
	}
	if j.Spec.CompletionMode == nil || *j.Spec.CompletionMode != batchv1.NonIndexedCompletion {
		t.Errorf("Job etcd-auth: completionMode %v, want NonIndexed", j.Spec.CompletionMode)
	}
	if j.Spec.Completions == nil || *j.Spec.Completions != 1 || j.Spec.Parallelism == nil || *j.Spec.Parallelism != 1 {
		t.Errorf("Job etcd-auth: completions %v, parallelism %v, want 1 and 1", j.Spec.Completions, j.Spec.Parallelism)
	}
	if j.Spec.Suspend == nil || *j.Spec.Suspend {
		t.Errorf("Job etcd-auth: suspend %v, want false", j.Spec.Suspend)
	}
	if j.Spec.BackoffLimit == nil || *j.Spec.BackoffLimit != 20 {
		t.Errorf("Job etcd-auth: backoffLimit %v, want the manifest's 20", j.Spec.BackoffLimit)
	}
	t.Logf("Job etcd-auth: selector %s=%s generated", uidLabel, j.UID)
}

// checkPodTemplates checks the server's defaults in every pod template,
// and the security context that PodSecurity admitted.
func checkPodTemplates(t *testing.T, stored map[string]*unstructured.Unstructured) {
	for name, tmpl := range podTemplates(t, stored) {
		s := tmpl.Spec
		if s.DNSPolicy != corev1.DNSClusterFirst {
			t.Errorf("%s: dnsPolicy %q, want ClusterFirst (the Services' names resolve)", name, s.DNSPolicy)
		}
		if s.SchedulerName != corev1.DefaultSchedulerName {
			t.Errorf("%s: schedulerName %q", name, s.SchedulerName)
		}
		if s.TerminationGracePeriodSeconds == nil {
			t.Errorf("%s: terminationGracePeriodSeconds not defaulted", name)
		}
		if s.SecurityContext == nil || s.SecurityContext.RunAsNonRoot == nil || !*s.SecurityContext.RunAsNonRoot ||
			s.SecurityContext.SeccompProfile == nil || s.SecurityContext.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("%s: pod securityContext %+v, want runAsNonRoot and RuntimeDefault seccomp", name, s.SecurityContext)
		}
		for _, ctr := range slices.Concat(s.InitContainers, s.Containers) {
			if ctr.TerminationMessagePolicy != corev1.TerminationMessageReadFile || ctr.TerminationMessagePath == "" {
				t.Errorf("%s container %s: termination message %q at %q not defaulted", name, ctr.Name, ctr.TerminationMessagePolicy, ctr.TerminationMessagePath)
			}
			for _, p := range ctr.Ports {
				if p.Protocol == "" {
					t.Errorf("%s container %s port %s: no protocol", name, ctr.Name, p.Name)
				}
			}
			for _, pr := range []*corev1.Probe{ctr.StartupProbe, ctr.LivenessProbe, ctr.ReadinessProbe} {
				if pr != nil && (pr.SuccessThreshold != 1 || pr.TimeoutSeconds < 1 || pr.HTTPGet == nil || pr.HTTPGet.Scheme != corev1.URISchemeHTTP) {
					t.Errorf("%s container %s: probe %+v not defaulted to HTTP, success threshold 1", name, ctr.Name, pr)
				}
			}
			sc := ctr.SecurityContext
			if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
				sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
				sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
				t.Errorf("%s container %s: securityContext %+v", name, ctr.Name, sc)
			}
		}
		for _, v := range s.Volumes {
			if v.Secret != nil && (v.Secret.DefaultMode == nil || *v.Secret.DefaultMode != 0o440) {
				t.Errorf("%s volume %s: secret defaultMode %v, want 0440", name, v.Name, v.Secret.DefaultMode)
			}
			if v.ConfigMap != nil && (v.ConfigMap.DefaultMode == nil || *v.ConfigMap.DefaultMode != 0o644) {
				t.Errorf("%s volume %s: configMap defaultMode %v, want the default 0644", name, v.Name, v.ConfigMap.DefaultMode)
			}
		}
	}
}

// checkReferences: every ConfigMap, Secret and claim a pod template names
// is an object the server holds under that name (kustomize's generated,
// hashed names included), and every volumeClaimTemplate's claim is unique.
func checkReferences(t *testing.T, stored map[string]*unstructured.Unstructured) {
	have := func(kind, name string) bool { return kindOf(stored, kind)[name] != nil }
	for name, tmpl := range podTemplates(t, stored) {
		for _, v := range tmpl.Spec.Volumes {
			switch {
			case v.ConfigMap != nil && !have("ConfigMap", v.ConfigMap.Name):
				t.Errorf("%s volume %s: ConfigMap %s does not exist", name, v.Name, v.ConfigMap.Name)
			case v.Secret != nil && !have("Secret", v.Secret.SecretName):
				t.Errorf("%s volume %s: Secret %s does not exist", name, v.Name, v.Secret.SecretName)
			case v.PersistentVolumeClaim != nil && !have("PersistentVolumeClaim", v.PersistentVolumeClaim.ClaimName):
				t.Errorf("%s volume %s: claim %s does not exist", name, v.Name, v.PersistentVolumeClaim.ClaimName)
			}
			if v.ConfigMap != nil && v.ConfigMap.Name == "ringtrain-job" {
				t.Errorf("%s volume %s: the job ConfigMap has no content hash in its name", name, v.Name)
			}
		}
	}
}

// checkSecrets: the server turns stringData into data; every key the
// manifests wrote is there.
func checkSecrets(t *testing.T, o overlay, stored map[string]*unstructured.Unstructured) {
	for _, in := range o.objects {
		if in.GetKind() != "Secret" {
			continue
		}
		s := toTyped[corev1.Secret](t, stored[id(in)])
		if len(s.StringData) != 0 {
			t.Errorf("Secret %s: stringData kept", s.Name)
		}
		want := map[string]bool{}
		for _, f := range []string{"data", "stringData"} {
			m, _, _ := unstructured.NestedMap(in.Object, f)
			for k := range m {
				want[k] = true
			}
		}
		for k := range want {
			if _, ok := s.Data[k]; !ok {
				t.Errorf("Secret %s: key %s missing from the stored data", s.Name, k)
			}
		}
		if s.Type != corev1.SecretTypeOpaque {
			t.Errorf("Secret %s: type %q", s.Name, s.Type)
		}
	}
}

func checkPVCs(t *testing.T, stored map[string]*unstructured.Unstructured) {
	for name, u := range kindOf(stored, "PersistentVolumeClaim") {
		p := toTyped[corev1.PersistentVolumeClaim](t, u)
		if p.Spec.VolumeMode == nil || *p.Spec.VolumeMode != corev1.PersistentVolumeFilesystem {
			t.Errorf("claim %s: volumeMode %v, want Filesystem", name, p.Spec.VolumeMode)
		}
		if p.Status.Phase != corev1.ClaimPending {
			t.Errorf("claim %s: phase %q, want Pending (no provisioner here)", name, p.Status.Phase)
		}
	}
}

func checkPDBs(t *testing.T, stored map[string]*unstructured.Unstructured) {
	pdbs := kindOf(stored, "PodDisruptionBudget")
	if len(pdbs) < 2 {
		t.Fatalf("%d PodDisruptionBudgets, want etcd's and the workers'", len(pdbs))
	}
	for name, u := range pdbs {
		p := toTyped[policyv1.PodDisruptionBudget](t, u)
		if p.Spec.Selector == nil || len(p.Spec.Selector.MatchLabels) == 0 {
			t.Errorf("PodDisruptionBudget %s: no selector", name)
		}
	}
}

func checkNetworkPolicies(t *testing.T, stored map[string]*unstructured.Unstructured) {
	nps := kindOf(stored, "NetworkPolicy")
	if len(nps) == 0 {
		t.Fatal("no NetworkPolicies")
	}
	for name, u := range nps {
		np := toTyped[networkingv1.NetworkPolicy](t, u)
		if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
			t.Errorf("NetworkPolicy %s: policyTypes %v lack Ingress", name, np.Spec.PolicyTypes)
		}
		for _, in := range np.Spec.Ingress {
			for _, p := range in.Ports {
				if p.Protocol == nil {
					t.Errorf("NetworkPolicy %s: port %v has no protocol", name, p.Port)
				}
			}
		}
	}
}

// checkImmutable: the changes deploy/README.md says need a delete first
// are refused by the server (dry runs: nothing is stored).
func checkImmutable(ctx context.Context, t *testing.T, c *cluster, stored map[string]*unstructured.Unstructured) {
	cases := []struct {
		kind, name string
		path       []string
		value      any
		why, field string // field: the one the server names immutable
	}{
		{"Job", "etcd-auth", []string{"spec", "template", "spec", "containers"}, nil,
			"a Job's pod template cannot change (README: delete the Job when the job file changes)", "spec.template"},
		{"StatefulSet", "etcd", []string{"spec", "volumeClaimTemplates"}, nil,
			"a StatefulSet's volumeClaimTemplates cannot change", "spec.volumeClaimTemplates"},
		{"Deployment", "coordinator", []string{"spec", "selector", "matchLabels", "app.kubernetes.io/component"}, "coordinator-2",
			"a Deployment's selector cannot change", "spec.selector"},
	}
	for _, tc := range cases {
		u := kindOf(stored, tc.kind)[tc.name]
		if u == nil {
			t.Errorf("no %s %s", tc.kind, tc.name)
			continue
		}
		changed := u.DeepCopy()
		unstructured.RemoveNestedField(changed.Object, "metadata", "managedFields")
		unstructured.RemoveNestedField(changed.Object, "metadata", "resourceVersion")
		unstructured.RemoveNestedField(changed.Object, "status")
		switch tc.kind {
		case "Job":
			cs, _, _ := unstructured.NestedSlice(changed.Object, tc.path...)
			cs[0].(map[string]any)["args"] = []any{"version"}
			tc.value = cs
		case "StatefulSet":
			vcts, _, _ := unstructured.NestedSlice(changed.Object, tc.path...)
			if err := unstructured.SetNestedField(vcts[0].(map[string]any), "16Gi", "spec", "resources", "requests", "storage"); err != nil {
				t.Fatal(err)
			}
			tc.value = vcts
		case "Deployment":
			// The template follows the selector, so that only immutability
			// refuses the change.
			if err := unstructured.SetNestedField(changed.Object, tc.value, "spec", "template", "metadata", "labels", "app.kubernetes.io/component"); err != nil {
				t.Fatal(err)
			}
		}
		if err := unstructured.SetNestedField(changed.Object, tc.value, tc.path...); err != nil {
			t.Fatal(err)
		}
		_, _, err := c.apply(ctx, changed, applyOptions{dryRun: true, force: true})
		if !apierrors.IsInvalid(err) || !immutable(err, tc.field) {
			t.Errorf("%s: want the server's refusal (%s: field is immutable), got %v", tc.why, tc.field, err)
			continue
		}
		t.Logf("%s %s: %s: refused as expected", tc.kind, tc.name, tc.why)
	}
}

// immutable reports whether err names field as immutable among its causes.
func immutable(err error, field string) bool {
	var se apierrors.APIStatus
	if !errors.As(err, &se) || se.Status().Details == nil {
		return false
	}
	return slices.ContainsFunc(se.Status().Details.Causes, func(c metav1.StatusCause) bool {
		return c.Field == field && strings.Contains(c.Message, "field is immutable")
	})
}
