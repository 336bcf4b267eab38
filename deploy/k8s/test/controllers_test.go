package k8stest

// Layer 2: kube-controller-manager and kube-scheduler run beside the API
// server (run.sh --controllers). The controllers turn the overlay's
// objects into what a cluster would hold: pods with their StatefulSet
// names and DNS identities, claims from the volumeClaimTemplates,
// EndpointSlices for the Services, the PodDisruptionBudgets' status. There
// are no nodes: the scheduler marks every pod unschedulable and the pods
// stay Pending, which is what is expected here. PodSecurity admission
// checks each pod as the controllers create it; a refused pod shows as a
// FailedCreate event, which fails the test.

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
)

func TestControllers(t *testing.T) {
	started, err := strconv.ParseInt(os.Getenv(envControllers), 10, 64)
	if err != nil {
		t.Skipf("kube-controller-manager and kube-scheduler are not running: run deploy/k8s/test/run.sh --controllers (it sets %s)", envControllers)
	}
	c := connect(t)
	for _, o := range renderOverlays(t) {
		t.Run(o.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
			defer cancel()
			// Applied by TestAPIServer before the controllers started; this
			// apply changes nothing and returns the objects.
			stored := applyOverlay(ctx, t, c, o)
			start := time.UnixMilli(started)
			w := &waiter{t: t, ctx: ctx, start: start}
			ns := o.namespace
			stss := kindOf(stored, "StatefulSet")

			w.until("the namespace's ServiceAccount default and ConfigMap kube-root-ca.crt", func() (bool, string, error) {
				if _, err := c.typed.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{}); err != nil {
					return false, err.Error(), ignoreNotFound(err)
				}
				_, err := c.typed.CoreV1().ConfigMaps(ns).Get(ctx, "kube-root-ca.crt", metav1.GetOptions{})
				return err == nil, fmt.Sprint(err), ignoreNotFound(err)
			})

			// Every pod the workloads should have, by name or name prefix.
			want := map[string]bool{} // exact names
			for _, name := range []string{"etcd", "worker"} {
				s := toTyped[appsv1.StatefulSet](t, stss[name])
				for i := range *s.Spec.Replicas {
					want[fmt.Sprintf("%s-%d", name, i)] = true
				}
			}
			coordinators := int(*toTyped[appsv1.Deployment](t, kindOf(stored, "Deployment")["coordinator"]).Spec.Replicas)
			var pods []corev1.Pod
			w.until(fmt.Sprintf("%d StatefulSet pods, %d coordinator pods and the etcd-auth Job's pod", len(want), coordinators), func() (bool, string, error) {
				if err := failedCreates(ctx, c, ns); err != nil {
					return false, "", err
				}
				list, err := c.typed.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
				if err != nil {
					return false, "", err
				}
				pods = list.Items
				missing, coord, auth := missingPods(pods, want)
				return len(missing) == 0 && coord == coordinators && auth == 1,
					fmt.Sprintf("missing %v, %d coordinator pods, %d etcd-auth pods", missing, coord, auth), nil
			})
			checkPods(t, pods, stss)

			w.until("every pod marked unschedulable by the scheduler (no nodes)", func() (bool, string, error) {
				list, err := c.typed.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
				if err != nil {
					return false, "", err
				}
				var waiting []string
				for _, p := range list.Items {
					if !unschedulable(p) {
						waiting = append(waiting, p.Name)
					}
				}
				pods = list.Items
				return len(waiting) == 0, fmt.Sprintf("not yet seen by the scheduler: %v", waiting), nil
			})
			for _, p := range pods {
				if p.Name == "worker-0" {
					for _, c := range p.Status.Conditions {
						if c.Type == corev1.PodScheduled {
							t.Logf("worker-0: %s: %s", c.Reason, c.Message)
						}
					}
				}
			}

			etcdReplicas := *toTyped[appsv1.StatefulSet](t, stss["etcd"]).Spec.Replicas
			w.until(fmt.Sprintf("the claims of etcd's volumeClaimTemplates (data-etcd-0..%d)", etcdReplicas-1), func() (bool, string, error) {
				var missing []string
				for i := range etcdReplicas {
					name := fmt.Sprintf("data-etcd-%d", i)
					if _, err := c.typed.CoreV1().PersistentVolumeClaims(ns).Get(ctx, name, metav1.GetOptions{}); err != nil {
						if !apierrors.IsNotFound(err) {
							return false, "", err
						}
						missing = append(missing, name)
					}
				}
				return len(missing) == 0, fmt.Sprintf("missing %v", missing), nil
			})

			for name := range kindOf(stored, "Service") {
				w.until(fmt.Sprintf("an EndpointSlice for Service %s", name), func() (bool, string, error) {
					list, err := c.typed.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{
						LabelSelector: discoveryv1.LabelServiceName + "=" + name,
					})
					if err != nil {
						return false, "", err
					}
					for _, s := range list.Items {
						if s.Labels[discoveryv1.LabelManagedBy] != "endpointslice-controller.k8s.io" {
							continue
						}
						// Pending pods have no IP: the slice is there, empty,
						// and fills as the kubelet starts the pods.
						if len(s.Endpoints) != 0 {
							return false, "", fmt.Errorf("EndpointSlice %s has endpoints %v with no node", s.Name, s.Endpoints)
						}
						return true, "", nil
					}
					return false, fmt.Sprintf("%d slices, none by the EndpointSlice controller", len(list.Items)), nil
				})
			}

			for name, u := range kindOf(stored, "PodDisruptionBudget") {
				var expected int32
				switch name {
				case "etcd", "worker":
					expected = *toTyped[appsv1.StatefulSet](t, stss[name]).Spec.Replicas
				default:
					t.Errorf("PodDisruptionBudget %s: no expectation here", name)
					continue
				}
				generation := u.GetGeneration()
				w.until(fmt.Sprintf("PodDisruptionBudget %s's status (%d expected pods, none healthy)", name, expected), func() (bool, string, error) {
					p, err := c.typed.PolicyV1().PodDisruptionBudgets(ns).Get(ctx, name, metav1.GetOptions{})
					if err != nil {
						return false, "", err
					}
					s := p.Status
					done := s.ObservedGeneration >= generation && s.ExpectedPods == expected &&
						s.CurrentHealthy == 0 && s.DesiredHealthy == expected-1 && s.DisruptionsAllowed == 0
					return done, fmt.Sprintf("status %+v", s), nil
				})
			}

			w.until("the workloads' status (replicas counted, revisions recorded)", func() (bool, string, error) {
				for _, name := range []string{"etcd", "worker"} {
					s, err := c.typed.AppsV1().StatefulSets(ns).Get(ctx, name, metav1.GetOptions{})
					if err != nil {
						return false, "", err
					}
					if s.Status.ObservedGeneration != s.Generation || s.Status.Replicas != *s.Spec.Replicas ||
						s.Status.UpdateRevision == "" || s.Status.ReadyReplicas != 0 {
						return false, fmt.Sprintf("StatefulSet %s status %+v", name, s.Status), nil
					}
				}
				d, err := c.typed.AppsV1().Deployments(ns).Get(ctx, "coordinator", metav1.GetOptions{})
				if err != nil {
					return false, "", err
				}
				if d.Status.Replicas != int32(coordinators) || d.Status.UnavailableReplicas != int32(coordinators) {
					return false, fmt.Sprintf("Deployment coordinator status %+v", d.Status), nil
				}
				j, err := c.typed.BatchV1().Jobs(ns).Get(ctx, "etcd-auth", metav1.GetOptions{})
				if err != nil {
					return false, "", err
				}
				return j.Status.Active == 1 && j.Status.StartTime != nil, fmt.Sprintf("Job etcd-auth status %+v", j.Status), nil
			})

			if err := failedCreates(ctx, c, ns); err != nil {
				t.Error(err)
			}
			t.Logf("%s: %d pods created, all Pending; everything above within %v of the controllers' start", ns, len(pods), time.Since(start).Round(time.Millisecond))
		})
	}
}

