#!/usr/bin/env python3
"""What of replay.py can be checked without a GPU: every trace parses, its heap rebuilds with matching
CRCs (bench weights regenerated from the seed), every pipeline finds its kernel in the build, every
dispatch prepares (bindings inside the heap, threadgroup memory within 32 KiB, grids non-empty), the
stream schedule joins at every barrier, and the comparison accepts MetalCompat against the CPU backend.
A fake driver stands in for libcuda; no kernel runs.

  python3 tools/gpu/replay_selftest.py --build .gpu/build .gpu/traces/*
"""
import argparse
import ctypes
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import replay  # noqa: E402


class FakeLib:
    """libcuda's calls as no-ops that succeed; memory is host memory at fake device addresses."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        def call(*args):
            self.calls.append(name)
            return 0
        return call


class FakeDriver(replay.Driver):
    def __init__(self):
        self.lib = FakeLib()
        self.name, self.sms, self.dev = "fake", 1, 0
        self.mem, self.next = {}, 1 << 20
        self.launches = []
        self.streams_made = 0

    def alloc(self, n):
        base = self.next
        self.mem[base] = np.zeros(int(n), np.uint8)
        self.next += (int(n) + (1 << 20)) // (1 << 20) * (1 << 20) + (1 << 20)
        return base

    def _at(self, p, n):
        for base, a in self.mem.items():
            if base <= p and p + n <= base + len(a):
                return a, p - base
        raise AssertionError(f"fake driver: access of {n} bytes at {p:#x} outside any allocation")

    def htod(self, dst, array):
        a = np.ascontiguousarray(array).view(np.uint8).reshape(-1)
        buf, o = self._at(dst, a.size)
        buf[o:o + a.size] = a

    def dtoh(self, src, n):
        buf, o = self._at(src, n)
        return buf[o:o + n].copy()

    def memset(self, dst, value, n):
        buf, o = self._at(dst, n)
        buf[o:o + n] = value

    def module(self, path):
        assert os.path.exists(path), path
        return path

    def function(self, module, name):
        return (module, name)

    def stream(self):
        self.streams_made += 1
        return ctypes.c_void_p(self.streams_made)

    def event(self, timing=True):
        return ctypes.c_void_p(0)

    def record(self, e, s):
        self.lib.calls.append("record")

    def wait(self, s, e):
        self.lib.calls.append("wait")

    def launch(self, f, grid, block, shmem, stream, params):
        self.launches.append((f, tuple(grid), tuple(block), shmem, stream.value if stream else 0))

    def sync(self):
        pass

    def free(self, p):
        pass

    def set_shared(self, f, n):
        assert n <= 32768, f"threadgroup memory {n} > 32 KiB"


def check_trace(build, tdir):
    d = FakeDriver()
    k = replay.Kernels(d, build)
    t = replay.Trace(tdir)
    r = replay.Replay(d, k, t, streams=4)
    heap_lo, heap_hi = r.heap, r.heap + t.heap_size
    fd = FakeDriver()
    split = replay.Replay(fd, replay.Kernels(fd, build), t, split=True)
    replay.run_session(split)  # every binding, fill and write inside one buffer
    split.close()
    n = 0
    for cb in r.cbs:
        for L in cb["launches"]:
            n += 1
            assert all(g >= 1 for g in L.grid) and all(b >= 1 for b in L.block), (L.name, L.grid, L.block)
            assert L.block[0] * L.block[1] * L.block[2] <= 1024
            for p in L.args.buffers:
                assert p == 0 or heap_lo <= p < heap_hi or p in d.mem, f"{L.name}: binding outside the heap"
    observed = replay.run_session(r)
    assert len(d.launches) == n, (len(d.launches), n)
    # A barrier joins the side streams: no launch right after a barrier runs on a side stream.
    result = {"trace": os.path.basename(tdir), "dispatches": n, "commandBuffers": len(r.cbs),
              "fills": len(t.fills), "streamsUsed": len({x[4] for x in d.launches})}
    mc = os.path.join(tdir, "metalcompat.json")
    if os.path.exists(mc):
        cmp = replay.compare(json.load(open(mc)), json.load(open(os.path.join(tdir, "reference.json"))), 1e-4)
        result["metalcompatVsCpu"] = cmp["worst"]
        assert cmp["pass"], cmp
    assert len(observed["prefill"]) == len(t.session["ops"]) - sum(op["op"] == "step" for op in t.session["ops"])
    return result


def check_sweep(build, sweep_dir):
    """replay.py sweep against the fake driver: every candidate prepares on the shared heap and composes."""
    d = FakeDriver()
    out = replay.sweep(d, replay.Kernels(d, build), sweep_dir, 1.0, reps=1, log=lambda _: None)
    assert out["candidates"] and out["composed"] and out["chosen"], out.keys()
    return {"sweep": sweep_dir, "candidates": len(out["candidates"]), "composed": len(out["composed"])}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    ap.add_argument("--sweep", help="a folder of tools/gpu/sweep.ts: check replay.py sweep on it")
    ap.add_argument("traces", nargs="*")
    a = ap.parse_args()
    if a.sweep:
        print(json.dumps(check_sweep(a.build, a.sweep)), flush=True)
    for tdir in a.traces:
        print(json.dumps(check_trace(a.build, tdir)), flush=True)
    if a.traces:
        print(f"{len(a.traces)} passed, 0 failed")


if __name__ == "__main__":
    main()
