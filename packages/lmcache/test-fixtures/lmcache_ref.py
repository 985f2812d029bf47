#!/usr/bin/env python3
"""Reference reader/writer of LMCache's on-disk formats, for tierkit's tests.

Written for tierkit from a reading of LMCache's own source, function by function
(stdlib only: no torch, no numpy; tensors are described by dtype name and shape):

  lmcache/utils.py (commit 0353be824aebefb9fd4fbdca022746adbf252d3b)
      CacheEngineKey.from_string / to_string / chunk_hash_hex, parse_cache_key,
      TORCH_DTYPE_TO_STR_DTYPE                       -> Key, parse_key
  lmcache/v1/storage_backend/gds_backend.py (commit 000fcdc59a55af3cb9753f4ceb27abfad56f5909)
      torch_dtypes, pack_metadata, unpack_metadata   -> pack_metadata, unpack_metadata
      GdsBackend._key_to_path                        -> gds_key_to_path
      GdsBackend._save_gds + save_metadata           -> gds_save
      GdsBackend._try_to_read_metadata, _read_metadata,
      _load_bytes_from_disk_with_memory (offset 4096) -> gds_lookup, gds_load
      GdsBackend._scan_metadata(_subdir)             -> gds_scan
  lmcache/v1/storage_backend/path_sharder.py (commit 1cb28f85ebe3852e37272c74c993c89533812400)
      PathSharder (by_gpu: paths[device % n])        -> gds_paths
  lmcache/v1/storage_backend/connector/fs_connector.py (the "-SEP-" version read
      alongside hf3fs_connector.py at commit 17eb6d95e99ee993cc6b8bfffeea34c81270dee0)
      _get_base_path, _get_file_name, _get_file_and_tmp_path, put, get -> fs_*
  lmcache/v1/protocol.py (commit 0851d06cee2ec3a8907d23240f8849d58ade969d)
      RemoteMetadata.serialize / deserialize, DTYPE_TO_INT, INT_TO_DTYPE -> remote_*

Commands print JSON on stdout; see main() at the bottom.
"""

import argparse
import hashlib
import json
import os
import struct
import sys
import urllib.parse
import uuid

# ---- keys (utils.py) -------------------------------------------------------

KEY_DTYPES = {  # the dtype field of a key -> the GDS header's dtype name
    "half": "F16", "bfloat16": "BF16", "float": "F32", "double": "F64",
    "int8": "I8", "uint8": "U8", "int16": "I16", "int32": "I32", "int64": "I64",
    "bool": None, "fp8_e4m3fn": "F8E4M3FN", "fp8_e4m3fnuz": None,
    "fp8_e5m2": "F8E5M2", "fp8_e5m2fnuz": None,
}


class Key:
    def __init__(self, model, world_size, worker_id, chunk_hash, dtype, layer_id=None, tags=()):
        if dtype not in KEY_DTYPES:
            raise ValueError(f"Unsupported dtype in CacheEngineKey: {dtype}")
        self.model, self.world_size, self.worker_id = model, world_size, worker_id
        self.chunk_hash, self.dtype, self.layer_id, self.tags = chunk_hash, dtype, layer_id, tuple(tags)

    def chunk_hash_hex(self):
        return f"{self.chunk_hash:x}"

    def to_string(self):
        s = f"{self.model}@{self.world_size}@{self.worker_id}@{self.chunk_hash_hex()}@{self.dtype}"
        if self.layer_id is not None:
            s += f"@{self.layer_id}"
        if self.tags:
            s += "@" + "@".join(f"{k}%{v}" for k, v in self.tags)
        return s


def parse_key(s):
    parts = s.split("@")
    if len(parts) < 5:
        raise ValueError(f"Invalid key string: {s}")
    layered = len(parts) >= 6 and parts[5].isdigit()
    tags = []
    for kv in parts[6 if layered else 5:]:
        kvs = kv.split("%", 1)
        if len(kvs) != 2:
            raise ValueError(f"Invalid key string: {s}")
        tags.append((kvs[0], kvs[1]))
    return Key(parts[0], int(parts[1]), int(parts[2]), int(parts[3], 16), parts[4],
               int(parts[5]) if layered else None, tags)


# ---- GDS backend (gds_backend.py) ------------------------------------------