// waiter polls the cluster until a condition holds, logging how long each
// took from start.
type waiter struct {
	t     *testing.T
	ctx   context.Context
	start time.Time
}

// until polls cond every 200 ms until it reports done, an error, or
// 3 minutes pass; then fails the test with cond's last account of what
// is missing.
func (w *waiter) until(what string, cond func() (done bool, missing string, err error)) {
	w.t.Helper()
	var last string
	err := wait.PollUntilContextTimeout(w.ctx, 200*time.Millisecond, 3*time.Minute, true, func(context.Context) (bool, error) {
		done, missing, err := cond()
		last = missing
		return done, err
	})
	if err != nil {
		w.t.Fatalf("waiting for %s: %v (%s)", what, err, last)
	}
	w.t.Logf("%-75s after %v", what, time.Since(w.start).Round(time.Millisecond))
}

// missingPods returns the names in want that no pod has, and the number
// of the coordinator Deployment's and the etcd-auth Job's pods (their
// names are generated: coordinator-<hash>-<id>, etcd-auth-<id>).
func missingPods(pods []corev1.Pod, want map[string]bool) (missing []string, coordinators, auth int) {
	have := map[string]bool{}
	for _, p := range pods {
		have[p.Name] = true
		switch owner := metav1.GetControllerOf(&p); {
		case owner == nil:
		case owner.Kind == "ReplicaSet" && strings.HasPrefix(owner.Name, "coordinator-") && strings.HasPrefix(p.Name, owner.Name+"-"):
			coordinators++
		case owner.Kind == "Job" && owner.Name == "etcd-auth" && strings.HasPrefix(p.Name, "etcd-auth-"):
			auth++
		}
	}
	for name := range want {
		if !have[name] {
			missing = append(missing, name)
		}
	}
	sort.Strings(missing)
	return missing, coordinators, auth
}

