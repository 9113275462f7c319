#!/usr/bin/python3
"""A PyTorch 1.13 twin of the reference DAG executor (REFERENCE.md §2), timed and checked against dagpt.

The executor is written from the spec, vectorised over [B, T] like the reference (a Python loop over the d
steps only): double compute, the causal mask, tanh(R/1e-4), the sign-product trick, LOG_LIM = 100, the
functional slot replace (scatter) and the cast back to the inputs' dtype.

For every dump file (written by dagpt_dag_dump: a batch of plans plus dagpt's reference-semantics output and
input gradients for a ones output gradient), it
  * asserts that torch's output and the gradients of V_mag, V_sign, O, G match dagpt's (rtol 1e-9, see
    close()), printing the largest differences;
  * times forward and forward+backward on those same inputs with 2 threads: 3 warm-up calls, then the median
    of at least 10 calls and --min-time seconds.
--large D times forward+backward on 1,048,576 random DAGs of depth D that torch draws itself, with the
distribution of bench/dag_inputs.hpp (no value check: dagpt does not dump a batch that size).

Run it through bench/compare/executor.sh, which gives PyTorch its best profile (OpenBLAS pthread, jemalloc).
    /usr/bin/python3 bench/compare/executor_torch.py OUT.json DUMP.bin... [--large D]... [--min-time S]
Two variants are checked and timed: "twin" (execute(): the reference's structure, O sliced per step) and
"unbound" (execute_unbound(): O and G unbound once, which spares PyTorch d full-size gradient passes).
Writes JSON: {"meta": {...}, "results": [{"depth", "dags", "source", "twin": {"fwd_ms", "fwd_bwd_ms", "check",
"check_ok", ...}, "unbound": {...}}]}.
"""
import argparse
import json
import os
import statistics
import sys
import time

import numpy as np
import torch

THREADS = 2
RTOL = 1e-9

CLAMP_MIN = 1e-12
SIGN_SCALE = 1e-4
LOG_LIM = 100.0


def execute(V_mag, V_sign, O, G):
    """The reference executor: V_mag, V_sign [B,T,N], O [B,T,d,N], G [B,T,d] -> [B,T] (inputs' dtype)."""
    orig_dtype = V_mag.dtype
    d = G.shape[-1]
    N = V_mag.shape[-1]
    M = V_mag.to(torch.float64)
    S = V_sign.to(torch.float64)
    cols = torch.arange(N, device=V_mag.device)
    index_shape = M.shape[:-1] + (1,)
    for s in range(d):
        mask = (cols < d + s).to(torch.float64)  # a step sees the initial slots and earlier results only
        o = O[..., s, :].to(torch.float64) * mask
        g = G[..., s:s + 1].to(torch.float64)
        L = torch.log(torch.clamp(M, min=CLAMP_MIN))
        X = S * M
        mixed = L * (1 - g) + X * g
        R = (o * mixed).sum(-1, keepdim=True)
        sign_lin = torch.tanh(R / SIGN_SCALE)
        P = (2 * S * o.abs() + 1).prod(-1, keepdim=True)
        sign_log = torch.tanh(P / SIGN_SCALE)
        sign_new = g * sign_lin + (1 - g) * sign_log
        mag_new = g * R.abs() + (1 - g) * torch.exp(torch.clamp(R, max=LOG_LIM))
        index = torch.full(index_shape, d + s, dtype=torch.long, device=V_mag.device)
        M = M.scatter(-1, index, mag_new)
        S = S.scatter(-1, index, sign_new)
    return (S[..., -1] * M[..., -1]).to(orig_dtype)


def execute_unbound(V_mag, V_sign, O, G):
    """The same executor with one change that helps PyTorch: O and G are cast and unbound into steps once.
    execute() slices O[..., s, :] per step as the reference does, and each slice's backward (SelectBackward)
    materialises a zero tensor of O's full size and adds it into O's gradient: d full-size passes, O(d^2 N)
    per DAG. One unbind has one backward (a stack)."""
    orig_dtype = V_mag.dtype
    d = G.shape[-1]
    N = V_mag.shape[-1]
    M = V_mag.to(torch.float64)
    S = V_sign.to(torch.float64)
    cols = torch.arange(N, device=V_mag.device)
    index_shape = M.shape[:-1] + (1,)
    O_steps = O.to(torch.float64).unbind(-2)
    G_steps = G.to(torch.float64).unsqueeze(-1).unbind(-2)
    for s in range(d):
        o = O_steps[s] * (cols < d + s).to(torch.float64)
        g = G_steps[s]
        L = torch.log(torch.clamp(M, min=CLAMP_MIN))
        X = S * M
        R = (o * (L * (1 - g) + X * g)).sum(-1, keepdim=True)
        P = (2 * S * o.abs() + 1).prod(-1, keepdim=True)
        sign_new = g * torch.tanh(R / SIGN_SCALE) + (1 - g) * torch.tanh(P / SIGN_SCALE)
        mag_new = g * R.abs() + (1 - g) * torch.exp(torch.clamp(R, max=LOG_LIM))
        index = torch.full(index_shape, d + s, dtype=torch.long, device=V_mag.device)
        M = M.scatter(-1, index, mag_new)
        S = S.scatter(-1, index, sign_new)
    return (S[..., -1] * M[..., -1]).to(orig_dtype)


