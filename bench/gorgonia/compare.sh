#!/usr/bin/env bash
# compare.sh: training throughput of ringtrain vs Gorgonia v0.9.18, side by
# side, on the real MNIST (batch 64).
#
# Builds both binaries, then for each model (lenet5, mlp) and each thread
# count (2 threads pinned to CPUs 0-1, 1 thread pinned to CPU 0) it
# alternates runs: ringtrain, gorgonia, ringtrain, gorgonia, ... RUNS of
# each. Every run prints the median images/s over its own timed windows;
# the table shows the median of those medians, their spread [min..max], the
# ratio ringtrain/gorgonia of the medians, and images per CPU-second of
# training (user+system time of the process, net of a start-up run), which
# other load on the machine disturbs less than wall-clock time.
#
# With --epoch it also trains LeNet-5 for one epoch with each (2 threads)
# and prints their test accuracy and peak RSS.
#
# Usage (from anywhere; needs taskset, jq, awk and the MNIST files in
# ~/.cache/ringtrain/mnist, which `go run ./cmd/ringtrain data get mnist`
# fetches):
#
#   bench/gorgonia/compare.sh            # throughput table
#   bench/gorgonia/compare.sh --epoch    # and the 1-epoch accuracy / RSS
#
# Environment: RUNS (5), MODELS ("lenet5 mlp"), THREADS ("2 1"),
# RT_STEPS/RT_REPEAT (300/5: ringtrain's windows), GG_STEPS/GG_REPEAT
# (100/3: Gorgonia's windows, shorter because it is slower), OUT (where the
# raw JSON lines go; default bench/gorgonia/results/<UTC time>).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
RUNS="${RUNS:-5}"
MODELS="${MODELS:-lenet5 mlp}"
THREADS="${THREADS:-2 1}"
RT_STEPS="${RT_STEPS:-300}"
RT_REPEAT="${RT_REPEAT:-5}"
GG_STEPS="${GG_STEPS:-100}"
GG_REPEAT="${GG_REPEAT:-3}"
OUT="${OUT:-$here/results/$(date -u +%Y%m%dT%H%M%SZ)}"
epoch=0
for a in "$@"; do
	case "$a" in
	--epoch) epoch=1 ;;
	*) echo "compare.sh: unknown argument $a" >&2; exit 2 ;;
	esac
done

for tool in taskset jq awk /usr/bin/time; do
	command -v "$tool" >/dev/null || { echo "compare.sh: needs $tool" >&2; exit 1; }
done
mkdir -p "$OUT"
bin="$OUT/bin"
mkdir -p "$bin"
echo "building into $bin"
(cd "$root" && CGO_ENABLED=0 go build -o "$bin/ringtrain" ./cmd/ringtrain)
(cd "$here" && go build -o "$bin/gorgonia-bench" .)

{
	echo "date: $(date -u +%FT%TZ)"
	echo "go: $(go version)"
	echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-)"
	echo "nproc: $(nproc)"
	echo "uptime before: $(uptime)"
	echo "ringtrain commit: $(cd "$root" && git rev-parse --short HEAD 2>/dev/null || echo unknown)$(cd "$root" && git diff --quiet HEAD 2>/dev/null || echo ' (with uncommitted changes)')"
} | tee "$OUT/env.txt"

# cpus_for THREADS: the CPU list taskset pins a run of that many threads to.
cpus_for() { if [ "$1" = 1 ]; then echo 0; else echo "0-$(($1 - 1))"; fi; }

# timed CMD...: runs CMD under /usr/bin/time and prints its last output line
# (a JSON object) with cpu_seconds (user+system of the whole process, start-up
# included) added.
timed() {
	local line cpu
	line=$(/usr/bin/time -f '%U %S' -o "$OUT/.time" "$@" | tail -n 1)
	cpu=$(awk '{ print $1 + $2 }' "$OUT/.time")
	jq -c --argjson cpu "$cpu" '. + {cpu_seconds: $cpu}' <<<"$line"
}

run_ringtrain() { # model threads steps repeat
	timed taskset -c "$(cpus_for "$2")" "$bin/ringtrain" bench train --model "$1" --batch-size 64 \
		--threads "$2" --steps "$3" --repeat "$4" --json
}
run_gorgonia() { # model threads steps repeat warmup
	GOMAXPROCS="$2" timed taskset -c "$(cpus_for "$2")" "$bin/gorgonia-bench" --model "$1" --batch-size 64 \
		--threads "$2" --warmup "$5" --steps "$3" --repeat "$4"
}

# stats FILE [FIELD]: "median min max" of FIELD (default images_per_second)
# over the JSON lines of FILE.
stats() {
	jq -r ".${2:-images_per_second}" "$1" | sort -g | awk '
		{ v[NR] = $1 }
		END {
			if (NR == 0) { print "nan nan nan"; exit }
			m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
			printf "%.0f %.0f %.0f\n", m, v[1], v[NR]
		}'
}

# images: every image a run trained on (ringtrain warms up for
# max(10, steps/10) steps, Gorgonia for --warmup steps).
rt_images='. + {images: (((if .steps/10 > 10 then (.steps/10|floor) else 10 end) + .steps*.repeats) * .batch_size)}'
gg_images='. + {images: ((.warmup_steps + .steps*.repeats) * .batch_size)}'

