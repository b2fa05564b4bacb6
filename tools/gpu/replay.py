#!/usr/bin/env python3
"""Replays a MetalCompat trace (tools/gpu/trace.ts) on an NVIDIA GPU through the CUDA driver API.

The heap is rebuilt from the trace's load-time fills (bytes in the trace, or checkpoint tensors regenerated
from the seed of tools/make_bench_models.ts by libbench_weights.so, each checked by CRC-32), then every
command buffer runs as encoded: the host writes before it, then its dispatches, with the kernels the
traced pipelines name (cubins built by tools/gpu/build.ts, one per .metal file, one __global__ per
specialization). Dispatches between two barriers of a concurrent encoder go to different streams, so a
missing barrier can show; `--serial` runs everything on one stream.

  python3 tools/gpu/replay.py parity  --build B --trace DIR [--against reference,metalcompat] [--json OUT]
  python3 tools/gpu/replay.py time    --build B --trace DIR [--json OUT]     per-kernel and per-token timings
  python3 tools/gpu/replay.py parity  --build B --trace DIR --bug FILE=PLANTED [--simd-check]  a planted bug

Options for tuning work (issue 12, item 5): --override FILE:INDEX=VALUE (a function constant of every
pipeline of FILE; the specialization must exist in the build, which --compile makes on the device with
nvcc), --tuning JSON (configs/metal_tune.json params: documents what the trace was made with).

Only Python 3, numpy and libcuda are needed (no Swift, no Deno): what the device machine has.
"""
import argparse
import base64
import bisect
import gzip
import ctypes
import json
import math
import os
import struct
import subprocess
import sys
import time
import zlib

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))

# ---- the CUDA driver API ------------------------------------------------------------------------------


class CudaError(RuntimeError):
    pass