VARIANTS = {"twin": execute, "unbound": execute_unbound}


def read_dump(path):
    """The dump of dagpt_dag_dump: inputs, dagpt's reference output and gradients, exact output."""
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:8] != b"DAGDUMP1":
        sys.exit(f"{path}: not a dagpt_dag_dump file")
    d, B, T = (int(x) for x in np.frombuffer(raw, dtype=np.int64, count=3, offset=8))
    N = 2 * d
    shapes = {"V_mag": (B, T, N), "V_sign": (B, T, N), "O": (B, T, d, N), "G": (B, T, d), "out": (B, T),
              "grad_V_mag": (B, T, N), "grad_V_sign": (B, T, N), "grad_O": (B, T, d, N), "grad_G": (B, T, d),
              "out_exact": (B, T)}
    arrays = {}
    offset = 32
    for name, shape in shapes.items():
        count = int(np.prod(shape))
        arrays[name] = torch.from_numpy(np.frombuffer(raw, dtype=np.float64, count=count, offset=offset)
                                        .reshape(shape).copy())
        offset += 8 * count
    if offset != len(raw):
        sys.exit(f"{path}: {len(raw)} bytes, expected {offset}")
    return d, arrays


def close(ours, theirs):
    """|a-b| <= RTOL*|b| elementwise, except where b is itself cancellation noise: entries below
    RTOL * max|b| of that tensor are compared against that absolute floor instead (a gradient that sums to
    ~1e-14 from terms of ~1 has no relative digits in either program). Returns (ok, max abs diff, max rel
    diff over the entries above the floor)."""
    diff = (ours - theirs).abs()
    scale = theirs.abs().max().item() if theirs.numel() else 0.0
    floor = RTOL * scale
    ok = bool(torch.all((diff <= RTOL * theirs.abs()) | (diff <= floor)).item()) and bool(
        torch.equal(torch.isfinite(ours), torch.isfinite(theirs)))
    big = theirs.abs() > floor
    rel = (diff[big] / theirs.abs()[big]).max().item() if big.any() else 0.0
    return ok, diff.max().item(), rel


def check(a, fn):
    """Torch's reference output and input gradients against dagpt's reference mode on the same inputs."""
    leaves = [a[k].clone().requires_grad_(True) for k in ("V_mag", "V_sign", "O", "G")]
    y = fn(*leaves)
    y.backward(torch.ones_like(y))
    report = {}
    ok = True
    for name, ours, theirs in (("out", y.detach(), a["out"]), ("grad_V_mag", leaves[0].grad, a["grad_V_mag"]),
                               ("grad_V_sign", leaves[1].grad, a["grad_V_sign"]),
                               ("grad_O", leaves[2].grad, a["grad_O"]), ("grad_G", leaves[3].grad, a["grad_G"])):
        good, adiff, rdiff = close(ours, theirs)
        ok = ok and good
        report[name] = {"ok": good, "max_abs_diff": adiff, "max_rel_diff": rdiff,
                        "max_abs": theirs.abs().max().item()}
    return ok, report


def time_call(fn, min_time):
    """Median seconds of one call: 3 warm-up calls, then at least 10 calls and min_time seconds."""
    for _ in range(3):
        fn()
    times = []
    start = time.perf_counter()
    while len(times) < 10 or (time.perf_counter() - start < min_time and len(times) < 1000):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), len(times)


def timings(fn, inputs, min_time):
    """(fwd median s, fwd calls, fwd+bwd median s, fwd+bwd calls) of fn on these inputs."""
    plain = [t.detach() for t in inputs]

    def fwd():
        with torch.no_grad():
            fn(*plain)

    grad_out = torch.ones(plain[0].shape[:-1], dtype=plain[0].dtype)

    def fwd_bwd():
        # fresh leaves each call: the gradients are made and dropped as a training step would
        leaves = [t.detach().requires_grad_(True) for t in plain]
        fn(*leaves).backward(grad_out)

    f, fn_calls = time_call(fwd, min_time)
    fb, fb_calls = time_call(fwd_bwd, min_time)
    return f, fn_calls, fb, fb_calls


