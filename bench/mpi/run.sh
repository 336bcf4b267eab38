#!/usr/bin/env bash
# Compares `ringtrain bench allreduce` with Open MPI's MPI_Allreduce on this
# machine, interleaved so that both see the same load.
#
#   apt-get update && apt-get install -y openmpi-bin libopenmpi-dev
#   bash bench/mpi/run.sh [ranks] [size] [rounds]
#
# Prints one JSON line per run: ringtrain (fp32 and bf16, with its
# shared-memory rings and with every frame on gRPC over loopback TCP, as
# between hosts), Open MPI over TCP (--mca btl tcp,self) and Open MPI over
# shared memory (--mca btl vader,self).
# RINGTRAIN=/path/to/ringtrain skips building the binary.
set -euo pipefail
cd "$(dirname "$0")/../.."
ranks=${1:-4}
size=${2:-64MiB}
rounds=${3:-3}
iters=${ITERS:-20}
warmup=${WARMUP:-3}
out=bench/mpi/results
mkdir -p "$out"
mpicc -O2 -o "$out/allreduce" bench/mpi/allreduce.c
ringtrain=${RINGTRAIN:-$out/ringtrain}
if [ -z "${RINGTRAIN:-}" ]; then
	CGO_ENABLED=0 go build -o "$ringtrain" ./cmd/ringtrain
fi
bytes=$(python3 -c "import sys;s=sys.argv[1];u={'GiB':1<<30,'MiB':1<<20,'KiB':1<<10};print(next((int(float(s[:-3])*m) for k,m in u.items() if s.endswith(k)),None) or int(s))" "$size")
mpi=(mpirun --allow-run-as-root --oversubscribe --bind-to none -np "$ranks")
for r in $(seq "$rounds"); do
	echo "# round $r"
	for shm in true false; do
		for codec in fp32 bf16; do
			printf '{"impl":"ringtrain","shm":%s,"codec":"%s","result":' "$shm" "$codec"
			"$ringtrain" bench allreduce --ranks "$ranks" --size "$size" --codec "$codec" --iters "$iters" --warmup "$warmup" --shm="$shm" --json | tr -d '\n'
			echo '}'
		done
	done
	printf '{"impl":"openmpi-tcp","result":'
	"${mpi[@]}" --mca btl tcp,self --mca btl_tcp_if_include lo "$out/allreduce" "$bytes" "$iters" "$warmup" | tr -d '\n'
	echo '}'
	printf '{"impl":"openmpi-sm","result":'
	"${mpi[@]}" --mca btl vader,self "$out/allreduce" "$bytes" "$iters" "$warmup" | tr -d '\n'
	echo '}'
done
