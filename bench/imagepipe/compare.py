"""ringtrain's image input pipeline against torchvision + Pillow, one core.

Makes the image sets (once, under --work), then runs --rounds rounds, each
alternating, all pinned to one core (taskset -c 0 on this script, which
its children inherit):

  torchvision  torchvision_round.py: RandomResizedCrop + flip + ToTensor +
               Normalize on Pillow-decoded images, then Pillow's decode
               alone (torch.set_num_threads(1));
  ringtrain    `ringtrain bench imagepipe --json` with GOMAXPROCS=1: the
               same pipeline, then decode alone, then decode to RGB;
  djpeg        libjpeg-turbo's djpeg on every file to /dev/null, minus the
               same number of runs on a 16x16 JPEG (the process start).

Every figure is images per second of CPU time. Prints each round and the
medians as JSON lines; the ratios are ringtrain / peer.

The image sets: `synth`, `ringtrain data synth` JPEGs at 500x375 and q90
(ImageNet's commonest size and a common quality); `photos`, the camera
photographs of Debian's mate-backgrounds package (nature/) (when installed)
downsized with Pillow so that the longer side is 500 (ImageNet's) and
saved at q90.

usage: taskset -c 0 python3 compare.py --ringtrain BIN [--work DIR] [--rounds 5]
"""

import argparse
import glob
import json
import os
import resource
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def child_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def make_sets(rt, work, synth_classes, synth_per_class):
    sets = {}
    synth = os.path.join(work, "synth")
    if not os.path.isdir(os.path.join(synth, "train")):
        subprocess.run([rt, "data", "synth", synth, "--classes", str(synth_classes),
                        "--per-class", str(synth_per_class), "--val-per-class", "1",
                        "--size", "500x375", "--quality", "90"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sets["synth"] = sorted(glob.glob(os.path.join(synth, "train", "*", "*")))
    photos = os.path.join(work, "photos")
    srcs = sorted(p for p in glob.glob("/usr/share/backgrounds/mate/nature/*")
                  if p.lower().endswith((".jpg", ".jpeg")))
    if srcs:
        from PIL import Image
        os.makedirs(photos, exist_ok=True)
        for p in srcs:
            out = os.path.join(photos, os.path.splitext(os.path.basename(p))[0] + ".jpg")
            if os.path.exists(out):
                continue
            im = Image.open(p).convert("RGB")
            s = 500 / max(im.size)
            im = im.resize((round(im.size[0] * s), round(im.size[1] * s)), Image.LANCZOS)
            im.save(out, quality=90)
        sets["photos"] = sorted(glob.glob(os.path.join(photos, "*.jpg")))
    tiny = os.path.join(work, "tiny.jpg")
    if not os.path.exists(tiny):
        from PIL import Image
        Image.new("RGB", (16, 16), (128, 64, 32)).save(tiny, quality=90)
    return sets, tiny


def djpeg_round(files, tiny):
    c0 = child_cpu()
    for f in files:
        subprocess.run(["djpeg", "-outfile", os.devnull, f], check=True)
    c1 = child_cpu()
    for _ in files:
        subprocess.run(["djpeg", "-outfile", os.devnull, tiny], check=True)
    c2 = child_cpu()
    return len(files) / ((c1 - c0) - (c2 - c1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ringtrain", required=True)
    ap.add_argument("--work", default="/tmp/ringtrain-imagepipe")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--min-images", type=int, default=200, help="images per round: a small set is passed over several times")
    ap.add_argument("--synth-classes", type=int, default=20)
    ap.add_argument("--synth-per-class", type=int, default=10)
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    sets, tiny = make_sets(a.ringtrain, a.work, a.synth_classes, a.synth_per_class)
    env = dict(os.environ, GOMAXPROCS="1")
    for name, files in sets.items():
        lst = os.path.join(a.work, name + ".list")
        with open(lst, "w") as f:
            f.write("\n".join(files) + "\n")
        d = os.path.dirname(files[0]) if name == "photos" else os.path.join(a.work, name, "train")
        nbytes = sum(os.path.getsize(p) for p in files)
        passes = -(-a.min_images // len(files))
        rows = []
        for r in range(a.rounds):
            tv = json.loads(subprocess.run([sys.executable, os.path.join(HERE, "torchvision_round.py"), lst, "224", str(r + 1), str(passes)],
                                           check=True, capture_output=True, text=True).stdout)
            rt = json.loads(subprocess.run([a.ringtrain, "bench", "imagepipe", "--dir", d, "--json", "--seed", str(r + 1),
                                            "--passes", str(passes)],
                                           check=True, capture_output=True, text=True, env=env).stdout)
            dj = djpeg_round(files * passes, tiny)
            row = {
                "set": name, "round": r + 1, "files": len(files), "passes": passes, "mean_kb": round(nbytes / len(files) / 1024, 1),
                "load": os.getloadavg()[0],
                "torchvision": tv["pipeline_images_per_cpu_s"], "ringtrain": rt["pipeline_median"],
                "pillow_decode": tv["decode_images_per_cpu_s"], "djpeg": dj,
                "ringtrain_decode_planes": rt["decode_median"], "ringtrain_decode_rgb": rt["decode_rgb_median"],
            }
            rows.append(row)
            print(json.dumps({k: round(v, 1) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
        med = {k: statistics.median(x[k] for x in rows) for k in
               ("torchvision", "ringtrain", "pillow_decode", "djpeg", "ringtrain_decode_planes", "ringtrain_decode_rgb", "load")}
        med.update({
            "set": name, "rounds": a.rounds, "peer": "torchvision %s, torch %s, Pillow %s (libjpeg-turbo %s)" % (
                tv["torchvision"], tv["torch"], tv["pillow"], tv["libjpeg_turbo"]),
            "ratio_pipeline": med["ringtrain"] / med["torchvision"],
            "ratio_decode_rgb_vs_pillow": med["ringtrain_decode_rgb"] / med["pillow_decode"],
            "ratio_decode_rgb_vs_djpeg": med["ringtrain_decode_rgb"] / med["djpeg"],
        })
        print(json.dumps({"median": {k: round(v, 3) if isinstance(v, float) else v for k, v in med.items()}}), flush=True)


if __name__ == "__main__":
    main()
