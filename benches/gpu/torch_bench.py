#!/usr/bin/env python3
"""The workloads of eigengrad's `bench` example, in PyTorch: the baseline to beat.

Same workloads, sizes and names as `cargo run --release --example bench`, so the two CSV
files join on (workload, size):

- matmul: square f32 products, TF32 off (full f32, as eigengrad computes);
- eigh: torch.linalg.eigh on the same batches of Gram matrices (no warm start exists);
- layer: one layer's forward + backward + SGD step, batch 256: nn.Linear, and the closest
  PyTorch forms of eigengrad's Eigen layers — spectral_norm (Normalize), orthogonal
  (Orthogonal), and an SVD clamp of the singular values (Clamp);
- whiten: Linear + group ZCA whitening through torch.linalg.eigh;
- mlp: an Adam training step of the MLP 784-512-512-512-10 (tanh), plain and with every
  weight parametrised as above;
- deep: an Adam training step of 784 → 63 tanh layers of width 64 → 10, batch 128, plain
  and with every weight SVD-clamped to [1, 1.25] or orthogonal (eigengrad's rows also carry
  a learnable gain per layer, and a row with the hidden layers stacked).

Each is timed eagerly and, on CUDA, also replayed from a CUDA graph where capture works (an
op that synchronises with the host, such as eigh's error check, cannot be captured: that
row says so).

    python3 benches/gpu/torch_bench.py --device cuda            # full sizes
    python3 benches/gpu/torch_bench.py --device cpu --quick     # anywhere PyTorch runs
    python3 benches/gpu/torch_bench.py compare --eigengrad out/bench/bench.csv \\
        --torch out/torch/torch_bench.csv --out side_by_side.md

Writes torch_bench.csv and torch_bench.md into --out. The compare command needs no PyTorch.
"""

import argparse
import csv
import math
import os
import statistics
import sys
import time
from datetime import datetime, timezone

# Sizes: the same as demos/bench.rs (smoke, quick, full).
SIZES = {
    "smoke": dict(
        matmul=[64, 100], eigh=[(64, 16), (4, 40), (2, 70)], layer_widths=[16, 24],
        layer_batch=32, whiten=(32, 32, [16]), mlp=([48, 32, 32, 10], 16),
        deep=(6, 16, 8), min_runs=1, max_runs=2, budget=0.05),
    "quick": dict(
        matmul=[256, 512, 1024], eigh=[(1024, 32), (256, 64), (16, 256), (2, 512)],
        layer_widths=[64, 128, 256], layer_batch=256, whiten=(256, 256, [16, 64]),
        mlp=([784, 256, 256, 256, 10], 128), deep=(16, 64, 128), min_runs=2, max_runs=5, budget=0.6),
    "full": dict(
        matmul=[256, 512, 1024, 2048, 4096], eigh=[(4096, 32), (1024, 64), (64, 256), (8, 512)],
        layer_widths=[64, 128, 256, 512], layer_batch=256, whiten=(256, 512, [16, 64]),
        mlp=([784, 512, 512, 512, 10], 256), deep=(64, 64, 128), min_runs=3, max_runs=7, budget=4.0),
}

CSV_HEADER = ["workload", "size", "variant", "impl", "device", "wall_ms", "gpu_ms", "notes"]


def median(xs):
    return statistics.median(xs) if xs else float("nan")


class Timer:
    """Times a callable: wall clock around it with the device synchronised before and after,
    and on CUDA the device's own time from CUDA events."""

    def __init__(self, torch, device, sizes):
        self.torch, self.device, self.s = torch, device, sizes

    def sync(self):
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()

    def __call__(self, fn, warmup=1):
        torch = self.torch
        for _ in range(warmup):
            fn()
        self.sync()
        walls, gpus = [], []
        start = time.perf_counter()
        while len(walls) < self.s["max_runs"] and (
                len(walls) < self.s["min_runs"] or time.perf_counter() - start < self.s["budget"]):
            if self.device.type == "cuda":
                begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                t = time.perf_counter()
                begin.record()
                fn()
                end.record()
                end.synchronize()
                walls.append((time.perf_counter() - t) * 1e3)
                gpus.append(begin.elapsed_time(end))
            else:
                t = time.perf_counter()
                fn()
                walls.append((time.perf_counter() - t) * 1e3)
        return median(walls), (median(gpus) if gpus else None)


