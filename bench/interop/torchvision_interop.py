"""ringtrain ⇄ PyTorch, both ways, against the real torchvision.

For each model: (1) ringtrain exports its fresh weights; torchvision's model
loads them with load_state_dict(strict=True), and both compute logits on
the same batch in evaluation mode; (2) torchvision's model, its parameters
and BatchNorm statistics perturbed at random, saves its state_dict;
ringtrain loads it and computes logits on the same batch. The logits must
agree within a tolerance relative to their spread. The CIFAR nets, which
torchvision lacks, are checked against an equivalent module defined here.
Prints one line per model and direction; exits 1 on any failure.

Usage: torchvision_interop.py --ringtrain BIN [--models a,b] [--dir DIR]
"""
import argparse
import os
import subprocess
import sys
import tempfile

import torch
import torch.nn as nn
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st  # noqa: E402


class CifarBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        h = torch.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        return torch.relu(h + (x if self.downsample is None else self.downsample(x)))


class CifarResNet(nn.Module):
    """He et al. 2016's CIFAR ResNet with projection shortcuts, ringtrain's names."""

    def __init__(self, n, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        cin = 16
        for stage in range(3):
            w = 16 << stage
            blocks = []
            for i in range(n):
                blocks.append(CifarBlock(cin, w, 2 if stage > 0 and i == 0 else 1))
                cin = w
            setattr(self, f"layer{stage + 1}", nn.Sequential(*blocks))
        self.fc = nn.Linear(64, classes)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(x.mean((2, 3)))


def build(name):
    if name == "resnet20":
        return CifarResNet(3), 32
    if name == "resnet56":
        return CifarResNet(9), 32
    return getattr(torchvision.models, name)(), 224


def perturb(model, gen):
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.dtype != torch.float32:
                continue
            if name.endswith("running_var"):
                t.copy_(0.5 + torch.rand(t.shape, generator=gen))
            elif name.endswith("running_mean") or name.endswith(".bias"):
                t.copy_(0.1 * torch.randn(t.shape, generator=gen))
            elif t.dim() == 1:  # BatchNorm gamma
                t.copy_(0.5 + torch.rand(t.shape, generator=gen))
            else:
                t.mul_(1 + 0.1 * torch.randn(t.shape, generator=gen))


def ringtrain_logits(args, name, weights, x, tmp):
    inp, out = os.path.join(tmp, "input.safetensors"), os.path.join(tmp, "logits.safetensors")
    st.save(inp, {"input": x})
    subprocess.run([args.ringtrain, "models", "run", "--model", name, "--weights", weights,
                    "--input", inp, "--out", out], check=True)
    return st.load(out)["logits"]


def compare(name, way, want, got, tol):
    spread = want.std().item()
    err = (want - got).abs().max().item()
    ok = err <= tol * spread and got.argmax(1).equal(want.argmax(1))
    print(f"{name:9} {way:22} max |Δlogit| {err:.2e} (logit spread {spread:.2e}, tolerance {tol:g}×) "
          f"top-1 {'same' if got.argmax(1).equal(want.argmax(1)) else 'DIFFERS'}: {'ok' if ok else 'FAIL'}", flush=True)
    return ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ringtrain", required=True)
    ap.add_argument("--models", default="resnet18,resnet34,resnet50,vgg11_bn,vgg16_bn,alexnet,resnet20,resnet56")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--tol", type=float, default=1e-3, help="max |Δlogit| allowed, as a share of the logits' std")
    args = ap.parse_args()
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            model, size = build(name)
            x = torch.randn(args.batch, 3, size, size, generator=gen)
            # ringtrain → PyTorch.
            w = os.path.join(tmp, name + ".safetensors")
            subprocess.run([args.ringtrain, "models", "export", "--model", name, "--seed", "7", "--out", w],
                           check=True, stdout=subprocess.DEVNULL)
            sd = st.load(w)
            try:
                model.load_state_dict(sd, strict=True)
                loaded = True
            except RuntimeError as e:
                print(f"{name:9} ringtrain → torchvision: load_state_dict(strict=True) failed: {e}")
                ok = loaded = False
            if loaded:
                model.eval()
                with torch.no_grad():
                    want = model(x)
                ok &= compare(name, "ringtrain → torch", want, ringtrain_logits(args, name, w, x, tmp), args.tol)
            # PyTorch → ringtrain.
            perturb(model, gen)
            model.eval()
            with torch.no_grad():
                want = model(x)
            st.save(w, model.state_dict())
            ok &= compare(name, "torch → ringtrain", want, ringtrain_logits(args, name, w, x, tmp), args.tol)
            os.remove(w)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