METADATA_SUFFIX = ".metadata"
DATA_SUFFIX = ".kvcache.safetensors"
METADATA_VERSION = 1
METADATA_MAX_SIZE = 4096
ELEMENT_BYTES = {"F16": 2, "BF16": 2, "F32": 4, "F64": 8, "U8": 1, "U16": 2, "U32": 4, "U64": 8,
                 "I8": 1, "I16": 2, "I32": 4, "I64": 8, "F8E4M3FN": 1, "F8E5M2": 1}
MEMORY_FORMATS = range(0, 8)


def numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def pack_metadata(dtype, shape, fmt, shapes=None, dtypes=None, **extra_metadata):
    if dtype not in ELEMENT_BYTES:
        raise RuntimeError(f"unhandled dtype {dtype}")
    if shapes is not None and dtypes is not None:
        data_size = sum(numel(s) * ELEMENT_BYTES[d] for s, d in zip(shapes, dtypes, strict=True))
    else:
        data_size = numel(shape) * ELEMENT_BYTES[dtype]
    tensor_meta = {"dtype": dtype, "shape": list(shape), "data_offsets": [0, data_size],
                   "fmt": fmt, "__metadata__": extra_metadata}
    if shapes is not None and dtypes is not None:
        tensor_meta["shapes"] = [list(s) for s in shapes]
        tensor_meta["dtypes"] = list(dtypes)
    str_meta = json.dumps({"kvcache": tensor_meta}).encode("utf-8")
    assert len(str_meta) <= METADATA_MAX_SIZE - 8
    str_meta += b" " * (METADATA_MAX_SIZE - 8 - len(str_meta))
    return struct.pack("<Q", len(str_meta)) + str_meta


def unpack_metadata(buffer):
    meta_len = struct.unpack("<Q", buffer[:8])[0]
    meta = json.loads(buffer[8:8 + meta_len].rstrip(b" ").decode("utf-8"))
    t = meta["kvcache"]
    if t["fmt"] not in MEMORY_FORMATS:  # MemoryFormat(t["fmt"]) raises
        raise ValueError(f"{t['fmt']} is not a valid MemoryFormat")
    ELEMENT_BYTES[t["dtype"]]  # torch_dtypes_inverse[...] raises KeyError
    nbytes = t["data_offsets"][1] - t["data_offsets"][0]
    return t["shape"], t["dtype"], nbytes, t["fmt"], t["__metadata__"], t.get("shapes"), t.get("dtypes")


def gds_paths(gds_path, device=0):
    """PathSharder(by_gpu): (all paths, the one this device writes to)."""
    paths = [p.strip() for p in gds_path.split(",") if p.strip()]
    if not paths:
        raise ValueError("At least one path must be provided")
    return paths, paths[device % len(paths)]


def gds_key_to_path(base, key, data_suffix=DATA_SUFFIX):
    h = str(key.chunk_hash)
    l1, l2 = h[:2], h[2:4]
    return os.path.join(base, l1, l2, urllib.parse.quote(key.to_string(), safe="") + data_suffix), l1 + l2, l1, l2


def gds_save(gds_path, key, data, dtype, shape, fmt, device=0, shapes=None, dtypes=None):
    _, selected = gds_paths(gds_path, device)
    path, _, l1, l2 = gds_key_to_path(selected, key)
    os.makedirs(os.path.join(selected, l1, l2), exist_ok=True)
    tmp = ".tmp" + uuid.uuid4().hex[:8]
    metadata = pack_metadata(dtype, shape, fmt, shapes, dtypes, lmcache_version=str(METADATA_VERSION))
    assert len(data) == json.loads(metadata[8:].rstrip(b" "))["kvcache"]["data_offsets"][1]
    with open(path + tmp, "wb") as f:  # _save_gds: header, then the data at offset 4096
        f.write(metadata)
        f.write(data)
    os.rename(path + tmp, path)
    with open(path + METADATA_SUFFIX + tmp, "wb") as f:  # save_metadata
        f.write(metadata)
    os.rename(path + METADATA_SUFFIX + tmp, path + METADATA_SUFFIX)
    return path


