#!/usr/bin/python3
"""Prints the markdown table of dagpt against PyTorch from the JSON that run.sh collected.

    table.py --dagpt D.json [--dagpt-jemalloc J.json] [--torch T.json] [--context "line" ...]

D.json and J.json are Google Benchmark JSON from ops.bench.cpp (names "<key>/<impl>", aggregates only;
the median of the repetitions is used); T.json is torch_ops.py's output. Ratios: PyTorch / dagpt is a
time ratio (> 1: dagpt faster); dagpt / raw is a time ratio against the raw baseline of the same op in
the same binary (> 1: dagpt slower), raw Eigen on the same buffers for products, a plain OpenMP loop into
a preallocated output for the others; "% copy BW" is dagpt's GB/s over the best copy GB/s measured in the
same binary (bytes read + written; copy_1M for in-cache sizes, copy_16M for the rest).
"""
import argparse
import json

# key -> (op, shape, kind, copy benchmark to compare bandwidth with); the order of the table.
ROWS = {
    "matmul_8192x256x768": ("matmul", "[8192,256]x[256,768]", "matmul", None),
    "linear_8192x256x768": ("linear x@W^T", "[8192,256]x[768,256]^T", "matmul", None),
    "matmul_8192x256x1024": ("matmul", "[8192,256]x[256,1024]", "matmul", None),
    "linear_8192x256x1024": ("linear x@W^T", "[8192,256]x[1024,256]^T", "matmul", None),
    "matmul_8192x1024x256": ("matmul", "[8192,1024]x[1024,256]", "matmul", None),
    "linear_8192x1024x256": ("linear x@W^T", "[8192,1024]x[256,1024]^T", "matmul", None),
    "bmm_qk_1024x32x64x32": ("bmm q@k^T", "[1024,32,64]x[1024,32,64]^T", "matmul", None),
    "bmm_av_1024x32x32x64": ("bmm att@v", "[1024,32,32]x[1024,32,64]", "matmul", None),
    "add_1M": ("add", "[1M]+[1M]", "bandwidth", "copy_1M"),
    "mul_1M": ("mul", "[1M]*[1M]", "bandwidth", "copy_1M"),
    "add_16M": ("add", "[16M]+[16M]", "bandwidth", "copy_16M"),
    "mul_16M": ("mul", "[16M]*[16M]", "bandwidth", "copy_16M"),
    "exp_16M": ("exp", "[16M]", "bandwidth", "copy_16M"),
    "bias_add_8192x768": ("add, broadcast", "[8192,768]+[768]", "bandwidth", "copy_16M"),
    "sum_all_16M": ("sum all", "[16M]", "bandwidth", "copy_16M"),
    "sum_last_8192x768": ("sum axis -1", "[8192,768]", "bandwidth", "copy_16M"),
    "sum_first_8192x768": ("sum axis 0", "[8192,768]", "bandwidth", "copy_16M"),
    "softmax_1024x32x32": ("softmax axis -1", "[1024,32,32]", "bandwidth", "copy_1M"),
}


def load_bench(path):
    """{(key, impl): {"ms", "GFLOP", "GB"}} from the medians of a Google Benchmark JSON file."""
    if not path:
        return {}
    with open(path) as f:
        data = json.load(f)
    out = {}
    for b in data["benchmarks"]:
        if b.get("run_type") == "aggregate" and b.get("aggregate_name") != "median":
            continue
        if b.get("error_occurred"):
            continue
        parts = b["run_name"].split("/")
        scale = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}[b.get("time_unit", "ns")]
        out[(parts[0], parts[1])] = {"ms": b["real_time"] * scale, "GFLOP": b.get("GFLOP"), "GB": b.get("GB")}
    return out


def fmt_ms(v):
    if v is None:
        return "–"
    return f"{v:.3f}" if v < 1 else f"{v:.2f}" if v < 100 else f"{v:.0f}"


def fmt_ratio(v):
    return "–" if v is None else f"{v:.2f}"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dagpt", required=True)
    p.add_argument("--dagpt-jemalloc")
    p.add_argument("--torch")
    p.add_argument("--context", action="append", default=[], help="a line to print above the table")
    args = p.parse_args()

    dg = load_bench(args.dagpt)
    je = load_bench(args.dagpt_jemalloc)
    torch = {}
    if args.torch:
        with open(args.torch) as f:
            torch = json.load(f)["results"]

    def copy_gbs(key):
        rates = [dg[(key, impl)]["GB"] for impl in ("memcpy", "loop") if (key, impl) in dg]
        return max(rates) if rates else None

    for line in args.context:
        print(line + "  ")
    print()
    head = ["op", "shape", "dagpt ms", "dagpt rate"]
    if je:
        head.append("dagpt+jemalloc ms")
    head += ["PyTorch ms", "PyTorch / dagpt", "dagpt / raw", "% copy BW"]
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join(["---"] * 2 + ["---:"] * (len(head) - 2)) + "|")
    for key, (op, shape, kind, copy_key) in ROWS.items():
        d = dg.get((key, "dagpt"))
        if d is None and key not in torch:
            continue
        ms = d["ms"] if d else None
        if d and kind == "matmul":
            rate = f"{d['GFLOP']:.0f} GFLOP/s"
        elif d:
            rate = f"{d['GB']:.1f} GB/s"
        else:
            rate = "–"
        row = [op, shape, fmt_ms(ms), rate]
        if je:
            row.append(fmt_ms(je[(key, "dagpt")]["ms"]) if (key, "dagpt") in je else "–")
        t = torch.get(key, {}).get("median_ms")
        row += [fmt_ms(t), fmt_ratio(t / ms if t and ms else None)]
        raw = dg.get((key, "eigen")) or dg.get((key, "loop"))
        row.append(fmt_ratio(ms / raw["ms"] if raw and ms else None))
        cbw = copy_gbs(copy_key) if copy_key else None
        row.append(f"{100 * d['GB'] / cbw:.0f} %" if cbw and d else "–")
        print("| " + " | ".join(row) + " |")

    # The raw baselines, so that the ratios above can be checked against what the machine gives.
    base = sorted((k, i) for (k, i) in dg if i != "dagpt")
    if base:
        print()
        print("Baselines in the same binary (raw Eigen / plain loops / memcpy; `_alloc` = fresh output each call):")
        print()
        print("| benchmark | ms | rate |")
        print("|---|---:|---:|")
        for k, i in base:
            v = dg[(k, i)]
            rate = f"{v['GFLOP']:.0f} GFLOP/s" if v.get("GFLOP") else f"{v['GB']:.1f} GB/s"
            print(f"| {k}/{i} | {fmt_ms(v['ms'])} | {rate} |")


if __name__ == "__main__":
    main()
