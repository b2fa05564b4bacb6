#!/usr/bin/env python3
"""Writes the torch.save() checkpoints that swift/Tests/MambaMetalTests/TorchCheckpointTests.swift reads.

Usage: python3 tools/make_torch_fixtures.py [out_dir]   (default: tests/fixtures/torch)

Every file is small. expected.json maps each file name to either
  {"tensors": [{"name", "dtype", "shape", "sum", "first", "fnv1a64", "group", "offset_bytes"}, ...]}
in state_dict order, or {"error": {"kind", "contains": [substrings of the message]}}.
"sum" is math.fsum of the values in float64, "first" the first (up to) four values, "fnv1a64" the
64-bit FNV-1a hash of the tensor's little-endian bytes. Tensors with the same "group" share one
storage in the file; "offset_bytes" is their start within it, so the reader's data pointers must
differ by the same amounts.

torch writes a random serialization id into each archive, so rerunning changes the bytes (not the
contents) of the files; expected.json stays the same.
"""
import collections
import io
import json
import math
import os
import struct
import sys
import zipfile
import zlib

import torch

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "torch")
DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}


class Opaque:
    """A plain Python object: pickling it references __main__.Opaque, which the reader must refuse."""

    def __init__(self):
        self.x = 1


def fnv1a64(data: bytes) -> str:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def describe(state_dict):
    groups = {}
    tensors = []
    for name, t in state_dict.items():
        key = t.untyped_storage().data_ptr()
        group = groups.setdefault(key, len(groups))
        flat = t.detach().reshape(-1)
        values = flat.double().tolist()
        tensors.append({
            "name": name,
            "dtype": DTYPES[t.dtype],
            "shape": list(t.shape),
            "sum": math.fsum(values),
            "first": values[:4],
            "fnv1a64": fnv1a64(flat.contiguous().view(torch.uint8).numpy().tobytes()),
            "group": group,
            "offset_bytes": t.storage_offset() * t.element_size(),
        })
    return {"tensors": tensors}


def error(kind, *contains):
    return {"error": {"kind": kind, "contains": list(contains)}}


def torch_bytes(obj, **kw):
    """torch.save into memory: the archive folder is then named 'archive'."""
    buf = io.BytesIO()
    torch.save(obj, buf, **kw)
    return buf.getvalue()


def zip_entries(data: bytes):
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return [(i.filename, z.read(i.filename)) for i in z.infolist()]


def write_zip(path, entries, compress=()):
    """A plain zip written by Python: no 64-byte alignment, optionally deflating some entries."""
    with zipfile.ZipFile(path, "w") as z:
        for name, data in entries:
            method = zipfile.ZIP_DEFLATED if name in compress else zipfile.ZIP_STORED
            z.writestr(zipfile.ZipInfo(name), data, compress_type=method)


def write_zip64(path, entries, comment=b""):
    """A stored zip whose every size and offset goes through ZIP64 records, as in checkpoints > 4 GB,
    with data 64-byte aligned like torch's writer does."""
    out = bytearray()
    central = bytearray()
    for name, data in entries:
        raw_name = name.encode()
        crc = zlib.crc32(data)
        offset = len(out)
        zip64_local = struct.pack("<HHQQ", 1, 16, len(data), len(data))
        pad = (-(offset + 30 + len(raw_name) + len(zip64_local) + 4)) % 64
        extra = zip64_local + struct.pack("<HH", 0xCAFE, pad) + b"\0" * pad
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 45, 0, 0, 0, 0x21, crc, 0xFFFFFFFF, 0xFFFFFFFF,
                           len(raw_name), len(extra))
        out += raw_name + extra
        assert len(out) % 64 == 0
        out += data
        zip64_central = struct.pack("<HHQQQ", 1, 24, len(data), len(data), offset)
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 45, 45, 0, 0, 0, 0x21, crc, 0xFFFFFFFF,
                               0xFFFFFFFF, len(raw_name), len(zip64_central), 0, 0, 0, 0, 0xFFFFFFFF)
        central += raw_name + zip64_central
    cd_offset = len(out)
    out += central
    eocd64 = len(out)
    out += struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, len(entries), len(entries), len(central),
                       cd_offset)
    out += struct.pack("<IIQI", 0x07064B50, 0, eocd64, 1)
    out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, len(comment))
    out += comment
    with open(path, "wb") as f:
        f.write(out)