def gds_lookup(gds_path, key):
    """contains() -> _try_to_read_metadata: every path's .metadata, first hit wins."""
    paths, _ = gds_paths(gds_path)
    for p in paths:
        path, _, _, _ = gds_key_to_path(p, key)
        mpath = path + METADATA_SUFFIX
        if os.path.exists(mpath):
            try:
                with open(mpath, "rb") as f:
                    shape, dtype, size, fmt, extra, shapes, dtypes = unpack_metadata(f.read(METADATA_MAX_SIZE))
                if extra["lmcache_version"] != str(METADATA_VERSION):
                    continue  # UnsupportedMetadataVersion: ignored
                return {"path": path, "shape": shape, "dtype": dtype, "nbytes": size, "fmt": fmt,
                        "shapes": shapes, "dtypes": dtypes}
            except Exception:  # LMCache logs and ignores the entry
                continue
    return None


def gds_load(entry):
    """_load_bytes_from_disk_with_memory: nbytes at offset 4096 of the data file."""
    with open(entry["path"], "rb") as f:
        f.seek(METADATA_MAX_SIZE)
        data = f.read(entry["nbytes"])
    if len(data) != entry["nbytes"]:
        return None
    return data


def gds_scan(gds_path):
    """_scan_metadata: keys of every <2 chars>/<2 chars>/*.kvcache.safetensors.metadata."""
    paths, _ = gds_paths(gds_path)
    found = []
    target = DATA_SUFFIX + METADATA_SUFFIX
    for p in paths:
        for l1 in sorted(os.listdir(p)):
            d1 = os.path.join(p, l1)
            if len(l1) != 2 or not os.path.isdir(d1):
                continue
            for l2 in sorted(os.listdir(d1)):
                d2 = os.path.join(d1, l2)
                if len(l2) != 2 or not os.path.isdir(d2):
                    continue
                for name in sorted(os.listdir(d2)):
                    if name.endswith(target) and os.path.isfile(os.path.join(d2, name)):
                        try:
                            found.append(parse_key(urllib.parse.unquote(name[:-len(target)])).to_string())
                        except (ValueError, KeyError):
                            pass
    return found


# ---- FS connector (fs_connector.py) and RemoteMetadata (protocol.py) -------

DTYPE_TO_INT = {None: 0, "F16": 2, "BF16": 3, "F32": 4, "F64": 5, "U8": 6, "F8E4M3FN": 7, "F8E5M2": 8}
INT_TO_DTYPE = {0: None, 1: "F16", 2: "F16", 3: "BF16", 4: "F32", 5: "F64", 6: "U8", 7: "F8E4M3FN", 8: "F8E5M2"}
REMOTE_METADATA_LEN = 28


def remote_serialize(length, shape, dtype, fmt):
    assert len(shape) == 4, "Shape dimension should be 4"
    return struct.pack("<iiiiiii", length, fmt, DTYPE_TO_INT[dtype], *shape)


def remote_deserialize(b):
    length, fmt, dtype, s0, s1, s2, s3 = struct.unpack_from("<iiiiiii", b)
    if fmt not in MEMORY_FORMATS:
        raise ValueError(f"{fmt} is not a valid MemoryFormat")
    return length, [s0, s1, s2, s3], INT_TO_DTYPE[dtype], fmt


def fs_base_paths(s):
    return [p.strip() for p in s.split(",")] if "," in s else [s]


def fs_base_path(bases, key):
    if len(bases) == 1:
        return bases[0]
    return bases[abs(key.chunk_hash) % len(bases)]


def fs_file_name(key):
    return key.to_string().replace("/", "-SEP-") + ".data"


def fs_put(bases, key, data, dtype, shape, fmt, save_chunk_meta=True, relative_tmp_dir=None):
    base = fs_base_path(bases, key)
    os.makedirs(base, exist_ok=True)
    final = os.path.join(base, fs_file_name(key))
    if relative_tmp_dir is not None:
        os.makedirs(os.path.join(base, relative_tmp_dir), exist_ok=True)
        tmp = os.path.join(base, relative_tmp_dir, fs_file_name(key))
    else:
        tmp = final[: -len(".data")] + ".tmp"  # Path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        if save_chunk_meta:
            f.write(remote_serialize(len(data), shape, dtype, fmt))
        f.write(data)
    os.replace(tmp, final)
    return final


