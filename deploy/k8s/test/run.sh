#!/usr/bin/env bash
# The Kubernetes manifests (deploy/k8s) against a real control plane.
#
#   deploy/k8s/test/run.sh                layer 1: etcd + kube-apiserver
#   deploy/k8s/test/run.sh --controllers  layer 2: also kube-controller-manager
#                                         and kube-scheduler
#   deploy/k8s/test/run.sh --build        build (or find cached) what layer 1
#                                         runs, and stop (CI starts it early,
#                                         in the background)
#
# Builds kube-apiserver (and for layer 2 kube-controller-manager and
# kube-scheduler) from the Go module k8s.io/kubernetes pinned in this
# directory's go.mod, and etcd from the version in the repository's go.mod,
# into ${XDG_CACHE_HOME:-~/.cache}/ringtrain/k8s/ (built once per version,
# like Go's own caches), starts etcd and the API server on free loopback
# ports with a throwaway authority, then runs this module's tests
# (apiserver_test.go; controllers_test.go for layer 2) against them: every
# overlay applied with server-side apply into a namespace that enforces the
# PodSecurity "restricted" level.
#
# There are no nodes and no kubelet: under layer 2 the pods are created and
# stay Pending (unschedulable), as expected.
#
# Every process started here is stopped on exit; logs are kept in a
# temporary directory and their tails printed when something fails
# (KEEP_LOGS=1 keeps the directory). RINGTRAIN_K8S_CACHE puts the binaries
# elsewhere.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)

controllers=false
build_only=false
for a in "$@"; do
	case "$a" in
	--controllers) controllers=true ;;
	--build) build_only=true ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "run.sh: unknown argument $a (want --controllers or --build)" >&2; exit 2 ;;
	esac
done

die() { echo "run.sh: $*" >&2; exit 1; }
command -v go >/dev/null || die "the go tool is not on PATH"

start=$(date +%s)
elapsed() { echo "$(( $(date +%s) - start ))s"; }

# --- build (cached) ---------------------------------------------------------

k8s_version=$(cd "$here" && go list -m -f '{{.Version}}' k8s.io/kubernetes) ||
	die "cannot resolve k8s.io/kubernetes in $here/go.mod"
etcd_version=$(cd "$root" && go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3) ||
	die "cannot resolve go.etcd.io/etcd/server/v3 in $root/go.mod"
go_version=$(go env GOVERSION)
cache=${RINGTRAIN_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ringtrain/k8s}
bin=$cache/$k8s_version-etcd-$etcd_version-$go_version
mkdir -p "$bin"

