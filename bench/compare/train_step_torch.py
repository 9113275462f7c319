#!/usr/bin/python3
"""The PyTorch 1.13 side of the training-step benchmark (issue #5 §6): one full step of the reference predictor
config, float32, timed the way the seed trains it.

Config (REFERENCE.md §7.1, the real run): vocab 50304, 2 layers, 4 heads, 256 wide, block 32, dropout 0.1,
bias, DAG depth 4. One step = forward (backbone + DAG head), the seed's REFERENCE-mode losses (§6: robust
V_mag over all slots, tanh(V_sign) and sigmoid(G) double activations, O MSE; --exec adds the reference
executor's exec loss), backward, clip_grad_norm_(1.0), AdamW step (one group, weight decay 0.01 on every
parameter, as the seed). Random token ids, random plausible targets and a ~80% valid mask, drawn once.

Prints one JSON line per batch size: {"B", "T", "exec", "step_ms" (median of >= --steps timed steps after 2
warm-up steps), "step_ms_min", "tokens_per_s", "peak_rss_mb", "threads", "blas", "malloc"}. Each batch size
runs in a fresh process, so that its peak RSS is its own.

PyTorch gets its best profile here, as in bench/compare/run.sh: the OpenBLAS pthread build, jemalloc (freed
pages kept) and 2 threads. The script sets that environment up itself and re-executes (--no-env to run as is):

    /usr/bin/python3 bench/compare/train_step_torch.py [--batch 256 32] [--exec] [--steps 5]
    flock /tmp/dagpt-build.lock /usr/bin/python3 bench/compare/train_step_torch.py   # on a shared machine
"""
import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time

PYTHON = "/usr/bin/python3"
OPENBLAS_DIR = "/usr/lib/x86_64-linux-gnu/openblas-pthread"
JEMALLOC = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"
MALLOC_CONF = "oversize_threshold:0,dirty_decay_ms:-1,muzzy_decay_ms:-1"
THREADS = int(os.environ.get("OMP_NUM_THREADS", "2"))

CONFIG = dict(vocab_size=50304, n_layer=2, n_head=4, n_embd=256, block_size=32, dropout=0.1, bias=True,
              dag_depth=4)
LR, WEIGHT_DECAY, BETAS, GRAD_CLIP = 3e-4, 0.01, (0.9, 0.95), 1.0