class TinyMamba(torch.nn.Module):
    """Names and layout like a mamba_ssm Mamba2 checkpoint, with the LM head tied to the embedding."""

    def __init__(self):
        super().__init__()
        self.backbone = torch.nn.Module()
        self.backbone.embedding = torch.nn.Embedding(8, 4)
        layer = torch.nn.Module()
        layer.mixer = torch.nn.Module()
        layer.mixer.in_proj = torch.nn.Linear(4, 6, bias=False)
        layer.mixer.conv1d = torch.nn.Conv1d(2, 2, 4, groups=2)
        layer.mixer.A_log = torch.nn.Parameter(torch.randn(2))
        layer.mixer.D = torch.nn.Parameter(torch.ones(2))
        layer.norm = torch.nn.LayerNorm(4)
        self.backbone.layers = torch.nn.ModuleList([layer])
        self.lm_head = torch.nn.Linear(4, 8, bias=False)
        self.lm_head.weight = self.backbone.embedding.weight


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    expected = {}

    def save(name, obj, expect, **kw):
        torch.save(obj, os.path.join(OUT, name), **kw)
        expected[name] = expect

    dtypes = {
        "w32": torch.randn(3, 4),
        "w16": torch.randn(2, 3).half(),
        "wbf": torch.randn(5).bfloat16(),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 3),
        "column": torch.randn(4, 1),
    }
    save("dtypes.pt", dtypes, describe(dtypes))
    save("proto4.pt", dtypes, describe(dtypes), pickle_protocol=4)

    model = TinyMamba().to(torch.float16)
    sd = model.state_dict()
    save("module_state_dict.pt", sd, describe(sd))

    e = torch.randn(6, 3)
    tied = {"embedding.weight": e, "lm_head.weight": e}
    save("tied.pt", tied, describe(tied))

    base = torch.arange(20, dtype=torch.float32).reshape(4, 5)
    views = {"row2": base[2], "rows1to3": base[1:3], "base": base, "tail": base.view(-1)[13:]}
    save("views.pt", views, describe(views))

    inner = {"a": torch.randn(2, 2), "b": torch.randn(3).bfloat16()}
    save("nested_state_dict.pt", {"state_dict": inner}, describe(inner))
    ordered = collections.OrderedDict([("z", torch.randn(2)), ("a", torch.randn(1, 2).half())])
    save("ordered_dict.pt", ordered, describe(ordered))
    params = {"p": torch.nn.Parameter(torch.randn(3))}
    save("parameter.pt", params, describe({"p": params["p"].detach()}))

    with open(os.path.join(OUT, "archive_prefix.pt"), "wb") as f:
        f.write(torch_bytes(dtypes))
    expected["archive_prefix.pt"] = describe(dtypes)
    write_zip64(os.path.join(OUT, "zip64.pt"), zip_entries(torch_bytes(sd)), comment=b"ZIP64 repack")
    expected["zip64.pt"] = describe(sd)

    # Refused, each with its own message.
    save("int64.pt", {"w": torch.randn(2), "ids": torch.arange(5)}, error("unsupported", "'ids'", "int64"))
    save("float64.pt", {"d": torch.randn(2, dtype=torch.float64)}, error("unsupported", "'d'", "float64"))
    save("forbidden_global.pt", {"w": torch.randn(2), "cfg": Opaque()},
         error("unsupported", "__main__.Opaque", "not a plain tensor state_dict"))
    save("noncontiguous.pt", {"t": torch.randn(2, 3).t()}, error("unsupported", "'t'", "not contiguous"))
    save("neg_view.pt", {"n": torch.ones(3)._neg_view()}, error("unsupported", "'n'", "neg"))
    save("training_checkpoint.pt", {"model": inner, "epoch": 3}, error("unsupported", "'model'", "not a tensor"))
    save("legacy.pt", dtypes, error("unsupported", "legacy torch format", "_use_new_zipfile_serialization=True"),
         _use_new_zipfile_serialization=False)

    good = zip_entries(torch_bytes(dtypes))
    with open(os.path.join(OUT, "truncated.pt"), "wb") as f:
        f.write(torch_bytes(dtypes)[:900])
    expected["truncated.pt"] = error("format", "truncated")
    write_zip(os.path.join(OUT, "compressed.pt"), good, compress={"archive/data.pkl", "archive/data/0"})
    expected["compressed.pt"] = error("unsupported", "archive/data.pkl", "compressed")
    write_zip(os.path.join(OUT, "big_endian.pt"),
              [(n, b"big" if n.endswith("/byteorder") else d) for n, d in good])
    expected["big_endian.pt"] = error("unsupported", "byteorder 'big'")
    write_zip(os.path.join(OUT, "short_storage.pt"), [(n, d[:8] if n == "archive/data/0" else d) for n, d in good])
    expected["short_storage.pt"] = error("format", "'w32'", "does not fit")
    write_zip(os.path.join(OUT, "missing_storage.pt"), [(n, d) for n, d in good if n != "archive/data/1"])
    expected["missing_storage.pt"] = error("format", "'w16'", "archive/data/1")
    # A pickle that would run a shell command under pickle.load.
    evil = b"\x80\x02cos\nsystem\nq\x00X\x04\x00\x00\x00trueq\x01\x85q\x02Rq\x03."
    write_zip(os.path.join(OUT, "os_system.pt"), [("archive/data.pkl", evil), ("archive/byteorder", b"little")])
    expected["os_system.pt"] = error("unsupported", "os.system")
    with open(os.path.join(OUT, "not_a_checkpoint.pt"), "wb") as f:
        f.write(b"{\"hello\": \"this is json\"}\n")
    expected["not_a_checkpoint.pt"] = error("format", "not a torch checkpoint")

    # Sanity: torch itself reads what the reader must accept, with the contents described.
    for name, expect in expected.items():
        if "tensors" not in expect:
            continue
        loaded = torch.load(os.path.join(OUT, name), weights_only=False)  # our own files; proto4 needs it
        if len(loaded) == 1 and isinstance(next(iter(loaded.values())), dict):
            loaded = next(iter(loaded.values()))
        assert describe(loaded) == expect, name

    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, sort_keys=True)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(OUT, n)) for n in os.listdir(OUT))
    print(f"wrote {len(expected)} fixtures, {total} bytes, to {OUT}")


if __name__ == "__main__":
    main()