def gram_batch(torch, gen, batch, n, device):
    """Gram matrices WᵀW of Gaussian 2n×n blocks scaled by 1/√(2n), as bench.rs builds."""
    w = torch.randn(batch, 2 * n, n, generator=gen) / math.sqrt(2 * n)
    return (w.transpose(1, 2) @ w).to(device)


def svd_clamp(torch, lo, hi):
    """A parametrisation W' = U·clamp(S, lo, hi)·Vᵀ: eigengrad's Eigen Clamp the PyTorch way
    (its gradient is the textbook SVD one, which is NaN on repeated singular values)."""

    class SvdClamp(torch.nn.Module):
        def forward(self, w):
            u, s, vh = torch.linalg.svd(w, full_matrices=False)
            return (u * s.clamp(lo, hi).unsqueeze(-2)) @ vh

    return SvdClamp()


def parametrise(torch, linear, kind, band=(0.9, 1.1)):
    """Applies eigengrad layer `kind`'s PyTorch analogue to `linear` (a clamp to `band`);
    returns (module, impl)."""
    P = torch.nn.utils.parametrize
    if kind == "Linear" or kind == "plain":
        return linear, "nn.Linear"
    if kind == "Eigen Normalize":
        return (torch.nn.utils.parametrizations.spectral_norm(linear),
                "spectral_norm (1 power iteration per step)")
    if kind == "Eigen Orthogonal":
        return torch.nn.utils.parametrizations.orthogonal(linear), "orthogonal (default map)"
    if kind == "Eigen Clamp":
        P.register_parametrization(linear, "weight", svd_clamp(torch, *band))
        return linear, f"SVD clamp to [{band[0]}, {band[1]}] (torch.linalg.svd)"
    raise ValueError(kind)


def training_rows(torch, timer, device, make, workload, size, impl, notes, adam=False):
    """Rows for a training step built by make() -> (model, x, t, loss_fn): eager, and on CUDA
    replayed from a captured CUDA graph (or a row saying why capture failed)."""
    rows = []

    def prepare(capturable):
        model, x, t, loss_fn = make()
        opt = (torch.optim.Adam(model.parameters(), lr=1e-3, capturable=capturable) if adam
               else torch.optim.SGD(model.parameters(), lr=1e-2))

        def step():
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), t)
            loss.backward()
            opt.step()
            return loss

        return step, model, x, t, loss_fn, opt

    step = prepare(False)[0]
    wall, gpu = timer(step, warmup=3)
    rows.append(dict(workload=workload, size=size, variant="eager", impl=impl, wall_ms=wall,
                     gpu_ms=gpu, notes=notes))
    if device.type != "cuda":
        return rows
    step, model, x, t, loss_fn, opt = prepare(True)
    try:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                step()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        opt.zero_grad(set_to_none=True)
        with torch.cuda.graph(graph):
            loss = loss_fn(model(x), t)
            loss.backward()
            opt.step()
        wall, gpu = timer(graph.replay, warmup=2)
        loss_value = float(loss)
        if not math.isfinite(loss_value):
            raise RuntimeError(f"non-finite loss {loss_value}")
        rows.append(dict(workload=workload, size=size, variant="cuda graph", impl=impl,
                         wall_ms=wall, gpu_ms=gpu, notes=notes))
    except Exception as e:  # capture is not possible for every op: say so in the table
        torch.cuda.synchronize()
        reason = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        rows.append(dict(workload=workload, size=size, variant="cuda graph", impl=impl,
                         wall_ms=None, gpu_ms=None, notes=f"capture failed: {reason}"))
    return rows