def fs_get(bases, key, save_chunk_meta=True, meta_nbytes=None):
    path = os.path.join(fs_base_path(bases, key), fs_file_name(key))
    try:
        with open(path, "rb") as f:
            if save_chunk_meta:
                md = f.read(REMOTE_METADATA_LEN)
                if len(md) != REMOTE_METADATA_LEN:
                    raise RuntimeError("Partial read meta")
                length, shape, dtype, fmt = remote_deserialize(md)
                data = f.read(length)
                if len(data) != length:
                    raise RuntimeError("Partial read data")
                return {"path": path, "shape": shape, "dtype": dtype, "fmt": fmt, "nbytes": length}, data
            data = f.read(meta_nbytes) if meta_nbytes is not None else f.read()
            return {"path": path, "nbytes": len(data)}, data
    except FileNotFoundError:
        return None, None


def fs_list(bases):
    keys = []
    for b in bases:
        if os.path.isdir(b):
            keys.extend(n[: -len(".data")] for n in sorted(os.listdir(b)) if n.endswith(".data"))
    return keys


# ---- deterministic test data and the golden directories --------------------

def test_bytes(seed, n):
    out = bytearray()
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:n])


def sha256(b):
    return hashlib.sha256(b).hexdigest()


GOLDEN_GDS = [  # key, dtype, shape, fmt; small stand-ins for LMCache's KV_2LTD / MLA chunk shapes
    ("meta-llama/Llama-3.1-8B@1@0@7f3a9c21e0b44d12@bfloat16", "BF16", [2, 2, 16, 8], 1),
    ("meta-llama/Llama-3.1-8B@2@1@-1c2d3e4f5a6b7c8d@half", "F16", [2, 2, 16, 8], 1),
    ("Qwen/Qwen2.5-7B@1@0@3e8@fp8_e4m3fn", "F8E4M3FN", [2, 2, 16, 8], 1),
    ("mistralai/Mistral-7B@1@0@0123456789abcdef@float", "F32", [2, 2, 16, 4], 1),
    ("deepseek-ai/DeepSeek-V3@8@3@fedcba9876543210@bfloat16", "BF16", [1, 2, 16, 12], 6),
    ("meta-llama/Llama-3.1-8B@1@0@abcdef0123456789@bfloat16@5", "BF16", [2, 1, 16, 8], 1),
    ("meta-llama/Llama-3.1-8B@1@0@1111222233334444@bfloat16@user%alice@lora%sql-adapter", "BF16", [2, 2, 8, 8], 1),
    ("tiny@1@0@7@bfloat16", "BF16", [2, 2, 4, 8], 1),
]

GOLDEN_FS = [  # key, dtype, shape (4-D as RemoteMetadata needs), fmt
    ("meta-llama/Llama-3.1-8B@1@0@7f3a9c21e0b44d12@bfloat16", "BF16", [2, 2, 16, 8], 1),
    ("meta-llama/Llama-3.1-8B@1@0@-7f3a9c21e0b44d13@half", "F16", [2, 2, 16, 8], 1),
    ("Qwen/Qwen2.5-7B@1@0@3e9@fp8_e5m2", "F8E5M2", [2, 2, 16, 8], 1),
    ("mistralai/Mistral-7B@1@0@0123456789abcdee@float", "F32", [2, 2, 16, 4], 1),
    ("deepseek-ai/DeepSeek-V3@8@3@fedcba9876543211@bfloat16", "BF16", [1, 2, 16, 12], 6),
]


def make_golden(out):
    manifest = {"gds": [], "fs_meta": [], "fs_nometa": []}
    gds_root = os.path.join(out, "gds")
    for i, (k, dtype, shape, fmt) in enumerate(GOLDEN_GDS):
        key = parse_key(k)
        data = test_bytes(f"gds{i}", numel(shape) * ELEMENT_BYTES[dtype])
        path = gds_save(gds_root, key, data, dtype, shape, fmt)
        manifest["gds"].append({"key": key.to_string(), "dtype": dtype, "shape": shape, "fmt": fmt,
                                "nbytes": len(data), "sha256": sha256(data),
                                "path": os.path.relpath(path, out)})
    for meta in (True, False):
        name = "fs_meta" if meta else "fs_nometa"
        bases = [os.path.join(out, name, "a"), os.path.join(out, name, "b")]
        for i, (k, dtype, shape, fmt) in enumerate(GOLDEN_FS):
            key = parse_key(k)
            data = test_bytes(f"{name}{i}", numel(shape) * ELEMENT_BYTES[dtype])
            path = fs_put(bases, key, data, dtype, shape, fmt, save_chunk_meta=meta)
            manifest[name].append({"key": key.to_string(), "dtype": dtype, "shape": shape, "fmt": fmt,
                                   "nbytes": len(data), "sha256": sha256(data),
                                   "path": os.path.relpath(path, out)})
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.write("\n")


