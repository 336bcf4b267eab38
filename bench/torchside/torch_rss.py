"""PyTorch's side of the peak-RSS comparison: two training steps (SGD,
momentum 0.9) of a torchvision model on a random batch in memory.
Run under /usr/bin/time -f %M, beside
`ringtrain bench model --model NAME --batch-size 32 --steps 1 --repeat 1`.

Usage: /usr/bin/time -f %M /usr/bin/python3 torch_rss.py [resnet50] [threads] [batch]
"""
import sys
import time

import torch
import torch.nn.functional as F
import torchvision

name = sys.argv[1] if len(sys.argv) > 1 else "resnet50"
torch.set_num_threads(int(sys.argv[2]) if len(sys.argv) > 2 else 2)
batch = int(sys.argv[3]) if len(sys.argv) > 3 else 32
model = getattr(torchvision.models, name)()
x = torch.randn(batch, 3, 224, 224)
y = torch.randint(0, 1000, (batch,))
opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
for i in range(2):
    t = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    opt.step()
    print(name, "step", i, f"{time.perf_counter() - t:.2f} s", flush=True)