def random_plans(dags, d, seed=1):
    """bench/dag_inputs.hpp's distribution (torch's own random numbers)."""
    g = torch.Generator().manual_seed(seed)
    B, T, N = dags // 32, 32, 2 * d

    def uni(shape, lo, hi):
        return lo + (hi - lo) * torch.rand(shape, generator=g, dtype=torch.float64)

    def sgn(shape):
        return torch.randint(0, 2, shape, generator=g).to(torch.float64) * 2 - 1

    return [uni((B, T, N), 0.5, 3.0), sgn((B, T, N)) * uni((B, T, N), 0.5, 1.0),
            sgn((B, T, d, N)) * uni((B, T, d, N), 0.05, 0.9), uni((B, T, d), 0.0, 1.0)]


def loaded_libs():
    libs = set()
    with open("/proc/self/maps") as maps:
        for line in maps:
            parts = line.split()
            name = os.path.basename(parts[-1]) if len(parts) >= 6 else ""
            if any(s in name for s in ("blas", "jemalloc", "mkl", "dnnl")):
                libs.add(os.path.realpath(parts[-1]))
    return sorted(libs)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="where to write the JSON")
    parser.add_argument("dumps", nargs="*", help="dagpt_dag_dump files (checked, then timed)")
    parser.add_argument("--large", type=int, action="append", default=[],
                        help="also time fwd+bwd on 1,048,576 random DAGs of this depth")
    parser.add_argument("--min-time", type=float, default=1.0, help="seconds of timed calls per measurement")
    args = parser.parse_args()

    torch.set_num_threads(THREADS)
    meta = {"torch": torch.__version__, "threads": torch.get_num_threads(), "libs": loaded_libs(),
            "ld_preload": os.environ.get("LD_PRELOAD", ""),
            "ld_library_path": os.environ.get("LD_LIBRARY_PATH", "")}
    print(f"torch {meta['torch']}, {meta['threads']} threads; mapped: {', '.join(meta['libs']) or 'none'}",
          file=sys.stderr)

    results = []
    all_ok = True
    for path in args.dumps:
        d, a = read_dump(path)
        dags = a["out"].numel()
        row = {"depth": d, "dags": dags, "source": os.path.basename(path)}
        for variant, fn in VARIANTS.items():
            ok, report = check(a, fn)
            all_ok = all_ok and ok
            print(f"{variant}: check d={d} {dags} DAGs ({os.path.basename(path)}) against dagpt's reference mode: "
                  f"{'OK' if ok else 'MISMATCH'}", file=sys.stderr)
            for name, r in report.items():
                print(f"  {name:12s} max|diff| {r['max_abs_diff']:.3e}  max rel diff {r['max_rel_diff']:.3e}  "
                      f"(max|value| {r['max_abs']:.3e}){'' if r['ok'] else '  <-- FAIL'}", file=sys.stderr)
            f, fc, fb, fbc = timings(fn, [a["V_mag"], a["V_sign"], a["O"], a["G"]], args.min_time)
            print(f"  {variant}: fwd {f * 1e3:.3f} ms ({fc} calls), fwd+bwd {fb * 1e3:.3f} ms ({fbc} calls)",
                  file=sys.stderr)
            row[variant] = {"fwd_ms": f * 1e3, "fwd_calls": fc, "fwd_bwd_ms": fb * 1e3, "fwd_bwd_calls": fbc,
                            "check": report, "check_ok": ok}
        results.append(row)
    for d in args.large:
        dags = 1 << 20
        inputs = random_plans(dags, d)
        row = {"depth": d, "dags": dags, "source": "random (torch)"}
        for variant, fn in VARIANTS.items():
            f, fc, fb, fbc = timings(fn, inputs, args.min_time)
            print(f"{variant}: large d={d} {dags} DAGs: fwd {f * 1e3:.1f} ms ({fc} calls), fwd+bwd {fb * 1e3:.1f} ms "
                  f"({fbc} calls)", file=sys.stderr)
            row[variant] = {"fwd_ms": f * 1e3, "fwd_calls": fc, "fwd_bwd_ms": fb * 1e3, "fwd_bwd_calls": fbc,
                            "check": None, "check_ok": None}
        results.append(row)
        del inputs
    with open(args.out, "w") as f:
        json.dump({"meta": meta, "results": results}, f, indent=1)
    if not all_ok:
        print("executor_torch: torch and dagpt DISAGREE (see above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