def env_profile():
    """The environment of bench/compare/run.sh's torch run."""
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(THREADS)
    env["OPENBLAS_NUM_THREADS"] = str(THREADS)
    env["LD_LIBRARY_PATH"] = OPENBLAS_DIR + (":" + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
    env["LD_PRELOAD"] = JEMALLOC
    env["MALLOC_CONF"] = os.environ.get("TORCH_MALLOC_CONF", MALLOC_CONF)
    return env


def one_batch_size(B, use_exec, steps, seed):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    torch.set_num_threads(THREADS)
    torch.manual_seed(seed)
    cfg = CONFIG
    C, d = cfg["n_embd"], cfg["dag_depth"]
    N = 2 * d
    T = cfg["block_size"]

    class LayerNorm(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(C))
            self.bias = nn.Parameter(torch.zeros(C))

        def forward(self, x):
            return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.c_attn = nn.Linear(C, 3 * C)
            self.c_proj = nn.Linear(C, C)
            self.attn_dropout = nn.Dropout(cfg["dropout"])
            self.resid_dropout = nn.Dropout(cfg["dropout"])
            self.register_buffer("causal", torch.ones(T, T, dtype=torch.bool).tril())

        def forward(self, x):
            Bx, Tx, _ = x.shape
            H = cfg["n_head"]
            q, k, v = self.c_attn(x).split(C, dim=2)
            q, k, v = (t.view(Bx, Tx, H, C // H).transpose(1, 2) for t in (q, k, v))
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(C // H))
            att = att.masked_fill(~self.causal[:Tx, :Tx], float("-inf")).softmax(dim=-1)
            y = (self.attn_dropout(att) @ v).transpose(1, 2).contiguous().view(Bx, Tx, C)
            return self.resid_dropout(self.c_proj(y))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1, self.attn, self.ln_2 = LayerNorm(), Attention(), LayerNorm()
            self.mlp = nn.Sequential(nn.Linear(C, 4 * C), nn.GELU(), nn.Linear(4 * C, C), nn.Dropout(cfg["dropout"]))

        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            return x + self.mlp(self.ln_2(x))

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = nn.Embedding(cfg["vocab_size"], C)
            self.wpe = nn.Embedding(T, C)
            self.drop = nn.Dropout(cfg["dropout"])
            self.h = nn.ModuleList([Block() for _ in range(cfg["n_layer"])])
            self.ln_f = LayerNorm()
            self.V_mag = nn.Linear(C, N)
            self.V_sign = nn.Linear(C, N)
            self.O = nn.Linear(C, d * N)
            self.G = nn.Linear(C, d)
            for name, p in self.named_parameters():
                if p.dim() >= 2:
                    nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * cfg["n_layer"]) if name.endswith("2.weight")
                                    or name.endswith("c_proj.weight") else 0.02)
                elif not name.startswith("ln") and ".ln_" not in name:
                    nn.init.zeros_(p)

        def forward(self, idx):
            x = self.drop(self.wte(idx) + self.wpe(torch.arange(idx.shape[1])))
            for blk in self.h:
                x = blk(x)
            h = self.ln_f(x)
            return (self.V_mag(h).abs(), torch.tanh(self.V_sign(h)), self.O(h).view(*h.shape[:-1], d, N),
                    torch.sigmoid(self.G(h)))

    def execute(V_mag, V_sign, O, G):  # the reference executor (bench/compare/executor_torch.py)
        M, S = V_mag.double(), V_sign.double()
        cols = torch.arange(N)
        index_shape = M.shape[:-1] + (1,)
        for s in range(d):
            o = O[..., s, :].double() * (cols < d + s).double()
            g = G[..., s:s + 1].double()
            L = torch.log(torch.clamp(M, min=1e-12))
            R = (o * (L * (1 - g) + S * M * g)).sum(-1, keepdim=True)
            P = (2 * S * o.abs() + 1).prod(-1, keepdim=True)
            sign_new = g * torch.tanh(R / 1e-4) + (1 - g) * torch.tanh(P / 1e-4)
            mag_new = g * R.abs() + (1 - g) * torch.exp(torch.clamp(R, max=100.0))
            index = torch.full(index_shape, d + s, dtype=torch.long)
            M = M.scatter(-1, index, mag_new)
            S = S.scatter(-1, index, sign_new)
        return (S[..., -1] * M[..., -1]).to(V_mag.dtype)

    def robust(p, t):
        a = t.abs() + 1e-8
        e = torch.where(a > 1, (p - t).abs() / a, (p - t).abs())
        return torch.where(e < 1, 0.5 * e * e, e - 0.5).mean()

    def loss_fn(pred, tgt, valid):
        V_mag, V_sign, O, G = (p[valid] for p in pred)
        tm, ts, to, tg, tv = (t[valid] for t in tgt)
        loss = robust(V_mag, tm) + F.mse_loss(torch.tanh(V_sign), ts) + F.mse_loss(O, to) + \
            F.mse_loss(torch.sigmoid(G), tg)
        if use_exec:
            p = execute(V_mag, V_sign, O, G)
            t = tv.float()
            if not bool(torch.isfinite(p).all()):
                return loss + 100.0
            small, large = t.abs() < 1e-6, t.abs() > 1e6
            mod = ~small & ~large
            if small.any():
                loss = loss + F.mse_loss(p[small], t[small])
            if large.any():
                loss = loss + F.mse_loss(torch.log(p[large].abs() + 1e-12), torch.log(t[large].abs() + 1e-12)) + \
                    F.mse_loss(torch.sign(p[large]), torch.sign(t[large]))
            if mod.any():
                loss = loss + ((p[mod] - t[mod]).abs() / (t[mod].abs() + 1e-8)).mean()
        return loss

    model = Model()
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=LR, betas=BETAS, weight_decay=WEIGHT_DECAY)
    idx = torch.randint(0, cfg["vocab_size"], (B, T))
    valid = torch.rand(B, T) < 0.8
    mag = torch.zeros(B, T, N)
    mag[..., :d] = 10 ** (8 * torch.rand(B, T, d) - 4)
    sign = torch.ones(B, T, N)
    sign[..., :d] = torch.randint(0, 2, (B, T, d)).float() * 2 - 1
    O_t = torch.randint(-1, 2, (B, T, d, N)).float() * (torch.arange(N).view(1, N) < (d + torch.arange(d)).view(d, 1))
    G_t = torch.randint(0, 2, (B, T, d)).float()
    value = (torch.randint(0, 2, (B, T)).double() * 2 - 1) * 10 ** (16 * torch.rand(B, T, dtype=torch.float64) - 8)
    tgt = (mag, sign, O_t, G_t, value)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(idx), tgt, valid)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        opt.step()
        return loss.item()

    for _ in range(2):
        step()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    blas = sorted({os.path.basename(line.split()[-1]) for line in open("/proc/self/maps")
                   if "blas" in line or "jemalloc" in line})
    return dict(B=B, T=T, exec=use_exec, step_ms=round(med * 1e3, 2), step_ms_min=round(min(times) * 1e3, 2),
                steps=steps, tokens_per_s=round(B * T / med), peak_rss_mb=round(
                    resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                threads=torch.get_num_threads(), libs=blas, malloc_conf=os.environ.get("MALLOC_CONF", ""),
                params=sum(p.numel() for p in model.parameters()))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, nargs="+", default=[256, 32])
    ap.add_argument("--exec", action="store_true", help="add the reference executor's exec loss")
    ap.add_argument("--steps", type=int, default=5, help="timed steps (median), after 2 warm-up steps")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--no-env", action="store_true", help="do not set up OpenBLAS pthread + jemalloc + threads")
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # internal: this process runs one B
    args = ap.parse_args()
    if args.steps < 5:
        sys.exit("train_step_torch.py: --steps must be >= 5")
    if args.one:
        print(json.dumps(one_batch_size(args.batch[0], args.exec, args.steps, args.seed)), flush=True)
        return
    for f in (PYTHON, OPENBLAS_DIR + "/libblas.so.3", JEMALLOC):
        if not args.no_env and not os.path.exists(f):
            sys.exit(f"train_step_torch.py: {f} is missing; run scripts/install-deps.sh --bench (or --no-env)")
    env = dict(os.environ) if args.no_env else env_profile()
    status = 0
    for B in args.batch:
        cmd = [PYTHON, os.path.abspath(__file__), "--one", "--batch", str(B), "--steps", str(args.steps),
               "--seed", str(args.seed)] + (["--exec"] if args.exec else [])
        status = subprocess.run(cmd, env=env).returncode or status
    sys.exit(status)


if __name__ == "__main__":
    main()
