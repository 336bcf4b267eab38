#!/usr/bin/env python3
"""Writes golden.tfevents, a TensorBoard event file of fixed events, for
ringtrain's runlog tests: a writer independent of the Go one, from the
format's spec, with the Python standard library only.

TFRecord framing: uint64 little-endian length, uint32 masked CRC-32C of the
8 length bytes, the data, uint32 masked CRC-32C of the data;
mask(c) = ((c >> 15) | (c << 17)) + 0xa282ead8, in uint32 arithmetic.

Protos (proto3):
  Event   { double wall_time = 1; int64 step = 2;
            oneof what { string file_version = 3; Summary summary = 5; } }
  Summary { repeated Value value = 1; }
  Value   { string tag = 1; oneof value { float simple_value = 2; } }

Run from this directory: python3 make_golden.py
"""
import struct

# CRC-32C (Castagnoli), reflected polynomial 0x82F63B78, table-driven.
_TABLE = []
for _n in range(256):
    _c = _n
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _TABLE.append(_c)


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = _TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def mask(c):
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283


def varint(n):
    n &= (1 << 64) - 1  # int64 as proto encodes it
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def key(field, wire_type):
    return varint(field << 3 | wire_type)


def length_delimited(field, payload):
    return key(field, 2) + varint(len(payload)) + payload


def value(tag, simple_value):
    return length_delimited(1, tag.encode()) + key(2, 5) + struct.pack("<f", simple_value)


def event(wall_time, step, file_version=None, scalars=()):
    b = b""
    if wall_time != 0:  # proto3 leaves defaults out
        b += key(1, 1) + struct.pack("<d", wall_time)
    if step != 0:
        b += key(2, 0) + varint(step)
    if file_version is not None:
        return b + length_delimited(3, file_version.encode())
    summary = b"".join(length_delimited(1, value(t, v)) for t, v in scalars)
    return b + length_delimited(5, summary)


def record(data):
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", mask(crc32c(length))) + data + struct.pack("<I", mask(crc32c(data)))


# The events of runlog's TestGoldenEventFile, in order.
EVENTS = [
    event(1767225600.0, 0, file_version="brain.Event:2"),
    # an evaluation before training: step 0 (left out), accuracy 0 (kept)
    event(1767225600.5, 0, scalars=[("test/loss", 2.302585), ("test/accuracy", 0.0)]),
    event(1767225601.25, 50, scalars=[
        ("train/loss", 1.75), ("train/accuracy", 0.40625), ("train/epoch", 0.0533),
        ("train/lr", 0.01), ("train/images_per_second", 1234.5), ("train/data_wait_seconds", 0.125)]),
    # lr, images/s and data wait zero: left out
    event(1767225602.75, 100, scalars=[
        ("train/loss", 0.5), ("train/accuracy", 0.875), ("train/epoch", 0.1066)]),
    event(1767225603.0, 100, scalars=[("test/loss", 0.0625), ("test/accuracy", 0.9814)]),
    event(1767225700.125, 300000, scalars=[
        ("train/loss", 0.015625), ("train/accuracy", 1.0), ("train/epoch", 3.0),
        ("train/lr", 0.001), ("train/images_per_second", 20480.0)]),
]

if __name__ == "__main__":
    with open("golden.tfevents", "wb") as f:
        for e in EVENTS:
            f.write(record(e))
