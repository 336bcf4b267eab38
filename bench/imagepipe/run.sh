#!/usr/bin/env bash
# The image-pipeline comparison on one core: installs its peers from
# Debian where missing (python3-torch, python3-torchvision, python3-pil,
# libjpeg-turbo-progs; not in .ci/run, which runs no benchmark), builds
# ringtrain and runs compare.py. Usage: bench/imagepipe/run.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! /usr/bin/python3 -c 'import torch, torchvision, PIL' 2>/dev/null || ! command -v djpeg >/dev/null; then
	apt-get update -qq && apt-get install -y -qq python3-torch python3-torchvision python3-pil libjpeg-turbo-progs >/dev/null
fi
go build -o /tmp/ringtrain-imagepipe-bin ./cmd/ringtrain
# Debian's python3, which has the peers (not a python3 earlier on PATH).
taskset -c 0 /usr/bin/python3 bench/imagepipe/compare.py --ringtrain /tmp/ringtrain-imagepipe-bin --work /tmp/ringtrain-imagepipe-work --rounds "${1:-7}"