def run(args):
    try:
        import torch
    except ImportError:
        print("torch_bench.py: PyTorch is not installed (pip install torch)", file=sys.stderr)
        return 2
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    s = SIZES[mode]
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    timer = Timer(torch, device, s)
    gen = torch.Generator().manual_seed(0)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (
        f"CPU, {torch.get_num_threads()} threads")
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"torch {torch.__version__} on {name}; mode {mode}; load average {load}", flush=True)
    want = lambda w: not args.only or w in args.only
    rows = []

    def add(new):
        for r in new:
            r["device"] = name
            wall = "n/a" if r["wall_ms"] is None else f"{r['wall_ms']:.3f} ms"
            print(f"  {r['workload']:<22} {r['size']:<28} {r['variant']:<10} {wall}", flush=True)
        rows.extend(new)

    if want("matmul"):
        for n in s["matmul"]:
            a = torch.randn(n, n, generator=gen).to(device)
            b = torch.randn(n, n, generator=gen).to(device)
            wall, gpu = timer(lambda: torch.matmul(a, b))
            flops = 2 * n ** 3
            add([dict(workload="matmul", size=f"{n}x{n}x{n}", variant="eager",
                      impl="torch.matmul (TF32 off)", wall_ms=wall, gpu_ms=gpu,
                      notes=f"{flops / (wall * 1e6):.1f} GFLOPS wall")])
    if want("eigh"):
        for batch, n in s["eigh"]:
            a = gram_batch(torch, gen, batch, n, device)
            wall, gpu = timer(lambda: torch.linalg.eigh(a))
            add([dict(workload="eigh", size=f"{batch}x{n}x{n}", variant="cold",
                      impl="torch.linalg.eigh", wall_ms=wall, gpu_ms=gpu,
                      notes=f"{wall * 1e3 / batch:.1f} µs/matrix")])
    if want("layer"):
        batch = s["layer_batch"]
        for width in s["layer_widths"]:
            for kind in ["Linear", "Eigen Clamp", "Eigen Orthogonal", "Eigen Normalize"]:
                def make(width=width, kind=kind):
                    lin = torch.nn.Linear(width, width).to(device)
                    model, _ = parametrise(torch, lin, kind)
                    x = torch.randn(batch, width, generator=gen).to(device)
                    t = torch.randn(batch, width, generator=gen).to(device)
                    return model, x, t, torch.nn.functional.mse_loss
                impl = parametrise(torch, torch.nn.Linear(2, 2), kind)[1]
                add(training_rows(torch, timer, device, make, f"layer {kind}",
                                  f"{width}x{width}, batch {batch}", impl, "fwd+bwd+SGD"))
    if want("whiten"):
        batch, features, groups = s["whiten"]
        for group in groups:
            def make(group=group):
                class Whiten(torch.nn.Module):
                    def __init__(self):
                        super().__init__()
                        self.lin = torch.nn.Linear(features, features)

                    def forward(self, x):
                        h = self.lin(x)
                        h = h - h.mean(0, keepdim=True)
                        hg = h.reshape(batch, features // group, group).transpose(0, 1)
                        cov = hg.transpose(1, 2) @ hg / batch
                        lam, v = torch.linalg.eigh(cov)
                        w = (v * (lam + 1e-3).rsqrt().unsqueeze(-2)) @ v.transpose(1, 2)
                        return (hg @ w).transpose(0, 1).reshape(batch, features)

                x = torch.randn(batch, features, generator=gen).to(device)
                t = torch.randn(batch, features, generator=gen).to(device)
                return Whiten().to(device), x, t, torch.nn.functional.mse_loss
            add(training_rows(torch, timer, device, make, "whiten ZCA",
                              f"{batch}x{features}, group {group}", "torch.linalg.eigh ZCA",
                              "Linear+ZCA fwd+bwd+SGD"))
    def classifier(workload, size, widths, batch, kind, band=(0.9, 1.1)):
        def make():
            layers = []
            for i in range(len(widths) - 1):
                lin = torch.nn.Linear(widths[i], widths[i + 1])
                layers.append(parametrise(torch, lin, kind, band)[0])
                if i + 2 < len(widths):
                    layers.append(torch.nn.Tanh())
            model = torch.nn.Sequential(*layers).to(device)
            x = torch.rand(batch, widths[0], generator=gen).to(device)
            labels = torch.randint(0, widths[-1], (batch,), generator=gen).to(device)
            return model, x, labels, torch.nn.functional.cross_entropy
        impl = parametrise(torch, torch.nn.Linear(2, 2), kind, band)[1]
        add(training_rows(torch, timer, device, make, workload, size, impl,
                          "Adam training step", adam=True))

    if want("mlp"):
        widths, batch = s["mlp"]
        size = "-".join(map(str, widths)) + f", batch {batch}"
        for kind in ["plain", "Eigen Clamp", "Eigen Orthogonal", "Eigen Normalize"]:
            classifier(f"mlp {kind}", size, widths, batch, kind)
    if want("deep"):
        depth, width, batch = s["deep"]
        widths = [784] + [width] * (depth - 1) + [10]
        size = f"784 x{depth - 1} {width}, batch {batch}"
        for kind in ["plain", "Eigen Clamp", "Eigen Orthogonal"]:
            classifier(f"deep {kind}", size, widths, batch, kind, band=(1.0, 1.25))

    os.makedirs(args.out, exist_ok=True)
    fmt = lambda v: "" if v is None else f"{v:.6f}"
    with open(os.path.join(args.out, "torch_bench.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CSV_HEADER)
        for r in rows:
            w.writerow([r["workload"], r["size"], r["variant"], r["impl"], r["device"],
                        fmt(r["wall_ms"]), fmt(r["gpu_ms"]), r["notes"]])
    lines = [f"# PyTorch baseline ({mode})", "",
             f"- date: {datetime.now(timezone.utc):%Y-%m-%d} (UTC)",
             f"- torch {torch.__version__} on {name}; TF32 off",
             f"- load average at start {load}", "",
             "| workload | size | variant | impl | wall ms | GPU ms | notes |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        ms = lambda v: "—" if v is None else f"{v:.3f}"
        lines.append(f"| {r['workload']} | {r['size']} | {r['variant']} | {r['impl']} | "
                     f"{ms(r['wall_ms'])} | {ms(r['gpu_ms'])} | {r['notes']} |")
    with open(os.path.join(args.out, "torch_bench.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines[6:]))
    print(f"wrote {args.out}/torch_bench.csv and torch_bench.md")
    return 0


def compare(args):
    """Prints (and writes) eigengrad's and PyTorch's times side by side, joined on
    (workload, size). Each side's best variant is used for the ratio."""
    def read(path):
        with open(path, newline="") as f:
            return list(csv.DictReader(f))

    def num(v):
        try:
            x = float(v)
            return x if math.isfinite(x) else None
        except (TypeError, ValueError):
            return None

    ours, theirs = read(args.eigengrad), read(args.torch)
    keys = []
    for r in ours + theirs:
        if (r["workload"], r["size"]) not in keys:
            keys.append((r["workload"], r["size"]))

    def times(rows, key, col):
        return {r["variant"]: num(r[col]) for r in rows if (r["workload"], r["size"]) == key}

    ms = lambda v: "—" if v is None else (f"{v:.0f}" if v >= 100 else f"{v:.3g}")
    out = ["| workload | size | eigengrad GPU ms | CPU ref ms | torch ms | torch impl | "
           "torch best / eigengrad best |", "|---|---|---|---|---|---|---|"]
    for key in keys:
        e = times(ours, key, "gpu_wall_ms")
        t = times(theirs, key, "wall_ms")
        cpu = [num(r["cpu_ref_ms"]) for r in ours if (r["workload"], r["size"]) == key]
        impl = next((r["impl"] for r in theirs if (r["workload"], r["size"]) == key), "—")
        show = lambda d: " / ".join(
            ms(v) if k in ("", "-") else f"{k} {ms(v)}" for k, v in d.items()) or "—"
        e_best = min((v for v in e.values() if v), default=None)
        t_best = min((v for v in t.values() if v), default=None)
        ratio = f"{t_best / e_best:.3g}" if e_best and t_best else "—"
        out.append(f"| {key[0]} | {key[1]} | {show(e)} | {ms(cpu[0]) if cpu else '—'} | "
                   f"{show(t)} | {impl} | {ratio} |")
    text = "\n".join(out) + "\n"
    print(text, end="")
    print("ratio above 1: eigengrad is faster")
    if args.out:
        with open(args.out, "w") as f:
            f.write("# eigengrad against PyTorch\n\nTimes are medians of wall-clock time per "
                    "call; ratio above 1: eigengrad is faster.\n\n" + text)
    return 0


def main(argv):
    if argv[:1] == ["compare"]:
        p = argparse.ArgumentParser(prog="torch_bench.py compare", description=compare.__doc__)
        p.add_argument("--eigengrad", required=True, help="bench.csv of the bench example")
        p.add_argument("--torch", required=True, help="torch_bench.csv of this script")
        p.add_argument("--out", help="also write the table to this Markdown file")
        return compare(p.parse_args(argv[1:]))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", help="cuda, cpu or auto (default)")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="the bench example's --quick sizes")
    size.add_argument("--smoke", action="store_true", help="tiny sizes: a check that all runs")
    p.add_argument("--out", default="out/torch_bench", help="folder for the CSV and Markdown")
    p.add_argument("--only", type=lambda s: s.split(","), default=[],
                   help="comma-separated subset of matmul,eigh,layer,whiten,mlp,deep")
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