# build NAME DIR PACKAGE [LDFLAGS]: go build PACKAGE (from module DIR) into
# $bin/NAME unless it is there. Written under a temporary name and renamed,
# so an interrupted build never leaves a binary that looks whole.
build() {
	local name=$1 dir=$2 pkg=$3 ldflags=${4:-}
	[ -x "$bin/$name" ] && return 0
	local t0; t0=$(date +%s)
	echo "building $name ($pkg)"
	(cd "$dir" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w $ldflags" -o "$bin/$name.tmp.$$" "$pkg") ||
		die "building $name failed"
	mv "$bin/$name.tmp.$$" "$bin/$name"
	echo "built $name in $(( $(date +%s) - t0 ))s"
}
# The version the binaries report (/version, and the compatibility version
# of the control plane: without it they say v0.0.0-master).
kv=k8s.io/component-base/version
major=${k8s_version#v}; major=${major%%.*}
minor=${k8s_version#v*.}; minor=${minor%%.*}
k8s_ldflags="-X $kv.gitVersion=$k8s_version -X $kv.gitMajor=$major -X $kv.gitMinor=$minor -X $kv.gitTreeState=clean"

build etcd "$root" go.etcd.io/etcd/server/v3
build kube-apiserver "$here" k8s.io/kubernetes/cmd/kube-apiserver "$k8s_ldflags"
if $controllers; then
	build kube-controller-manager "$here" k8s.io/kubernetes/cmd/kube-controller-manager "$k8s_ldflags"
	build kube-scheduler "$here" k8s.io/kubernetes/cmd/kube-scheduler "$k8s_ldflags"
fi
(cd "$here" && go build -o "$bin/clusterenv.tmp.$$" ./cmd/clusterenv && mv "$bin/clusterenv.tmp.$$" "$bin/clusterenv") ||
	die "building cmd/clusterenv failed"
echo "binaries in $bin ($(elapsed))"
if $build_only; then
	exit 0
fi

# --- processes ------------------------------------------------------------

work=$(mktemp -d "${TMPDIR:-/tmp}/ringtrain-k8s-test.XXXXXX")
pids=()
names=()
status=1
cleanup() {
	local i
	# The logs' tails first, before stopping makes them noise.
	if [ "$status" -ne 0 ]; then
		for i in "${!names[@]}"; do
			echo; echo "---- last 40 lines of ${names[$i]} ($work/${names[$i]}.log)"
			tail -n 40 "$work/${names[$i]}.log" 2>/dev/null || true
		done
	fi
	# Stop in the reverse order of starting (etcd last), each given a few
	# seconds before it is killed.
	for (( i=${#pids[@]}-1; i>=0; i-- )); do
		kill "${pids[$i]}" 2>/dev/null || true
		for _ in $(seq 50); do kill -0 "${pids[$i]}" 2>/dev/null || break; sleep 0.1; done
		kill -9 "${pids[$i]}" 2>/dev/null || true
		wait "${pids[$i]}" 2>/dev/null || true
	done
	if [ "$status" -eq 0 ] && [ -z "${KEEP_LOGS:-}" ]; then
		rm -rf "$work"
	else
		echo "logs kept in $work"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# spawn NAME CMD...: start CMD in the background with its output in
# $work/NAME.log, remembered for cleanup.
spawn() {
	local name=$1; shift
	"$@" >"$work/$name.log" 2>&1 &
	pids+=("$!")
	names+=("$name")
}

# alive NAME: fail, naming it, when a started process has exited.
alive() {
	local i
	for i in "${!names[@]}"; do
		if [ "${names[$i]}" = "$1" ] && ! kill -0 "${pids[$i]}" 2>/dev/null; then
			die "$1 exited early (its log follows)"
		fi
	done
}

mapfile -t ports < <("$bin/clusterenv" ports 3)
[ "${#ports[@]}" -eq 3 ] || die "no free loopback ports"
etcd_client=${ports[0]} etcd_peer=${ports[1]} api_port=${ports[2]}
server=https://127.0.0.1:$api_port
"$bin/clusterenv" pki "$work/pki" "$server"
pki=$work/pki

spawn etcd "$bin/etcd" \
	--name=test --data-dir="$work/etcd" \
	--listen-client-urls="http://127.0.0.1:$etcd_client" --advertise-client-urls="http://127.0.0.1:$etcd_client" \
	--listen-peer-urls="http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls="http://127.0.0.1:$etcd_peer" \
	--initial-cluster="test=http://127.0.0.1:$etcd_peer" \
	--unsafe-no-fsync

# The API server as a cluster runs it, less what needs nodes: RBAC, and
# the default admission plugins (PodSecurity among them). It listens on
# loopback only, which the kubernetes Service's endpoint reconciler
# refuses to publish: no reconciler (nothing here dials that Service).
spawn kube-apiserver "$bin/kube-apiserver" \
	--etcd-servers="http://127.0.0.1:$etcd_client" \
	--bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$api_port" \
	--cert-dir="$work/apiserver-certs" \
	--tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
	--client-ca-file="$pki/ca.crt" \
	--service-account-issuer=https://kubernetes.default.svc.cluster.local \
	--service-account-key-file="$pki/sa.pub" \
	--service-account-signing-key-file="$pki/sa.key" \
	--service-cluster-ip-range=10.96.0.0/16 \
	--authorization-mode=RBAC \
	--endpoint-reconciler-type=none \
	--enable-priority-and-fairness=false

# Its own name, not KUBECONFIG: the tests never reach another cluster.
export RINGTRAIN_K8S_TEST_KUBECONFIG=$pki/kubeconfig
kubeconfig=$pki/kubeconfig
ready() { "$bin/clusterenv" ready "$pki" "$server" 2>/dev/null; }
t0=$(date +%s)
until ready; do
	alive etcd
	alive kube-apiserver
	[ $(( $(date +%s) - t0 )) -lt 120 ] || die "kube-apiserver not ready after 120s"
	sleep 0.5
done
echo "kube-apiserver $k8s_version ready at $server in $(( $(date +%s) - t0 ))s ($(elapsed))"

# --- tests ----------------------------------------------------------------

export RINGTRAIN_K8S_OVERLAYS=${RINGTRAIN_K8S_OVERLAYS:-$root/deploy/k8s/overlays}
# Compiled once, before anything is timed; run from this directory.
(cd "$here" && go test -c -o "$work/k8stest.test" .) || die "compiling the tests failed"
gotest() { (cd "$here" && "$work/k8stest.test" -test.count=1 -test.timeout=10m -test.v -test.run "$1"); }

# Layer 1, with no controllers: nothing but the tests writes to the objects.
gotest '^TestAPIServer' || die "layer 1 (the API server) failed ($(elapsed))"
alive kube-apiserver
echo "layer 1 passed ($(elapsed))"

if $controllers; then
	# The tests time each step from here.
	export RINGTRAIN_K8S_CONTROLLERS=$(date +%s%3N)
	spawn kube-controller-manager "$bin/kube-controller-manager" \
		--kubeconfig="$kubeconfig" \
		--authentication-kubeconfig="$kubeconfig" --authorization-kubeconfig="$kubeconfig" \
		--bind-address=127.0.0.1 --secure-port=0 \
		--leader-elect=false \
		--service-account-private-key-file="$pki/sa.key" \
		--root-ca-file="$pki/ca.crt" \
		--cluster-signing-cert-file="$pki/ca.crt" --cluster-signing-key-file="$pki/ca.key"
	spawn kube-scheduler "$bin/kube-scheduler" \
		--kubeconfig="$kubeconfig" \
		--authentication-kubeconfig="$kubeconfig" --authorization-kubeconfig="$kubeconfig" \
		--bind-address=127.0.0.1 --secure-port=0 \
		--leader-elect=false
	echo "kube-controller-manager and kube-scheduler started ($(elapsed))"
	gotest '^TestControllers' || die "layer 2 (the controllers) failed ($(elapsed))"
	echo "layer 2 passed ($(elapsed))"
fi

for n in "${names[@]}"; do alive "$n"; done
status=0
echo "run.sh: passed in $(elapsed)"
