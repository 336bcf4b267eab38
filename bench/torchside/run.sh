#!/usr/bin/env bash
# ringtrain beside PyTorch 1.13 (Debian's python3-torch, oneDNN) on the same
# cores: installs the peer from Debian where missing, builds ringtrain and
# runs compare.py. Usage: bench/torchside/run.sh [compare.py flags], e.g.
#   bench/torchside/run.sh --cases resnet18:224:32,lenet5:0:64 --rounds 3
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! /usr/bin/python3 -c 'import torch, torchvision' 2>/dev/null; then
	apt-get update -qq && apt-get install -y -qq python3-torch python3-torchvision >/dev/null
fi
go build -o /tmp/ringtrain-torchside ./cmd/ringtrain
/usr/bin/python3 bench/torchside/compare.py --ringtrain /tmp/ringtrain-torchside "$@"
