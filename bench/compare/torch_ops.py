#!/usr/bin/python3
"""Times the ops of bench/ops.bench.cpp in PyTorch (Debian's python3-torch 1.13), same shapes, float32.

Run it through bench/compare/run.sh, which gives PyTorch its best profile here: the OpenBLAS pthread
build, jemalloc, 2 threads. Each op is warmed up, then timed call by call in rounds that interleave the
ops; the median call is reported. Writes JSON: {"meta": {...}, "results": {key: {"median_ms", "calls"}}},
keys as in ops.bench.cpp.

    /usr/bin/python3 bench/compare/torch_ops.py OUT.json [--min-time SECONDS]
"""
import argparse
import json
import os
import random
import re
import statistics
import sys
import time

import torch
import torch.nn.functional as F

THREADS = 2


def loaded_blas():
    """The BLAS/LAPACK shared objects mapped into this process (after torch has run a product)."""
    libs = set()
    with open("/proc/self/maps") as maps:
        for line in maps:
            path = line.split()[-1] if len(line.split()) >= 6 else ""
            name = os.path.basename(path)
            if any(s in name for s in ("blas", "lapack", "mkl", "jemalloc", "dnnl")):
                libs.add(os.path.realpath(path))
    return sorted(libs)


def sgemm_gflops(n=2048, reps=5):
    """A square product: ~100+ GFLOP/s with OpenBLAS on 2 cores here, a few GFLOP/s with reference BLAS."""
    a = torch.randn(n, n)
    b = torch.randn(n, n)
    torch.mm(a, b)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - t0)
    return 2.0 * n ** 3 / statistics.median(times) / 1e9


def time_ops(table, min_time, rounds=7):
    """Median milliseconds of one call of each op, and the number of timed calls.

    Each op is warmed up (3 calls), then timed in `rounds` rounds; every round runs the ops in a new random
    order, each for min_time / rounds seconds and at least 2 calls. Interleaving the ops spreads a slow
    stretch of the machine (a VM neighbour, a frequency change) over all of them instead of one.
    """
    for fn in table.values():
        for _ in range(3):
            fn()
    times = {key: [] for key in table}
    order = list(table)
    rng = random.Random(0)
    for _ in range(rounds):
        rng.shuffle(order)
        for key in order:
            fn = table[key]
            start = time.perf_counter()
            calls = 0
            while calls < 2 or (time.perf_counter() - start < min_time / rounds and calls < 500):
                t0 = time.perf_counter()
                fn()
                times[key].append(time.perf_counter() - t0)
                calls += 1
    return {key: (statistics.median(t) * 1e3, len(t)) for key, t in times.items()}


def ops():
    """key -> zero-argument callable, the keys and shapes of bench/ops.bench.cpp."""
    g = torch.Generator().manual_seed(0)

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float32)

    table = {}
    rows = 8192  # B*T tokens
    for k, n in ((256, 768), (256, 1024), (1024, 256)):
        x = randn(rows, k)
        b = randn(k, n)
        w = randn(n, k)  # Linear's weight, stored [out, in]
        table[f"matmul_{rows}x{k}x{n}"] = lambda x=x, b=b: torch.matmul(x, b)
        table[f"linear_{rows}x{k}x{n}"] = lambda x=x, w=w: F.linear(x, w)
    heads, t, hs = 256 * 4, 32, 64
    q, k, v = randn(heads, t, hs), randn(heads, t, hs), randn(heads, t, hs)
    att = randn(heads, t, t)
    table[f"bmm_qk_{heads}x{t}x{hs}x{t}"] = lambda: torch.matmul(q, k.transpose(-2, -1))
    table[f"bmm_av_{heads}x{t}x{t}x{hs}"] = lambda: torch.matmul(att, v)

    for n in (1 << 20, 1 << 24):
        a, b = randn(n), randn(n)
        size = f"{n >> 20}M"
        table[f"add_{size}"] = lambda a=a, b=b: torch.add(a, b)
        table[f"mul_{size}"] = lambda a=a, b=b: torch.mul(a, b)
    a16 = randn(1 << 24)
    table["exp_16M"] = lambda: torch.exp(a16)
    x, bias = randn(rows, 768), randn(768)
    table["bias_add_8192x768"] = lambda: x + bias

    table["sum_all_16M"] = lambda: a16.sum()
    table["sum_last_8192x768"] = lambda: x.sum(-1)
    table["sum_first_8192x768"] = lambda: x.sum(0)
    s = randn(heads, t, t)
    table["softmax_1024x32x32"] = lambda: torch.softmax(s, -1)
    return table


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="where to write the JSON")
    parser.add_argument("--min-time", type=float, default=0.7, help="seconds of timed calls per op")
    parser.add_argument("--filter", default="", help="only ops whose key matches this regex")
    args = parser.parse_args()

    torch.set_num_threads(THREADS)
    gflops = sgemm_gflops()
    blas = loaded_blas()
    meta = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "blas_loaded": blas,
        "sgemm_2048_gflops": round(gflops, 1),
        "ld_preload": os.environ.get("LD_PRELOAD", ""),
        "ld_library_path": os.environ.get("LD_LIBRARY_PATH", ""),
        "cpu_capability": next((line.strip().lstrip("- ") for line in torch.__config__.show().splitlines()
                                if "CPU capability" in line), ""),
    }
    print(f"torch {meta['torch']}, {meta['threads']} threads, 2048^3 sgemm {gflops:.1f} GFLOP/s", file=sys.stderr)
    print("BLAS / allocator libraries mapped: " + (", ".join(blas) or "none"), file=sys.stderr)
    if not any("openblas" in p for p in blas):
        print("WARNING: OpenBLAS is not loaded; PyTorch is not in its best profile", file=sys.stderr)

    results = {}
    with torch.inference_mode():
        table = {key: fn for key, fn in ops().items() if not args.filter or re.search(args.filter, key)}
        for key, (median_ms, calls) in time_ops(table, args.min_time).items():
            results[key] = {"median_ms": median_ms, "calls": calls}
            print(f"  {key:28s} {median_ms:9.3f} ms  ({calls} calls)", file=sys.stderr)
    with open(args.out, "w") as f:
        json.dump({"meta": meta, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
