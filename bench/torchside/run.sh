#!/usr/bin/env bash
# ringtrain beside PyTorch 1.13 (Debian's python3-torch, oneDNN) on the same
# cores: installs the peer from Debian where missing, builds ringtrain and
# runs compare.py. Usage: bench/torchside/run.sh [compare.py flags], e.g.
#   bench/torchside/run.sh --cases resnet18:224:32,lenet5:0:64 --rounds 3
set -euo pipefail
cd "$(dirname "$0")/../.."
# PyTorch's linear layers call the system BLAS (libblas.so.3): without
# OpenBLAS, Debian's alternative is the slow reference BLAS, which is not
# PyTorch at its best; libopenblas0-pthread takes the alternative over.
if ! /usr/bin/python3 -c 'import torch, torchvision' 2>/dev/null ||
	! readlink -f /etc/alternatives/libblas.so.3-x86_64-linux-gnu | grep -q openblas; then
	apt-get update -qq && apt-get install -y -qq python3-torch python3-torchvision libopenblas0-pthread >/dev/null
fi
readlink -f /etc/alternatives/libblas.so.3-x86_64-linux-gnu
go build -o /tmp/ringtrain-torchside ./cmd/ringtrain
/usr/bin/python3 bench/torchside/compare.py --ringtrain /tmp/ringtrain-torchside "$@"
