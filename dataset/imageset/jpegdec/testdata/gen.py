#!/usr/bin/env python3
"""Writes the test JPEGs with libjpeg-turbo's cjpeg and their references
with its djpeg (Debian's libjpeg-turbo-progs 2.1.5): for each X.jpg,
X.y.pgm is `djpeg -grayscale` (the Y plane, as djpeg decodes it) and,
for colour files, X.planes.ppm is `djpeg -nosmooth` of a copy of X.jpg
relabelled as RGB (its JFIF APP0 dropped, an Adobe APP14 with transform 0
added): the three decoded planes, chroma replicated, not converted.
X.sN.y.pgm and, for 4:4:4 files, X.sN.planes.ppm are the same with
`-scale 1/N` (DCT-domain scaling, jidctred.c)."""
import os, random, struct, subprocess

def source(w, h, seed):
    r = random.Random(seed)
    px = bytearray()
    for y in range(h):
        for x in range(w):
            v = [(x * 5 + y * 3) % 256, (x * x + y * 7) % 256, (255 - 4 * y + x) % 256]
            if (x // 6 + y // 5) % 2:
                v = [255 - c for c in v]
            px += bytes(min(255, max(0, c + r.randint(-20, 20))) for c in v)
    return b"P6\n%d %d\n255\n" % (w, h) + bytes(px)

def relabel_rgb(jpg):
    out, i = bytearray(jpg[:2]), 2
    adobe = b"\xff\xee" + struct.pack(">H", 14) + b"Adobe" + bytes([0, 100, 0, 0, 0, 0, 0])
    out += adobe
    while True:
        m = jpg[i + 1]
        n = struct.unpack(">H", jpg[i + 2:i + 4])[0]
        if m == 0xDA:
            out += jpg[i:]
            return bytes(out)
        if m != 0xE0:
            out += jpg[i:i + 2 + n]
        i += 2 + n

cases = [
    ("444", 51, 33, ["-sample", "1x1"]),
    ("422", 51, 33, ["-sample", "2x1"]),
    ("420", 51, 33, ["-sample", "2x2"]),
    ("440", 45, 37, ["-sample", "1x2"]),
    ("411", 75, 21, ["-sample", "4x1"]),
    ("410", 70, 35, ["-sample", "4x2"]),
    ("420-restart-rows", 51, 33, ["-sample", "2x2", "-restart", "1"]),
    ("422-restart-3blocks", 61, 29, ["-sample", "2x1", "-restart", "3B"]),
    ("420-optimized-q100", 40, 40, ["-sample", "2x2", "-optimize", "-quality", "100"]),
    ("444-q10", 33, 17, ["-sample", "1x1", "-quality", "10"]),
    ("grey", 51, 33, ["-grayscale"]),
    ("grey-restart", 23, 70, ["-grayscale", "-restart", "2B"]),
    ("tiny", 1, 1, ["-sample", "2x2"]),
]
for i, (name, w, h, opts) in enumerate(cases):
    src = source(w, h, i)
    q = [] if "-quality" in opts else ["-quality", "90"]
    jpg = subprocess.run(["cjpeg", "-dct", "int"] + q + opts, input=src, capture_output=True, check=True).stdout
    open(name + ".jpg", "wb").write(jpg)
    y = subprocess.run(["djpeg", "-dct", "int", "-grayscale", "-pnm"], input=jpg, capture_output=True, check=True).stdout
    open(name + ".y.pgm", "wb").write(y)
    if "-grayscale" not in opts:
        p = subprocess.run(["djpeg", "-dct", "int", "-nosmooth", "-pnm"], input=relabel_rgb(jpg), capture_output=True, check=True).stdout
        assert p.startswith(b"P6"), name
        open(name + ".planes.ppm", "wb").write(p)
    for d in (2, 4, 8):
        scale = ["-scale", "1/%d" % d]
        y = subprocess.run(["djpeg", "-dct", "int", "-grayscale", "-pnm"] + scale, input=jpg, capture_output=True, check=True).stdout
        open("%s.s%d.y.pgm" % (name, d), "wb").write(y)
        if "1x1" in opts:
            p = subprocess.run(["djpeg", "-dct", "int", "-nosmooth", "-pnm"] + scale, input=relabel_rgb(jpg), capture_output=True, check=True).stdout
            open("%s.s%d.planes.ppm" % (name, d), "wb").write(p)