class Driver:
    """The few driver calls the replay needs, with every return code checked."""

    def __init__(self, lib=None):
        self.lib = lib if lib is not None else ctypes.CDLL("libcuda.so.1")
        self.check(self.lib.cuInit(0), "cuInit")
        dev = ctypes.c_int()
        self.check(self.lib.cuDeviceGet(ctypes.byref(dev), 0), "cuDeviceGet")
        self.dev = dev.value
        ctx = ctypes.c_void_p()
        self.check(self.lib.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev), "cuDevicePrimaryCtxRetain")
        self.check(self.lib.cuCtxSetCurrent(ctx), "cuCtxSetCurrent")
        self.ctx = ctx
        name = ctypes.create_string_buffer(256)
        self.check(self.lib.cuDeviceGetName(name, 256, dev), "cuDeviceGetName")
        self.name = name.value.decode()
        sms = ctypes.c_int()
        self.check(self.lib.cuDeviceGetAttribute(ctypes.byref(sms), 16, dev), "SM count")  # MULTIPROCESSOR_COUNT
        self.sms = sms.value
        self.lib.cuMemAlloc_v2.argtypes = [ctypes.POINTER(ctypes.c_uint64), ctypes.c_size_t]
        self.lib.cuMemcpyHtoD_v2.argtypes = [ctypes.c_uint64, ctypes.c_void_p, ctypes.c_size_t]
        self.lib.cuMemcpyDtoH_v2.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_size_t]
        self.lib.cuMemcpyDtoD_v2.argtypes = [ctypes.c_uint64, ctypes.c_uint64, ctypes.c_size_t]
        self.lib.cuMemcpyHtoDAsync_v2.argtypes = [ctypes.c_uint64, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
        self.lib.cuMemcpyDtoDAsync_v2.argtypes = [ctypes.c_uint64, ctypes.c_uint64, ctypes.c_size_t, ctypes.c_void_p]
        self.lib.cuMemsetD8_v2.argtypes = [ctypes.c_uint64, ctypes.c_ubyte, ctypes.c_size_t]
        self.lib.cuMemFree_v2.argtypes = [ctypes.c_uint64]
        self.lib.cuLaunchKernel.argtypes = [ctypes.c_void_p] + [ctypes.c_uint] * 7 + [
            ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        self.lib.cuModuleGetGlobal_v2.argtypes = [ctypes.POINTER(ctypes.c_uint64), ctypes.POINTER(ctypes.c_size_t),
                                                  ctypes.c_void_p, ctypes.c_char_p]

    def check(self, rc, what):
        if rc != 0:
            s = ctypes.c_char_p()
            try:
                self.lib.cuGetErrorString(rc, ctypes.byref(s))
            except Exception:  # noqa: BLE001 - a fake driver in tests
                pass
            raise CudaError(f"{what}: CUDA error {rc} ({s.value.decode() if s.value else '?'})")

    def alloc(self, n):
        p = ctypes.c_uint64()
        self.check(self.lib.cuMemAlloc_v2(ctypes.byref(p), max(int(n), 1)), f"cuMemAlloc({n})")
        return p.value

    def free(self, p):
        self.check(self.lib.cuMemFree_v2(p), "cuMemFree")

    def htod(self, dst, array):
        a = np.ascontiguousarray(array)
        self.check(self.lib.cuMemcpyHtoD_v2(dst, a.ctypes.data, a.nbytes), "cuMemcpyHtoD")

    def dtoh(self, src, nbytes):
        out = np.empty(nbytes, np.uint8)
        self.check(self.lib.cuMemcpyDtoH_v2(out.ctypes.data, src, nbytes), "cuMemcpyDtoH")
        return out

    def memset(self, dst, value, n):
        self.check(self.lib.cuMemsetD8_v2(dst, value, n), "cuMemsetD8")

    def sync(self):
        self.check(self.lib.cuCtxSynchronize(), "cuCtxSynchronize (a kernel failed)")

    def module(self, path):
        m = ctypes.c_void_p()
        self.check(self.lib.cuModuleLoad(ctypes.byref(m), path.encode()), f"cuModuleLoad({path})")
        return m

    def function(self, module, name):
        f = ctypes.c_void_p()
        self.check(self.lib.cuModuleGetFunction(ctypes.byref(f), module, name.encode()), f"cuModuleGetFunction({name})")
        return f

    def global_addr(self, module, name):
        p, n = ctypes.c_uint64(), ctypes.c_size_t()
        rc = self.lib.cuModuleGetGlobal_v2(ctypes.byref(p), ctypes.byref(n), module, name.encode())
        return (p.value, n.value) if rc == 0 else (None, 0)

    def stream(self):
        s = ctypes.c_void_p()
        self.check(self.lib.cuStreamCreate(ctypes.byref(s), 1), "cuStreamCreate")  # non-blocking
        return s

    def event(self, timing=True):
        e = ctypes.c_void_p()
        self.check(self.lib.cuEventCreate(ctypes.byref(e), 0 if timing else 2), "cuEventCreate")
        return e

    def record(self, event, stream):
        self.check(self.lib.cuEventRecord(event, stream), "cuEventRecord")

    def wait(self, stream, event):
        self.check(self.lib.cuStreamWaitEvent(stream, event, 0), "cuStreamWaitEvent")

    def elapsed_ms(self, a, b):
        self.check(self.lib.cuEventSynchronize(b), "cuEventSynchronize")
        ms = ctypes.c_float()
        self.check(self.lib.cuEventElapsedTime(ctypes.byref(ms), a, b), "cuEventElapsedTime")
        return ms.value

    def launch(self, f, grid, block, shmem, stream, params):
        self.check(self.lib.cuLaunchKernel(f, grid[0], grid[1], grid[2], block[0], block[1], block[2], shmem, stream,
                                           params, None), "cuLaunchKernel")

    def set_shared(self, f, nbytes):
        if nbytes > 48 * 1024:  # CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
            self.check(self.lib.cuFuncSetAttribute(f, 8, nbytes), "cuFuncSetAttribute")

    def begin_capture(self, stream):
        self.check(self.lib.cuStreamBeginCapture_v2(stream, 2), "cuStreamBeginCapture")  # relaxed mode

    def end_capture(self, stream):
        g = ctypes.c_void_p()
        self.check(self.lib.cuStreamEndCapture(stream, ctypes.byref(g)), "cuStreamEndCapture")
        ge = ctypes.c_void_p()
        self.check(self.lib.cuGraphInstantiateWithFlags(ctypes.byref(ge), g, ctypes.c_ulonglong(0)),
                   "cuGraphInstantiate")
        return ge

    def graph_launch(self, ge, stream):
        self.check(self.lib.cuGraphLaunch(ge, stream), "cuGraphLaunch")


# ---- the trace ----------------------------------------------------------------------------------------


class Trace:
    """A trace.jsonl, parsed: heap, buffers by label, fills, pipelines, command buffers (each with the host
    writes that preceded its commit)."""

    def __init__(self, directory):
        self.dir = directory
        self.heaps, self.buffers, self.fills, self.pipelines, self.cbs = {}, {}, [], {}, []
        self.unsupported = []
        cb, writes = None, []
        path = os.path.join(directory, "trace.jsonl")
        opener = (lambda: open(path)) if os.path.exists(path) else (lambda: gzip.open(path + ".gz", "rt"))
        with opener() as f:
            for line in f:
                e = json.loads(line)
                ev = e["ev"]
                if ev == "heap":
                    self.heaps[e["id"]] = e["size"]
                elif ev == "buffer":
                    self.buffers[e["label"]] = (e["offset"], e["length"])
                elif ev == "fill":
                    self.fills.append(e)
                elif ev == "pipeline":
                    self.pipelines[e["id"]] = e
                elif ev == "write":
                    writes.append(e)
                elif ev == "commit":
                    cb = {"index": e["cb"], "writes": writes, "items": []}
                    writes = []
                    self.cbs.append(cb)
                elif ev in ("dispatch", "barrier", "encoder"):
                    cb["items"].append(e)
                elif ev == "unsupported":
                    self.unsupported.append(e["what"])
        if len(self.heaps) != 1:
            raise ValueError(f"{directory}: expected one heap, found {len(self.heaps)}")
        self.heap_size = self.heaps[0]
        self.session = json.load(open(os.path.join(directory, "session.json")))

    def config(self):
        return self.session["info"]["config"]


def spec_key(file, constants):
    """Same canonical text and FNV-1a as tools/gpu/build.ts specId (floats by their float32 bits)."""
    parts = []
    for c in constants:
        if "value" not in c and "bits" not in c:
            continue
        v = c.get("value")
        if c["type"] == 3:
            v = c["bits"] if "bits" in c else struct.unpack("<I", struct.pack("<f", v))[0]
        elif isinstance(v, bool):
            v = int(v)
        parts.append(f"{c['index']}:{c['type']}:{v}")
    text = file + "|" + ",".join(parts)
    h = 0x811C9DC5
    for ch in text.encode("utf-16-le")[::2]:  # JS charCodeAt of ASCII text
        h = ((h ^ ch) * 0x01000193) & 0xFFFFFFFF
    return f"{h:08x}"


# ---- the heap -----------------------------------------------------------------------------------------


def ts_half(x):
    """float32 → f16 bits as tools/make_bench_models.ts's toHalf rounds (it flushes |x| < 2^-24 to 0)."""
    h = x.astype(np.float16).view(np.uint16).copy()
    b = x.view(np.uint32)
    tiny = ((b >> 23) & 0xFF) < 103
    h[tiny] = ((b[tiny] >> 16) & 0x8000).astype(np.uint16)
    return h


class BenchWeights:
    """Large tensors of a benchmark model, regenerated from make_bench_models.ts's seed."""

    def __init__(self, shape, stored_dtype):
        self.shape, self.stored = shape, stored_dtype
        so = os.environ.get("BENCH_WEIGHTS_LIB", os.path.join(HERE, "libbench_weights.so"))
        if not os.path.exists(so):
            subprocess.check_call(["cc", "-O2", "-shared", "-fPIC", "-ffp-contract=off", "-o", so,
                                   os.path.join(HERE, "bench_weights.c"), "-lm"])
        self.lib = ctypes.CDLL(so)
        self.lib.bench_fill.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_int64]

    def bytes(self, name, dtype, length):
        n = length // (2 if dtype == "f16" else 4)
        out = np.empty(n, np.float32)
        rc = self.lib.bench_fill(self.shape.encode(), name.encode(), out.ctypes.data, n)
        if rc != 0:
            raise ValueError(f"bench weights: cannot make {name} ({n} elements) for {self.shape}: {rc}")
        if dtype == "f32":
            return out.view(np.uint8)
        # A f16 model stores make_bench_models.ts's rounding; converted at load, Swift's (round to nearest).
        return (ts_half(out) if self.stored == "f16" else out.astype(np.float16).view(np.uint16)).view(np.uint8)


def bench_identity(session):
    """('130m', 'f16') for a session of a benchmark model (mamba2-130m-f16), else None."""
    name = session.get("model", "")
    parts = name.split("-")
    if len(parts) == 3 and parts[0] == "mamba2" and parts[1] in ("130m", "780m"):
        return parts[1], parts[2]
    return None


def heap_regions(trace):
    """(offset, uint8 array) of everything the host put into the heap at load, CRC-checked."""
    weights = None
    for f in trace.fills:
        if f.get("zero"):
            yield f["offset"], None, f["length"]
            continue
        if "bytes" in f:
            data = np.frombuffer(base64.b64decode(f["bytes"]), np.uint8)
        elif "blob" in f:  # prepare.ts moved the bytes into a shared, content-addressed file
            data = np.fromfile(os.path.join(trace.dir, "..", "..", "blobs", f["blob"]), np.uint8)
        else:
            if weights is None:
                ident = bench_identity(trace.session)
                if ident is None:
                    raise ValueError(f"{trace.dir}: tensor fill {f['tensor']} but the model is not a bench model")
                weights = BenchWeights(*ident)
            data = weights.bytes(f["tensor"], f["dtype"], f["length"])
        if len(data) != f["length"] or zlib.crc32(data) != f["crc32"]:
            raise ValueError(f"{trace.dir}: the rebuilt fill at heap offset {f['offset']} "
                             f"({f.get('tensor', 'bytes')}) does not match the trace's CRC")
        yield f["offset"], data, f["length"]


# ---- kernels ------------------------------------------------------------------------------------------


def constant_decl(c, v):
    """A function constant of a specialization, as emit_cuda.ts declares it (floats as hex literals)."""
    t = c["type"].replace("const", "").strip()
    name = c["name"]
    if v is None or ("value" not in v and "bits" not in v):
        zero = "0.0f" if t == "float" else "false" if t == "bool" else "0"
        return [f"constexpr {t} {name} = {zero};", f"constexpr bool mc_fc_defined_{name} = false;"]
    if t == "float":
        x = struct.unpack("<f", struct.pack("<I", v["bits"]))[0] if "bits" in v else float(v["value"])
        if math.isinf(x):
            lit = "__builtin_inff()" if x > 0 else "(-__builtin_inff())"
        else:
            lit = '__builtin_nanf("")' if math.isnan(x) else float.hex(x) + "f"
    elif t == "bool":
        lit = "true" if v["value"] else "false"
    else:
        lit = str(int(v["value"]))
    return [f"constexpr {t} {name} = {lit};", f"constexpr bool mc_fc_defined_{name} = true;"]


def override(c, value):
    """A function constant with another value (floats: their bits as well)."""
    c = dict(c, value=value)
    if c["type"] == 3:
        c["bits"] = struct.unpack("<I", struct.pack("<f", float(value)))[0]
    return c


class Args(ctypes.Structure):
    """mc::args of tools/gpu/cuda/metal_cuda.h."""
    _fields_ = [("buffers", ctypes.c_uint64 * 31), ("tg_offset", ctypes.c_uint32 * 4),
                ("grid_threads", ctypes.c_uint32 * 3), ("site", ctypes.c_uint32)]


class Kernels:
    def __init__(self, driver, build, simd_check=False, planted=None):
        self.d, self.build = driver, build
        self.manifest = json.load(open(os.path.join(build, "kernels.json")))
        self.modules, self.cache = {}, {}
        self.simd_check = simd_check
        self.planted = planted or {}  # file → planted variant's file

    def module(self, file):
        key = (file, self.simd_check)
        if key not in self.modules:
            entry = self.manifest["files"].get(file)
            if entry is None:
                raise KeyError(f"{file} is not in {self.build}/kernels.json")
            target = entry["simdCubin" if self.simd_check else "cubin"]
            self.modules[key] = self.d.module(os.path.join(self.build, target))
        return self.modules[key]

    def compile(self, pipelines, nvcc="nvcc"):
        """Compiles the specializations of `pipelines` (overrides applied) missing from the build, with this
        machine's nvcc, from the views and wrapper templates build.ts left in kernels.json."""
        missing = {}
        for p in pipelines:
            entry = self.manifest["files"][p["file"]]
            sid = spec_key(p["file"], p["constants"])
            if not any(x["id"] == sid for x in entry["specializations"]):
                missing.setdefault(p["file"], {})[sid] = p["constants"]
        for file, specs in missing.items():
            entry = self.manifest["files"][file]
            text = ['#include "metal_cuda.h"']
            for sid, constants in specs.items():
                text.append(f"namespace msl {{ namespace s_{sid} {{")
                for c in entry["constants"]:
                    v = next((x for x in constants if x["index"] == c["index"]), None)
                    text.extend(constant_decl(c, v))
                text.append(f'#include "{entry["view"]}"')
                text.append("} }")
                text.append(entry["wrappers"].replace("@ID@", sid))
            stem = f"extra_{file.replace('.metal', '')}_{len(self.manifest.get('extra', []))}"
            cu = os.path.join(self.build, "cuda", stem + ".cu")
            with open(cu, "w") as f:
                f.write("\n".join(text) + "\n")
            for suffix, flags in (("", []), (".simd", ["-DMC_CHECK_SIMD"])):
                subprocess.check_call([nvcc, "-std=c++17", "-arch=sm_90", "-O3", "-lineinfo", "-I",
                                       os.path.join(self.build, "cuda"), "-diag-suppress", "177,550", "-cubin",
                                       "-o", os.path.join(self.build, stem + suffix + ".cubin"), cu] + flags)
            for sid in specs:
                entry["specializations"].append({
                    "id": sid, "cubin": stem + ".cubin", "simdCubin": stem + ".simd.cubin",
                    "symbols": {k: f"mck_{sid}_{k}" for k in entry["kernels"]}})
            self.manifest.setdefault("extra", []).append(stem)
            print(f"compiled {len(specs)} specialization(s) of {file} into {stem}.cubin", flush=True)

    def module_of(self, file, spec):
        target = spec.get("simdCubin" if self.simd_check else "cubin")
        if target is None:
            return self.module(file)
        key = (target, self.simd_check)
        if key not in self.modules:
            self.modules[key] = self.d.module(os.path.join(self.build, target))
        return self.modules[key]

    def function(self, pipeline, overrides=None):
        file = self.planted.get(pipeline["file"], pipeline["file"])
        constants = pipeline["constants"]
        if overrides:
            constants = [override(c, overrides[(pipeline["file"], c["index"])])
                         if (pipeline["file"], c["index"]) in overrides else c for c in constants]
        sid = spec_key(pipeline["file"], constants)
        key = (file, sid, pipeline["function"], self.simd_check)
        if key not in self.cache:
            entry = self.manifest["files"][file]
            spec = next((s for s in entry["specializations"] if s["id"] == sid), None)
            if spec is None:
                raise KeyError(f"no specialization {sid} of {file} in the build (pipeline {pipeline['function']}); "
                               "rebuild with tools/gpu/build.ts --traces …")
            self.cache[key] = self.d.function(self.module_of(file, spec), spec["symbols"][pipeline["function"]])
        return self.cache[key]

    def report(self):
        """MC_CHECK_SIMD reports of every loaded check-mode module: [(count, line, site, block)]."""
        out = []
        for (file, simd), m in self.modules.items():
            if not simd:
                continue
            addr, n = self.d.global_addr(m, "_ZN5metal9mc_reportE")
            if addr:
                v = self.d.dtoh(addr, 16).view(np.uint32)
                out.append({"file": file, "violations": int(v[0]), "line": int(v[1]), "site": int(v[2]),
                            "block": int(v[3])})
        return out


# ---- replay -------------------------------------------------------------------------------------------


class Launch:
    __slots__ = ("f", "grid", "block", "shmem", "args", "params", "name", "pipeline", "barrier_before", "site")


class Replay:
    def __init__(self, driver, kernels, trace, streams=4, serial=False, overrides=None, poison=True, split=False):
        """split: one allocation per heap buffer instead of one heap, so that memcheck sees an access past a
        buffer's end (inside one heap it would land in the next buffer)."""
        self.d, self.k, self.t = driver, kernels, trace
        if trace.unsupported:
            raise ValueError(f"{trace.dir}: the trace has events the replay cannot reproduce: {trace.unsupported[:3]}")
        self.serial = serial
        if split:
            self.regions = sorted((off, length, driver.alloc(length)) for off, length in trace.buffers.values())
            self.allocations = [r[2] for r in self.regions]
        else:
            self.heap = driver.alloc(trace.heap_size + 4096)
            self.regions = [(0, trace.heap_size, self.heap)]
            self.allocations = [self.heap]
        self.starts = [r[0] for r in self.regions]
        if poison:
            for off, length, ptr in self.regions:
                driver.memset(ptr, 0xFF, length)  # unwritten memory reads as NaN
        for offset, data, length in heap_regions(trace):
            if data is None:
                driver.memset(self.addr(offset, length), 0, length)
            else:
                driver.htod(self.addr(offset, length), data)
        self.streams = [driver.stream() for _ in range(1 if serial else max(1, streams))]
        self.join = [driver.event(timing=False) for _ in range(64)]
        self.scratch = []
        self.cbs = [self.prepare(cb, overrides) for cb in trace.cbs]

    def prepare(self, cb, overrides):
        launches, barrier, serial_encoder = [], True, False
        for item in cb["items"]:
            if item["ev"] == "encoder":
                serial_encoder = item["type"] == "serial"
                barrier = True
                continue
            if item["ev"] == "barrier":
                barrier = True
                continue
            p = self.t.pipelines[item["p"]]
            L = Launch()
            L.f = self.k.function(p, overrides)
            L.name, L.pipeline = p["function"], p
            a = Args()
            for index, heap, offset in item["buffers"]:
                a.buffers[index] = self.addr(offset)
            for index, data in item["bytes"]:
                raw = np.frombuffer(base64.b64decode(data), np.uint8)
                dev = self.d.alloc(max(len(raw), 16))
                self.d.htod(dev, raw)
                self.scratch.append(dev)
                a.buffers[index] = dev
            shmem = 0
            for index, n in sorted(item["tgmem"]):
                a.tg_offset[index] = shmem
                shmem += (n + 15) // 16 * 16
            tg = item["tg"]
            if item["threads"]:
                a.grid_threads[:] = item["grid"]
                L.grid = [max(1, (g + t - 1) // t) for g, t in zip(item["grid"], tg)]
            else:
                L.grid = list(item["grid"])
            a.site = len(launches)
            L.site = a.site
            L.block, L.shmem, L.args = tg, shmem, a
            L.params = (ctypes.c_void_p * 1)(ctypes.cast(ctypes.pointer(a), ctypes.c_void_p))
            self.d.set_shared(L.f, shmem)
            L.barrier_before = barrier or serial_encoder or self.serial
            barrier = False
            launches.append(L)
        return {"writes": cb["writes"], "launches": launches}

    def host_writes(self, cb):
        for w in cb["writes"]:
            if "zero" in w:
                self.d.memset(self.addr(w["offset"], w["zero"]), 0, w["zero"])
            else:
                data = np.frombuffer(base64.b64decode(w["bytes"]), np.uint8)
                self.d.htod(self.addr(w["offset"], len(data)), data)

    def encode(self, launches, stream0=None):
        """Issues launches. Between two barriers they take turns over the streams (forked from the main
        stream at the barrier); a barrier joins every side stream back into the main one."""
        s = self.streams
        main = stream0 if stream0 is not None else s[0]
        side = lambda i: main if i == 0 else s[i]  # noqa: E731
        ring = iter(range(1 << 30))
        ev = lambda: self.join[next(ring) % len(self.join)]  # noqa: E731
        used, turn, fork = {0}, 0, None
        if len(s) > 1:  # the launches may begin without a barrier (a group cut out of a command buffer)
            fork = ev()
            self.d.record(fork, main)
        for L in launches:
            if L.barrier_before:
                for i in used - {0}:
                    e = ev()
                    self.d.record(e, side(i))
                    self.d.wait(main, e)
                used, turn, fork = {0}, 0, None
                if len(s) > 1:  # where side streams start from: this barrier, before its first launch
                    fork = ev()
                    self.d.record(fork, main)
            i = turn % len(s)
            turn += 1
            if i not in used:
                self.d.wait(side(i), fork)
                used.add(i)
            self.d.launch(L.f, L.grid, L.block, L.shmem, side(i), L.params)
        for i in used - {0}:
            e = ev()
            self.d.record(e, side(i))
            self.d.wait(main, e)

    def run_cb(self, index):
        cb = self.cbs[index]
        self.host_writes(cb)
        self.encode(cb["launches"])
        self.d.sync()

    def addr(self, offset, length=0):
        """Device address of heap offset `offset` (the range [offset, offset + length) must lie in one buffer)."""
        i = bisect.bisect_right(self.starts, offset) - 1
        start, size, ptr = self.regions[max(i, 0)]
        if i < 0 or offset + length > start + size:
            raise ValueError(f"{self.t.dir}: heap offset {offset} (+{length}) is not inside a traced buffer")
        return ptr + (offset - start)

    def close(self):
        self.d.sync()
        for p in self.allocations + self.scratch:
            self.d.free(p)
        self.scratch = []

    def read(self, label):
        offset, length = self.t.buffers[label]
        return self.d.dtoh(self.addr(offset, length), length)


# ---- results and comparison ---------------------------------------------------------------------------


def f32(b64):
    return np.frombuffer(base64.b64decode(b64), np.float32)


def saved_state(replay, seq):
    """The sequence's state in saveState's layout (conv oldest first, then SSM), from the heap."""
    c = replay.t.config()
    B = replay.t.session["batch"]
    L, K = c["nLayer"], c["dConv"]
    d_inner = c["nHeads"] * c["headDim"]
    conv_dim = d_inner + 2 * c["nGroups"] * c["dState"]
    conv = replay.read("conv_state").view(np.float32).reshape(B, L * conv_dim, K)[seq]
    pos = int(replay.read("conv_pos").view(np.uint32)[seq])
    order = [(pos + 1 + j) % K for j in range(K)]
    ssm = replay.read("ssm_state").view(np.float32).reshape(B, -1)[seq]
    return np.concatenate([conv[:, order].reshape(-1), ssm])


def compare(observed, reference, tol):
    """max|Δ| / max|ref| of each part; passes when every part is within tol."""
    parts = {}

    def rel(a, b):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        if not np.all(np.isfinite(a)):
            return float("inf")
        scale = max(float(np.max(np.abs(b))), 1e-30)
        return float(np.max(np.abs(a - b))) / scale

    for p_obs, p_ref in zip(observed["prefill"], reference["prefill"]):
        parts[f"prefill logits seq {p_ref['seq']} ({p_ref['tokens']} tokens)"] = rel(f32(p_obs["logits"]),
                                                                                     f32(p_ref["logits"]))
    parts["logits after the steps (all rows)"] = rel(f32(observed["final"]["logits"]),
                                                     f32(reference["final"]["logits"]))
    for s_obs, s_ref in zip(observed["state"], reference["state"]):
        parts[f"state seq {s_ref['seq']} (samples)"] = rel(f32(s_obs["samples"]), f32(s_ref["samples"]))
        n_obs = np.array(s_obs["convNorms"] + s_obs["ssmNorms"])
        n_ref = np.array(s_ref["convNorms"] + s_ref["ssmNorms"])
        parts[f"state seq {s_ref['seq']} (per-layer norms)"] = float(
            np.max(np.abs(n_obs - n_ref) / np.maximum(np.abs(n_ref), 1e-30)))
    worst = max(parts.values())
    return {"tolerance": tol, "worst": worst, "pass": bool(worst <= tol), "parts": parts}


def run_session(replay, record_cb=None):
    """Runs every command buffer; returns results in trace.ts's format (logits after each prefill,
    after the last step, final state samples and norms)."""
    t, s = replay.t, replay.t.session
    c = t.config()
    vocab = s["info"]["vocab"]
    out = {"backend": "cuda", "vocab": vocab, "batch": s["batch"], "prefill": [], "final": {}, "state": []}
    cb_done = 0
    for op in s["ops"]:
        for i in range(op["cb"][0], op["cb"][1]):
            replay.run_cb(i)
            if record_cb:
                record_cb(i)
            cb_done = i + 1
        if op["op"] == "prefill":
            row = replay.read("logits").view(np.float32).reshape(s["batch"], -1)[op["seq"], :vocab]
            stride = 7 if row.size > 4096 else 1  # as trace.ts samples them
            out["prefill"].append({"seq": op["seq"], "tokens": op["tokens"], "stride": stride,
                                   "logits": base64.b64encode(np.ascontiguousarray(row[::stride]).tobytes()).decode()})
    for i in range(cb_done, len(replay.cbs)):
        replay.run_cb(i)
    logits = replay.read("logits").view(np.float32).reshape(s["batch"], -1)[:, :vocab]
    out["final"]["logits"] = base64.b64encode(np.ascontiguousarray(logits).tobytes()).decode()
    L = c["nLayer"]
    for seq in range(s["batch"]):
        st = saved_state(replay, seq)
        ref_stride = None
        conv_floats = st.size - L * c["nHeads"] * c["headDim"] * c["dState"]
        stride = max(1, math.ceil(st.size / 32768)) | 1
        ref_stride = stride
        per_conv, per_ssm = conv_floats // L, (st.size - conv_floats) // L
        out["state"].append({
            "seq": seq, "floats": int(st.size), "stride": ref_stride,
            "samples": base64.b64encode(st[::stride].astype(np.float32).tobytes()).decode(),
            "convFloats": int(conv_floats), "layers": L,
            "convNorms": [float(np.linalg.norm(st[l * per_conv:(l + 1) * per_conv].astype(np.float64)))
                          for l in range(L)],
            "ssmNorms": [float(np.linalg.norm(st[conv_floats + l * per_ssm:conv_floats + (l + 1) * per_ssm]
                                              .astype(np.float64))) for l in range(L)],
        })
    return out


def tolerance(trace, against):
    if against == "metalcompat":
        return 1e-5
    return 2e-3 if trace.session.get("dtype_of_weights", weights_dtype(trace)) == "f16" else 1e-4


def weights_dtype(trace):
    ident = bench_identity(trace.session)
    if ident:
        return ident[1]
    halves = [p for p in trace.pipelines.values() if p["function"] == "matvec"
              and any(c["name"] == "MV_HALF" and c.get("value") for c in p["constants"])]
    return "f16" if halves else "f32"


# ---- timing -------------------------------------------------------------------------------------------


def bytes_of(launch, config, batch):
    """Bytes a dispatch must move through memory at least (each input read once, each output written once)."""
    p = {c["name"]: c.get("value") for c in launch.pipeline["constants"]}
    name = launch.name
    if name == "matvec":
        w = 2 if p["MV_HALF"] else 4
        n, k, b = p["MV_ROWS"], p["MV_COLS"], p["MV_BATCH"]
        y = 4 * b * n * (2 if p["MV_ACCUMULATE"] else 1)
        return n * k * w + 4 * b * k + y + (4 * k if p["MV_NORM"] else 0)
    if name == "ssm_decode_block":
        P, N, H, G = p["SSM_HEAD_DIM"], p["SSM_D_STATE"], p["SSM_HEADS"], p["SSM_GROUPS"]
        K, D = p["SSM_D_CONV"], p["SSM_D_INNER"]
        rows = launch.grid[1]
        conv_dim = D + 2 * G * N
        per_seq = 2 * 4 * H * P * N + 4 * (D + conv_dim + H) + 4 * conv_dim * K * 2 + 4 * D + 4 * H
        return rows * per_seq + 4 * conv_dim * (K + 1) + 12 * H
    if name in ("embedding_gather", "embedding_gather_prompt"):
        w = 2 if p["EMB_HALF"] else 4
        rows = launch.args.grid_threads[1]
        return rows * p["EMB_D_MODEL"] * (w + 4)
    return 0


def time_graph(d, replay, launches, reps=50, warmup=5):
    """Median µs of one replay of `launches` captured as a graph (barrier joins included)."""
    s = replay.streams[0]
    d.begin_capture(s)
    replay.encode(launches, s)
    ge = d.end_capture(s)
    for _ in range(warmup):
        d.graph_launch(ge, s)
    d.sync()
    a, b = d.event(), d.event()
    times = []
    for _ in range(reps):
        d.record(a, s)
        d.graph_launch(ge, s)
        d.record(b, s)
        times.append(d.elapsed_ms(a, b) * 1000.0)
    return float(np.median(times)), float(np.min(times))


def copy_bandwidth(d, nbytes=2 << 30, reps=10):
    """Device-to-device copy, bytes read plus written per second (GB/s), median of `reps`."""
    a, b = d.alloc(nbytes), d.alloc(nbytes)
    d.memset(a, 1, nbytes)
    s = None
    e0, e1 = d.event(), d.event()
    times = []
    for _ in range(reps + 2):
        d.record(e0, s)
        d.check(d.lib.cuMemcpyDtoDAsync_v2(b, a, nbytes, s), "cuMemcpyDtoDAsync")
        d.record(e1, s)
        times.append(d.elapsed_ms(e0, e1))
    d.free(a)
    d.free(b)
    return 2 * nbytes / (float(np.median(times[2:])) * 1e-3) / 1e9


def prefill_bytes(config, tokens, weights_dtype, block=256):
    """Bytes a chunked prefill of `tokens` moves (docs/metal-prefill.md's cost model)."""
    c = config
    D = c["nHeads"] * c["headDim"]
    G, N, H, P, Q = c["nGroups"], c["dState"], c["nHeads"], c["headDim"], c["chunkSize"]
    cd = D + 2 * G * N
    dip = D + cd + H
    wb = 2 if weights_dtype == "f16" else 4
    blocks = math.ceil(tokens / block)
    weights = blocks * c["nLayer"] * wb * (c["dModel"] * dip + D * c["dModel"])
    T = min(tokens, block)
    act = 4 * (3 * c["dModel"] + dip + 2 * cd + 5 * H + 4 * G * N + 2 * G * Q + 5 * D + 4 * H * P * N / Q
               + 2 * H * P * N / T)
    return weights + tokens * c["nLayer"] * act + c["vocabSize"] * c["dModel"] * wb


def timings(d, replay, copy_gbs, prefill=True):
    """Per-token rows: the whole decode step, each kernel role of it, and (`prefill`) a 512-token prefill."""
    t = replay.t
    s, c = t.session, t.config()
    wdt = weights_dtype(t)
    rows = []
    base = {"model": (bench_identity(s) or (s["model"], ""))[0], "dtype": wdt, "batch": s["batch"]}
    steps = [op for op in s["ops"] if op["op"] == "step"]
    # Run the session once (state evolves), then time the last decode step's command buffer.
    run_session(replay)
    step = replay.cbs[steps[-1]["cb"][0]]
    us, best = time_graph(d, replay, step["launches"])
    total_bytes = sum(bytes_of(L, c, s["batch"]) for L in step["launches"])
    rows.append(dict(base, kind="decode_step", us=us, usMin=best, bytes=total_bytes,
                     dispatches=len(step["launches"]), perToken=us / s["batch"]))
    # Per kernel role: in_proj / out_proj / lm_head matvecs, the SSM block, the embedding.
    roles = step_roles(step["launches"], c)
    for role, launches in roles.items():
        ordered = []
        for L in launches:  # each alone: a barrier before every one
            ordered.append(L)
        us_role, best_role = time_graph(d, replay, ordered)
        b = sum(bytes_of(L, c, s["batch"]) for L in launches)
        grid = launches[0].grid
        rows.append(dict(base, kind=role.split(".")[0], role=role.split(".")[-1], us=us_role, usMin=best_role,
                         bytes=b, dispatches=len(launches), usPerDispatch=us_role / len(launches),
                         grid=grid, threadgroup=launches[0].block))
    if not prefill:
        return finish_rows(rows, copy_gbs)
    # Prefill: the first sequence's prompt (512 tokens in the bench sessions), block by block.
    pre = [op for op in s["ops"] if op["op"] == "prefill"][0]
    pre_launches = []
    for i in range(pre["cb"][0], pre["cb"][1]):
        ls = replay.cbs[i]["launches"]
        pre_launches.extend(ls)
    # The count buffer is the same (full blocks) for every block of a 512-token prompt; the replay keeps
    # the last host writes (tokens, count) in place.
    us_pre, best_pre = time_graph(d, replay, pre_launches, reps=20)
    pb = prefill_bytes(c, pre["tokens"], wdt)
    rows.append(dict(base, kind=f"prefill_{pre['tokens']}", us=us_pre, usMin=best_pre, bytes=pb,
                     tokensPerSecond=pre["tokens"] / (us_pre * 1e-6), dispatches=len(pre_launches)))
    # Per kernel in the prefill (first block): µs per dispatch by kernel name.
    by_name = {}
    for L in replay.cbs[pre["cb"][0]]["launches"]:
        key = L.name if L.name != "matmul" else "matmul." + matmul_role(L, c)
        by_name.setdefault(key, []).append(L)
    for name, launches in by_name.items():
        us_k, best_k = time_graph(d, replay, launches, reps=10)
        rows.append(dict(base, kind=name.split(".")[0], role=("prefill " + name.split(".")[-1]) if "." in name
                         else "prefill", us=us_k, usMin=best_k, bytes=0, dispatches=len(launches),
                         usPerDispatch=us_k / len(launches), grid=launches[0].grid, threadgroup=launches[0].block))
    return finish_rows(rows, copy_gbs)


def finish_rows(rows, copy_gbs):
    for r in rows:
        r["us"] = round(r["us"], 2)
        r["GBs"] = round(r["bytes"] / (r["us"] * 1e-6) / 1e9, 1) if r["bytes"] else None
        r["fraction"] = round(r["GBs"] / copy_gbs, 4) if r["GBs"] else None
    return rows


def role_of(L, c):
    """A decode dispatch's role: matvec.in_proj / matvec.out_proj / matvec.lm_head, or the kernel's name."""
    if L.name != "matvec":
        return L.name
    p = {x["name"]: x.get("value") for x in L.pipeline["constants"]}
    return "matvec.lm_head" if p["MV_ROWS"] == c["vocabSize"] else (
        "matvec.out_proj" if p["MV_ACCUMULATE"] else "matvec.in_proj")


def step_roles(launches, c):
    roles = {}
    for L in launches:
        roles.setdefault(role_of(L, c), []).append(L)
    return roles


# ---- tuning sweep (tools/gpu/sweep.ts) -----------------------------------------------------------------

TUNING_OF_ROLE = {"matvec.in_proj": ("matvecRowsPerSimdgroup", "matvecSplitK"),
                  "matvec.lm_head": ("lmHeadRowsPerSimdgroup", "lmHeadSplitK"),
                  "matvec.out_proj": ("outProjRowsPerSimdgroup", "outProjSplitK", "ssmSplit"),
                  "ssm_decode_block": ("ssmSplit",)}


def fills_signature(trace):
    return trace.heap_size, [(f["offset"], f["length"], f["crc32"]) for f in trace.fills]


def sweep(d, kernels, sweep_dir, copy_gbs, reps=50, log=print):
    """Times each candidate trace's last decode step and its roles on one heap per batch size, then
    composes the step from the best choice per role (in_proj, lm_head, and out_proj with the SSM block,
    which share the split) and times the best few compositions."""
    manifest = json.load(open(os.path.join(sweep_dir, "sweep.json")))
    for m in manifest:  # sweeps from before lm_head had its own parameters: it took in_proj's
        m["tuning"].setdefault("lmHeadRowsPerSimdgroup", m["tuning"]["matvecRowsPerSimdgroup"])
        m["tuning"].setdefault("lmHeadSplitK", m["tuning"]["matvecSplitK"])
    out = {"candidates": [], "composed": [], "chosen": {}}
    for batch in sorted({m["batch"] for m in manifest}):
        group = [m for m in manifest if m["batch"] == batch]
        base_trace = Trace(os.path.join(sweep_dir, group[0]["name"]))
        base = Replay(d, kernels, base_trace)
        run_session(base)  # every buffer written, the state evolved: nothing is timed on poison or zeros
        c = base_trace.config()
        steps = {}
        for m in group:
            t = Trace(os.path.join(sweep_dir, m["name"]))
            if fills_signature(t) != fills_signature(base_trace):
                raise ValueError(f"{m['name']}: its heap differs from {group[0]['name']}'s: cannot share it")
            base.t = t
            step_ops = [op for op in t.session["ops"] if op["op"] == "step"]
            cb = base.prepare(t.cbs[step_ops[-1]["cb"][0]], None)
            base.host_writes(cb)
            steps[m["name"]] = cb["launches"]
            us, best = time_graph(d, base, cb["launches"], reps=reps)
            row = {"name": m["name"], "batch": batch, "tuning": m["tuning"], "us": round(us, 2),
                   "usMin": round(best, 2), "dispatches": len(cb["launches"]), "roles": {}}
            for role, launches in step_roles(cb["launches"], c).items():
                r_us, r_best = time_graph(d, base, launches, reps=reps)
                b = sum(bytes_of(L, c, batch) for L in launches)
                row["roles"][role] = {"us": round(r_us, 2), "usMin": round(r_best, 2), "dispatches": len(launches),
                                      "grid": launches[0].grid, "threadgroup": launches[0].block, "bytes": b,
                                      "fraction": round(b / (max(r_us, 1e-3) * 1e-6) / 1e9 / copy_gbs, 4)}
            out["candidates"].append(row)
            log(f"b{batch} {m['name']:<32} step {us:7.1f} us  " + "  ".join(
                f"{k.split('.')[-1]} {v['us']:6.1f}" for k, v in row["roles"].items()))
        rows = [r for r in out["candidates"] if r["batch"] == batch]

        def mean_role(role, keys, values):
            xs = [r["roles"][role]["us"] for r in rows if tuple(r["tuning"][k] for k in keys) == values]
            return sum(xs) / len(xs) if xs else float("inf")

        # in_proj and lm_head each per (rows, K slices); out_proj per (rows, K slices, split) + the SSM per split.
        def choices(role):
            return sorted({tuple(r["tuning"][k] for k in TUNING_OF_ROLE[role]) for r in rows})

        def source(role, value):
            return next((r["name"] for r in rows if tuple(r["tuning"][k] for k in TUNING_OF_ROLE[role]) == value),
                        None)

        in_cost = {a: mean_role("matvec.in_proj", TUNING_OF_ROLE["matvec.in_proj"], a)
                   for a in choices("matvec.in_proj")}
        lm_cost = {a: mean_role("matvec.lm_head", TUNING_OF_ROLE["matvec.lm_head"], a)
                   for a in choices("matvec.lm_head")}
        out_cost = {o: mean_role("matvec.out_proj", TUNING_OF_ROLE["matvec.out_proj"], o) +
                    mean_role("ssm_decode_block", ("ssmSplit",), (o[2],)) for o in choices("matvec.out_proj")}
        top_in = sorted(in_cost, key=in_cost.get)[:2]
        top_lm = sorted(lm_cost, key=lm_cost.get)[:2]
        top_out = sorted(out_cost, key=out_cost.get)[:3]
        # e.g. the Mac defaults: [inR, inK, outR, outK, split] (lm_head as in_proj) or 7 values with lmR, lmK
        extra = [tuple(x) for x in json.loads(os.environ.get("SWEEP_COMPOSE", "[]"))]
        combos = [(a, l, o) for a in top_in for l in top_lm for o in top_out]
        combos += [((e[0], e[1]), (e[5], e[6]) if len(e) > 5 else (e[0], e[1]), (e[2], e[3], e[4])) for e in extra]
        for a, l, o in combos:
            src = {"matvec.in_proj": source("matvec.in_proj", a), "matvec.lm_head": source("matvec.lm_head", l)}
            src_out = source("matvec.out_proj", o)
            if None in src.values() or src_out is None:
                log(f"b{batch}: no candidate traced for {a} {l} {o}: not composed")
                continue
            composed = []
            for i, L_out in enumerate(steps[src_out]):
                role = role_of(L_out, c)
                composed.append(steps[src[role]][i] if role in src else L_out)
            us, best = time_graph(d, base, composed, reps=reps)
            tuning = {"matvecRowsPerSimdgroup": a[0], "matvecSplitK": a[1], "lmHeadRowsPerSimdgroup": l[0],
                      "lmHeadSplitK": l[1], "outProjRowsPerSimdgroup": o[0], "outProjSplitK": o[1],
                      "ssmSplit": o[2]}
            predicted = in_cost.get(a, 0) + lm_cost.get(l, 0) + out_cost.get(o, 0)
            out["composed"].append({"batch": batch, "tuning": tuning, "us": round(us, 2), "usMin": round(best, 2),
                                    "from": [src["matvec.in_proj"], src["matvec.lm_head"], src_out],
                                    "predictedRoles": round(predicted, 2)})
            log(f"b{batch} composed {json.dumps(tuning)}: step {us:.1f} us (min {best:.1f})")
        best = min((x for x in out["composed"] if x["batch"] == batch), key=lambda x: x["us"])
        out["chosen"][str(batch)] = best
        base.t = base_trace
        base.close()
    return out


def matmul_role(L, c):
    p = {x["name"]: x.get("value") for x in L.pipeline["constants"]}
    if p["MM_CAUSAL"]:
        return "cb"
    return "out_proj" if p["MM_ACCUMULATE"] else "in_proj"


# ---- entry --------------------------------------------------------------------------------------------


def parse_overrides(items, pipelines=()):
    """FILE:INDEX=VALUE or FILE:NAME=VALUE → {(file, index): value} (names looked up in the pipelines)."""
    out = {}
    for it in items or []:
        file, rest = it.split(":", 1)
        key, value = rest.split("=", 1)
        if key.isdigit():
            index = int(key)
        else:
            found = [c["index"] for p in pipelines if p["file"] == file for c in p["constants"] if c["name"] == key]
            if not found:
                raise ValueError(f"--override {it}: no function constant {key} in {file}'s pipelines")
            index = found[0]
        out[(file, index)] = json.loads(value)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["parity", "time", "sweep"])
    ap.add_argument("--build", required=True)
    ap.add_argument("--trace", action="append", default=[])
    ap.add_argument("--sweep", help="sweep mode: the folder tools/gpu/sweep.ts filled")
    ap.add_argument("--against", default="reference,metalcompat")
    ap.add_argument("--json")
    ap.add_argument("--serial", action="store_true", help="one stream: dispatches strictly in order")
    ap.add_argument("--streams", type=int, default=4)
    ap.add_argument("--simd-check", action="store_true", help="the MC_CHECK_SIMD build of every kernel")
    ap.add_argument("--bug", help="planted variant: FILE=PLANTED_FILE (e.g. matvec.metal=matvec.planted_….metal)")
    ap.add_argument("--override", action="append", help="FILE:INDEX=VALUE function-constant override")
    ap.add_argument("--tuning", help="configs/metal_tune.json params the trace was made with (recorded in output)")
    ap.add_argument("--no-poison", action="store_true", help="leave unwritten heap memory uninitialised (initcheck)")
    ap.add_argument("--split", action="store_true", help="one allocation per buffer (memcheck sees overruns)")
    ap.add_argument("--decode-only", action="store_true", help="time mode: the decode step and its roles, no prefill")
    ap.add_argument("--compile", action="store_true",
                    help="compile specializations missing from the build (after --override) with this machine's nvcc")
    a = ap.parse_args(argv)
    d = Driver()
    planted = dict([a.bug.split("=", 1)]) if a.bug else None
    kernels = Kernels(d, a.build, simd_check=a.simd_check, planted=planted)
    overrides = parse_overrides(a.override, [p for t in a.trace for p in Trace(t).pipelines.values()])
    results = []
    copy_gbs = copy_bandwidth(d) if a.mode in ("time", "sweep") else None
    if a.mode == "sweep":
        out = sweep(d, kernels, a.sweep, copy_gbs)
        out.update(gpu=d.name, sms=d.sms, copyBandwidthGBs=copy_gbs)
        if a.json:
            json.dump(out, open(a.json, "w"), indent=1)
        for batch, best in out["chosen"].items():
            print(f"best at batch {batch}: {best['us']:.1f} us {json.dumps(best['tuning'])}", flush=True)
        print(f"copy bandwidth {copy_gbs:.0f} GB/s", flush=True)
        return 0
    for tdir in a.trace:
        t0 = time.time()
        trace = Trace(tdir)
        if a.compile:
            kernels.compile([dict(p, constants=[override(c, overrides[(p["file"], c["index"])])
                                                if (p["file"], c["index"]) in overrides else c
                                                for c in p["constants"]]) for p in trace.pipelines.values()],
                            nvcc=os.environ.get("NVCC", "nvcc"))
        replay = Replay(d, kernels, trace, streams=a.streams, serial=a.serial, overrides=overrides,
                        poison=not a.no_poison, split=a.split)
        entry = {"trace": os.path.basename(tdir.rstrip("/")), "gpu": d.name}
        if a.mode == "time":
            entry["rows"] = timings(d, replay, copy_gbs, prefill=not a.decode_only)
        else:
            observed = run_session(replay)
            entry["checks"] = {}
            for against in a.against.split(","):
                path = os.path.join(tdir, f"{against}.json")
                if os.path.exists(path):
                    entry["checks"][against] = compare(observed, json.load(open(path)), tolerance(trace, against))
            if a.simd_check:
                entry["simdReports"] = kernels.report()
        replay.close()
        entry["seconds"] = round(time.time() - t0, 2)
        results.append(entry)
        summary = {k: (v["pass"], f"{v['worst']:.2e}") for k, v in entry.get("checks", {}).items()}
        print(f"{entry['trace']}: {a.mode} {summary or ''} {entry.get('simdReports', '')} ({entry['seconds']} s)",
              flush=True)
        for r in entry.get("rows", []):
            if r["kind"] in ("decode_step", "matvec", "ssm_decode_block", "embedding_gather") or \
                    r["kind"].startswith("prefill_"):
                print(f"  {r['kind']:<17} {r.get('role', ''):<9} {r['us']:>9.1f} us  {r.get('dispatches', '')!s:>4} disp"
                      f"  {r['GBs'] or 0:>7.0f} GB/s  {100 * (r['fraction'] or 0):5.1f} %", flush=True)
        out = {"gpu": d.name, "sms": d.sms, "copyBandwidthGBs": copy_gbs, "tuning": a.tuning, "results": results}
        if a.json:  # after every trace, so a run stopped by its time limit keeps what it measured
            json.dump(out, open(a.json, "w"), indent=1)
    if copy_gbs:
        print(f"copy bandwidth {copy_gbs:.0f} GB/s", flush=True)
    failed = [r["trace"] for r in results for v in r.get("checks", {}).values() if not v["pass"]]
    if a.mode == "parity" and failed:
        print(f"PARITY FAILED: {failed}", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