def writer_loop(root, count, dtype, shape, fmt, prefix, paced=False):
    """Adds chunks as LMCache does (tmp + rename, then the .metadata), one JSON line each.
    paced: waits for a line on stdin before each chunk (EOF stops)."""
    for i in range(count):
        if paced and not sys.stdin.readline():
            return
        key = Key(prefix, 1, 0, int(hashlib.sha256(f"{prefix}{i}".encode()).hexdigest()[:16], 16), "bfloat16")
        data = test_bytes(f"{prefix}{i}", numel(shape) * ELEMENT_BYTES[dtype])
        path = gds_save(root, key, data, dtype, shape, fmt)  # a vanished tmp file raises here
        print(json.dumps({"key": key.to_string(), "path": path}), flush=True)


def main(argv):
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("golden"); g.add_argument("out")
    w = sub.add_parser("gds-write")
    for a in ("root", "key", "dtype", "shape", "data"):
        w.add_argument("--" + a, required=True)
    w.add_argument("--fmt", type=int, default=1)
    w.add_argument("--device", type=int, default=0)
    r = sub.add_parser("gds-read"); r.add_argument("--root", required=True); r.add_argument("--key", required=True)
    s = sub.add_parser("gds-scan"); s.add_argument("--root", required=True)
    fw = sub.add_parser("fs-write")
    for a in ("base", "key", "dtype", "shape", "data"):
        fw.add_argument("--" + a, required=True)
    fw.add_argument("--fmt", type=int, default=1)
    fw.add_argument("--no-meta", action="store_true")
    fr = sub.add_parser("fs-read"); fr.add_argument("--base", required=True); fr.add_argument("--key", required=True)
    fr.add_argument("--no-meta", action="store_true")
    fl = sub.add_parser("fs-list"); fl.add_argument("--base", required=True)
    wl = sub.add_parser("writer-loop")
    wl.add_argument("--root", required=True); wl.add_argument("--count", type=int, required=True)
    wl.add_argument("--shape", default="2,2,16,8"); wl.add_argument("--prefix", default="sidecar")
    wl.add_argument("--paced", action="store_true")
    args = ap.parse_args(argv)
    shape = lambda s: [int(x) for x in s.split(",") if x != ""]  # noqa: E731

    if args.cmd == "golden":
        make_golden(args.out)
    elif args.cmd == "gds-write":
        with open(args.data, "rb") as f:
            data = f.read()
        path = gds_save(args.root, parse_key(args.key), data, args.dtype, shape(args.shape), args.fmt, args.device)
        print(json.dumps({"path": path}))
    elif args.cmd == "gds-read":
        entry = gds_lookup(args.root, parse_key(args.key))
        data = gds_load(entry) if entry else None
        print(json.dumps(None if data is None else {**entry, "sha256": sha256(data)}))
    elif args.cmd == "gds-scan":
        print(json.dumps(gds_scan(args.root)))
    elif args.cmd == "fs-write":
        with open(args.data, "rb") as f:
            data = f.read()
        path = fs_put(fs_base_paths(args.base), parse_key(args.key), data, args.dtype, shape(args.shape),
                      args.fmt, save_chunk_meta=not args.no_meta)
        print(json.dumps({"path": path}))
    elif args.cmd == "fs-read":
        entry, data = fs_get(fs_base_paths(args.base), parse_key(args.key), save_chunk_meta=not args.no_meta)
        print(json.dumps(None if data is None else {**entry, "sha256": sha256(data)}))
    elif args.cmd == "fs-list":
        print(json.dumps(fs_list(fs_base_paths(args.base))))
    elif args.cmd == "writer-loop":
        writer_loop(args.root, args.count, "BF16", shape(args.shape), 1, args.prefix, args.paced)


if __name__ == "__main__":
    main(sys.argv[1:])
