#!/usr/bin/env bash
# ringtrain ⇄ torchvision both ways (strict state_dict loading, same
# logits) against the real PyTorch from Debian: installs python3-torch and
# python3-torchvision where missing, builds ringtrain and runs
# torchvision_interop.py. .ci/run calls it. Usage: bench/interop/run.sh [--models a,b]
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! /usr/bin/python3 -c 'import torch, torchvision' 2>/dev/null; then
	apt-get update -qq && apt-get install -y -qq python3-torch python3-torchvision >/dev/null
fi
go build -o /tmp/ringtrain-interop ./cmd/ringtrain
/usr/bin/python3 bench/interop/torchvision_interop.py --ringtrain /tmp/ringtrain-interop "$@"
