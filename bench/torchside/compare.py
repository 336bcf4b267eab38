"""ringtrain beside PyTorch: training steps of the same model, batch and
optimizer (SGD, momentum 0.9) on a fixed random batch in memory, on the
same cores, alternating round by round so that both see the same machine.

PyTorch runs at 1 and at 2 threads (1.13 is often faster on one thread
than on two for small nets); ringtrain at 2. Prints each round's figures
and, per model, the medians and the ratios: against PyTorch's best thread
count and against its equal one (2).

Usage: compare.py --ringtrain BIN [--cases resnet18:224:32,...] [--rounds 3]
A case is model:image size:batch (image size 0 for the digit nets).
--ringtrain-threads 1,2 also times ringtrain on one thread.
"""
import argparse
import json
import statistics
import subprocess
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

DEFAULT_CASES = "resnet18:224:32,resnet50:224:32,vgg16_bn:224:16,lenet5:0:64,mlp:0:64"


class LeNet5(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(1, 6, 5, padding=2), nn.Conv2d(6, 16, 5)
        self.f1, self.f2, self.f3 = nn.Linear(400, 120), nn.Linear(120, 84), nn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.c1(x)), 2)
        x = F.max_pool2d(F.relu(self.c2(x)), 2).flatten(1)
        return self.f3(F.relu(self.f2(F.relu(self.f1(x)))))


def mlp():
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(), nn.Linear(100, 10))


def torch_model(name):
    if name == "lenet5":
        return LeNet5(), (1, 28, 28), 10
    if name == "mlp":
        return mlp(), (1, 28, 28), 10
    return getattr(torchvision.models, name)(), None, 1000


def torch_rate(name, size, batch, threads, steps):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model, shape, classes = torch_model(name)
    shape = shape or (3, size, size)
    x = torch.randn(batch, *shape)
    y = torch.randint(0, classes, (batch,))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    step()  # warm-up
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch / (time.perf_counter() - t0)


def ringtrain_rate(args, name, size, batch, threads, steps):
    cmd = [args.ringtrain, "bench", "model", "--model", name, "--batch-size", str(batch), "--threads", str(threads),
           "--steps", str(steps), "--repeat", "1", "--warmup", "1", "--json"]
    if size:
        cmd += ["--image-size", str(size)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out)["images_per_second"]


def steps_for(name):
    return {"resnet50": 2, "vgg16_bn": 2, "resnet18": 3}.get(name, 300)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ringtrain", required=True)
    ap.add_argument("--cases", default=DEFAULT_CASES)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", action="store_true", help="print one JSON line per case")
    ap.add_argument("--ringtrain-threads", default="2",
                    help="comma-separated thread counts ringtrain runs at (e.g. 1,2); the ratios use 2")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}", flush=True)
    for case in args.cases.split(","):
        name, size, batch = case.split(":")
        size, batch = int(size), int(batch)
        steps = steps_for(name)
        rt_threads = sorted({int(t) for t in args.ringtrain_threads.split(",")} | {2})
        rates = {f"ringtrain-{t}": [] for t in rt_threads}
        rates.update({"torch-1": [], "torch-2": []})
        for r in range(args.rounds):
            for t in rt_threads:
                rates[f"ringtrain-{t}"].append(ringtrain_rate(args, name, size, batch, t, steps))
            rates["torch-1"].append(torch_rate(name, size, batch, 1, steps))
            rates["torch-2"].append(torch_rate(name, size, batch, 2, steps))
            print(f"  {name} round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f} img/s" for k, v in rates.items()), flush=True)
        med = {k: statistics.median(v) for k, v in rates.items()}
        best = max(med["torch-1"], med["torch-2"])
        res = {"model": name, "image_size": size, "batch": batch, "rounds": args.rounds, "steps": steps,
               "median_images_per_second": med, "spread": {k: [min(v), max(v)] for k, v in rates.items()},
               "ratio_vs_torch_best": med["ringtrain-2"] / best, "ratio_vs_torch_2_threads": med["ringtrain-2"] / med["torch-2"]}
        if args.json:
            print(json.dumps(res), flush=True)
        others = "".join(f", {t} thread{'s' if t > 1 else ''} {med[f'ringtrain-{t}']:.2f}" for t in rt_threads if t != 2)
        print(f"{name} {size or 28}px batch {batch}: ringtrain (2 threads) {med['ringtrain-2']:.2f} img/s{others}, "
              f"torch 1 thread {med['torch-1']:.2f}, 2 threads {med['torch-2']:.2f}; "
              f"ratio {res['ratio_vs_torch_best']:.2f}× PyTorch's best, {res['ratio_vs_torch_2_threads']:.2f}× at 2 threads", flush=True)


if __name__ == "__main__":
    sys.exit(main())
