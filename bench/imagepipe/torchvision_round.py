"""One round of the peer's image input pipeline on one core.

torchvision's ImageNet training transform on Pillow-decoded images, as
its reference recipe builds it: RandomResizedCrop(size),
RandomHorizontalFlip(), ToTensor(), Normalize(ImageNet's mean and std),
over every image of the list (PASSES times), then Pillow's decode alone. Prints one JSON
line of images per second of the process's CPU time.

usage: python3 torchvision_round.py LIST SIZE SEED PASSES
"""

import io
import json
import sys
import time

import torch
import torchvision
from PIL import Image, features
from torchvision import transforms as T


def main():
    listfile, size, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    passes = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    with open(listfile) as f:
        paths = [line.strip() for line in f if line.strip()]
    data = []
    for p in paths:
        with open(p, "rb") as f:
            data.append(f.read())
    data *= passes
    tf = T.Compose([
        T.RandomResizedCrop(size),
        T.RandomHorizontalFlip(),
        T.ToTensor(),
        T.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
    ])
    t0 = time.process_time()
    for b in data:
        # torchvision's ImageFolder loader: open, then convert("RGB").
        x = tf(Image.open(io.BytesIO(b)).convert("RGB"))
    t1 = time.process_time()
    for b in data:
        # Decode alone: libjpeg-turbo's output, RGB pixels.
        Image.open(io.BytesIO(b)).load()
    t2 = time.process_time()
    n = len(data)
    print(json.dumps({
        "files": n,
        "pipeline_images_per_cpu_s": n / (t1 - t0),
        "decode_images_per_cpu_s": n / (t2 - t1),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "pillow": Image.__version__,
        "libjpeg_turbo": features.check_feature("libjpeg_turbo"),
        "threads": torch.get_num_threads(),
        "out_shape": list(x.shape),
    }))


if __name__ == "__main__":
    main()
