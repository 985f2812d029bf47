#!/usr/bin/env python3
"""Reads safetensors and GGUF files with the standard library only (struct, json)
and prints {file: {tensor: sha256 of its bytes}} as JSON: proof that a cache
tierkit filled holds plain model files any program can read.

usage: read_model.py FILE...
"""
import hashlib
import json
import struct
import sys


def safetensors(path):
    out = {}
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        base = 8 + n
        for name, t in header.items():
            if name == "__metadata__":
                continue
            begin, end = t["data_offsets"]
            f.seek(base + begin)
            out[name] = hashlib.sha256(f.read(end - begin)).hexdigest()
    return out


# ggml type id -> (elements per block, bytes per block), for the types the sample writes
GGML = {0: (1, 4), 1: (1, 2), 8: (32, 34), 12: (256, 144), 14: (256, 210), 30: (1, 2)}
SCALAR = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


def gguf(path):
    with open(path, "rb") as f:
        data = f.read()
    pos = 0

    def take(fmt):
        nonlocal pos
        vals = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize("<" + fmt)
        return vals[0] if len(vals) == 1 else vals

    def string():
        nonlocal pos
        n = take("Q")
        s = data[pos : pos + n].decode("utf-8")
        pos += n
        return s

    def value(t):
        if t == 8:
            return string()
        if t == 9:
            et, n = take("I"), take("Q")
            return [value(et) for _ in range(n)]
        return take(SCALAR[t])

    magic, version, n_tensors, n_kv = take("4sIQQ")
    assert magic == b"GGUF" and version in (2, 3)
    meta = {}
    for _ in range(n_kv):
        k = string()
        meta[k] = value(take("I"))
    align = meta.get("general.alignment", 32)
    infos = []
    for _ in range(n_tensors):
        name = string()
        dims = [take("Q") for _ in range(take("I"))]
        infos.append((name, dims, take("I"), take("Q")))
    base = (pos + align - 1) // align * align
    out = {}
    for name, dims, typ, off in infos:
        per, size = GGML[typ]
        count = 1
        for d in dims:
            count *= d
        start = base + off
        out[name] = hashlib.sha256(data[start : start + count // per * size]).hexdigest()
    return out


def main():
    result = {}
    for path in sys.argv[1:]:
        with open(path, "rb") as f:
            magic = f.read(4)
        result[path] = gguf(path) if magic == b"GGUF" else safetensors(path)
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