# Start-up cost (reading MNIST, building the model) in CPU-seconds and
# images, from three minimal runs of each, so that the CPU figures below
# count only training steps: images per CPU-second =
# (images − start-up images) / (CPU − start-up CPU).
for model in $MODELS; do
	for t in $THREADS; do
		for i in 1 2 3; do
			run_ringtrain "$model" "$t" 1 1 | jq -c "$rt_images"
		done >"$OUT/startup-ringtrain-$model-t$t.jsonl"
		for i in 1 2 3; do
			run_gorgonia "$model" "$t" 1 1 0 | jq -c "$gg_images"
		done >"$OUT/startup-gorgonia-$model-t$t.jsonl"
	done
done

# per_cpu FILE STARTUP: each run of FILE with images_per_cpu_second added,
# net of the median start-up run of STARTUP.
per_cpu() {
	local base
	base=$(jq -s -c 'sort_by(.cpu_seconds) | .[length/2|floor] | {cpu: .cpu_seconds, images: .images}' "$2")
	jq -c --argjson b "$base" '. + {images_per_cpu_second: ((.images - $b.images) / (.cpu_seconds - $b.cpu))}' "$1"
}

for model in $MODELS; do
	for t in $THREADS; do
		rt="$OUT/ringtrain-$model-t$t.jsonl"
		gg="$OUT/gorgonia-$model-t$t.jsonl"
		: >"$rt"
		: >"$gg"
		for i in $(seq "$RUNS"); do
			run_ringtrain "$model" "$t" "$RT_STEPS" "$RT_REPEAT" | jq -c "$rt_images" >>"$rt"
			run_gorgonia "$model" "$t" "$GG_STEPS" "$GG_REPEAT" 20 | jq -c "$gg_images" >>"$gg"
			echo "  $model t$t run $i: ringtrain $(tail -n 1 "$rt" | jq -r '.images_per_second|floor'), gorgonia $(tail -n 1 "$gg" | jq -r '.images_per_second|floor') img/s"
		done
	done
done

echo "uptime after: $(uptime)" | tee -a "$OUT/env.txt"
{
	echo
	echo "| model | threads | ringtrain img/s median [min..max] | Gorgonia img/s median [min..max] | ratio | ringtrain img/CPU-s | Gorgonia img/CPU-s | CPU ratio |"
	echo "|---|---|---|---|---|---|---|---|"
	for model in $MODELS; do
		for t in $THREADS; do
			read -r rm rlo rhi < <(stats "$OUT/ringtrain-$model-t$t.jsonl")
			read -r gm glo ghi < <(stats "$OUT/gorgonia-$model-t$t.jsonl")
			for fw in ringtrain gorgonia; do
				per_cpu "$OUT/$fw-$model-t$t.jsonl" "$OUT/startup-$fw-$model-t$t.jsonl" >"$OUT/$fw-$model-t$t.cpu.jsonl"
			done
			read -r rc _ _ < <(stats "$OUT/ringtrain-$model-t$t.cpu.jsonl" images_per_cpu_second)
			read -r gc _ _ < <(stats "$OUT/gorgonia-$model-t$t.cpu.jsonl" images_per_cpu_second)
			ratio=$(awk -v a="$rm" -v b="$gm" 'BEGIN { printf "%.2f", a / b }')
			cratio=$(awk -v a="$rc" -v b="$gc" 'BEGIN { printf "%.2f", a / b }')
			echo "| $model | $t | $rm [$rlo..$rhi] | $gm [$glo..$ghi] | ${ratio}× | $rc | $gc | ${cratio}× |"
		done
	done
} | tee "$OUT/table.md"

if [ "$epoch" = 1 ]; then
	echo
	echo "one epoch of LeNet-5, batch 64, 2 threads (CPUs 0-1):"
	taskset -c 0-1 "$bin/ringtrain" train --model lenet5 --epochs 1 --threads 2 --out "$OUT/ringtrain-epoch" >"$OUT/ringtrain-epoch.log" 2>&1
	taskset -c 0-1 "$bin/ringtrain" train --model lenet5 --epochs 1 --threads 2 --schedule constant --out "$OUT/ringtrain-epoch-constant" >"$OUT/ringtrain-epoch-constant.log" 2>&1
	GOMAXPROCS=2 taskset -c 0-1 "$bin/gorgonia-bench" --model lenet5 --threads 2 --epochs 1 --steps 100 >"$OUT/gorgonia-epoch.json"
	{
		echo
		echo "| 1 epoch LeNet-5 | test accuracy | images/s | peak RSS MiB |"
		echo "|---|---|---|---|"
		for d in ringtrain-epoch ringtrain-epoch-constant; do
			jq -r --arg n "ringtrain ($d)" '"| \($n) | \(.test_accuracy*10000|round/100)% | \(.images_per_second|round) | \(.peak_rss_bytes/1048576|round) |"' "$OUT/$d/summary.json"
		done
		jq -r '"| gorgonia (constant lr) | \(.test_accuracy*10000|round/100)% | \(.images_per_second|round) | \(.peak_rss_bytes/1048576|round) |"' "$OUT/gorgonia-epoch.json"
	} | tee -a "$OUT/table.md"
fi
echo "raw results in $OUT"