// checkPods: each StatefulSet pod has the identity its DNS name needs
// (hostname = pod name, subdomain = the headless Service: etcd-0.etcd),
// its ordinal labels, and its claim.
func checkPods(t *testing.T, pods []corev1.Pod, stss map[string]*unstructured.Unstructured) {
	t.Helper()
	for _, p := range pods {
		owner := metav1.GetControllerOf(&p)
		if owner == nil || owner.Kind != "StatefulSet" {
			continue
		}
		s := toTyped[appsv1.StatefulSet](t, stss[owner.Name])
		if p.Spec.Hostname != p.Name || p.Spec.Subdomain != s.Spec.ServiceName {
			t.Errorf("pod %s: hostname %q, subdomain %q: its DNS name is not %s.%s", p.Name, p.Spec.Hostname, p.Spec.Subdomain, p.Name, s.Spec.ServiceName)
		}
		if p.Labels[appsv1.StatefulSetPodNameLabel] != p.Name || p.Labels[appsv1.PodIndexLabel] == "" {
			t.Errorf("pod %s: labels %v lack the StatefulSet's pod-name and pod-index", p.Name, p.Labels)
		}
		if owner.Name == "etcd" {
			claim := "data-" + p.Name
			if !slices.ContainsFunc(p.Spec.Volumes, func(v corev1.Volume) bool {
				return v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ClaimName == claim
			}) {
				t.Errorf("pod %s: no volume of the claim %s", p.Name, claim)
			}
		}
		if p.Status.Phase != corev1.PodPending {
			t.Errorf("pod %s: phase %q with no nodes, want Pending", p.Name, p.Status.Phase)
		}
	}
}

// unschedulable reports whether the scheduler has tried p and found no
// node for it.
func unschedulable(p corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
			return true
		}
	}
	return false
}

// failedCreates returns an error naming every FailedCreate event in ns: a
// controller whose pod (or claim) the API server refused, PodSecurity
// admission among the reasons.
func failedCreates(ctx context.Context, c *cluster, ns string) error {
	list, err := c.typed.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "reason=FailedCreate"})
	if err != nil {
		return err
	}
	var msgs []string
	for _, e := range list.Items {
		msgs = append(msgs, fmt.Sprintf("%s/%s: %s", e.InvolvedObject.Kind, e.InvolvedObject.Name, e.Message))
	}
	if len(msgs) > 0 {
		return fmt.Errorf("controllers could not create objects:\n\t%s", strings.Join(msgs, "\n\t"))
	}
	return nil
}

func ignoreNotFound(err error) error {
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}
