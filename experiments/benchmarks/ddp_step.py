"""Benchmark DDP variants for SlimGAN's training step on 2 CPU processes (gloo).

A SlimGAN iteration runs n_dis D backwards and one G backward, each touching only one network.
Variants, each through the real Lightning loop (manual optimization, ``fork`` launcher, gloo):

- ``single``: one process with one rank's batch (no communication: the compute floor; with 2
  threads it gets the cores the 2 ranks share).
- ``ddp``: Lightning's plain DDP strategy (expected to fail: unused parameters in every backward).
- ``ddp_find_unused``: ``ddp_find_unused_parameters_true``: DDP traverses the autograd graph after
  every backward to mark the other network's parameters ready, and all-reduces every bucket (G and D).
- ``gan_ddp``: :class:`slimgan_pl.distributed.GANDDPStrategy` (``trainer=ddp_cpu``): no DDP wrapper;
  each optimizer step all-reduces that optimizer's gradients only.
- ``gan_ddp+sync_bn``: the same with ``model.sync_bn=true`` (cross-replica BN: one all-reduce per
  training-mode BN call).

Prints ms per iteration (median over the timed iterations of rank 0, which waits for rank 1 at every
collective), wall and CPU time of rank 0's process, and the floats all-reduced per iteration.

    python experiments/benchmarks/ddp_step.py [--sizes tiny demo] [--n-dis 1 5] [--iters 20] [--warmup 5]
        [--repeats 2] [--out experiments/results/ddp_step.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.strategies import DDPStrategy
from torch.utils.data import DataLoader, TensorDataset

from slimgan_pl import SlimGAN
from slimgan_pl.distributed import GANDDPStrategy

WIDTHS = [0.25, 0.5, 0.75, 1.0]
SIZES = {  # per-rank batch of one D step
    "tiny": dict(ngf=16, ndf=16, batch=8),
    "demo": dict(ngf=128, ndf=128, batch=32),
}
VARIANTS = ("single", "ddp", "ddp_find_unused", "gan_ddp", "gan_ddp+sync_bn")


class RankZeroTimer(pl.Callback):
    """Wall time and CPU time (this process) of every training iteration on rank 0, written to
    ``path`` at the end. CPU time leaves out time spent waiting for the core (the machine is shared)
    or for the other rank; it includes what gloo's transport, the graph traversal and the
    bucket copies cost this process."""

    def __init__(self, path: Path) -> None:
        self.path, self.wall, self.cpu = path, [], []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._t0, self._c0 = time.perf_counter(), time.process_time()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.wall.append(time.perf_counter() - self._t0)
        self.cpu.append(time.process_time() - self._c0)

    def on_train_end(self, trainer, pl_module):
        if trainer.is_global_zero:
            self.path.write_text(json.dumps({"wall": self.wall, "cpu": self.cpu}))


def strategy_for(variant: str):
    timeout = timedelta(seconds=120)
    if variant == "ddp":
        return DDPStrategy(start_method="fork", process_group_backend="gloo", timeout=timeout)
    if variant == "ddp_find_unused":
        return DDPStrategy(
            start_method="fork", process_group_backend="gloo", timeout=timeout, find_unused_parameters=True
        )
    return GANDDPStrategy(start_method="fork", process_group_backend="gloo", timeout=timeout)


def run(variant: str, size: str, n_dis: int, iters: int, warmup: int) -> dict:
    s = SIZES[size]
    torch.manual_seed(0)
    model = SlimGAN(
        generator=dict(arch="sndcgan32", ngf=s["ngf"], img_channels=1),
        discriminator=dict(arch="sndcgan32", ndf=s["ndf"]),
        widths=WIDTHS,
        n_dis=n_dis,
        sync_bn=variant.endswith("sync_bn"),
    )
    world = 1 if variant == "single" else 2
    steps = iters + warmup
    per_step = s["batch"] * n_dis
    data = TensorDataset(
        torch.rand(per_step * steps * world, 1, 32, 32) * 2 - 1, torch.zeros(per_step * steps * world, dtype=torch.long)
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "times.json"
        kwargs = dict(devices=1) if world == 1 else dict(devices=2, strategy=strategy_for(variant))
        trainer = pl.Trainer(
            accelerator="cpu",
            max_steps=steps * (n_dis + 1),
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[RankZeroTimer(path)],
            **kwargs,
        )
        try:
            trainer.fit(model, DataLoader(data, batch_size=per_step, drop_last=True))
        except Exception as e:  # plain DDP: expected
            lines = [ln for ln in str(e).splitlines() if ln.strip()]
            reason = next(
                (ln.strip() for ln in lines if "Error" in ln or "parameters" in ln), lines[0] if lines else ""
            )
            return {"variant": variant, "error": f"{type(e).__name__}: {reason[:200]}"}
        times = json.loads(path.read_text())
    g = sum(p.numel() for p in model.generator.parameters())
    d = sum(p.numel() for p in model.discriminator.parameters())
    floats = {"single": 0, "ddp_find_unused": (n_dis + 1) * (g + d)}.get(variant, n_dis * d + g)
    wall, cpu = [1000 * t for t in times["wall"][warmup:]], [1000 * t for t in times["cpu"][warmup:]]
    return {
        "variant": variant,
        "ms": statistics.median(wall),
        "min_ms": min(wall),
        "cpu_ms": statistics.median(cpu),
        "iters": len(wall),
        "wall_ms_all": wall,
        "cpu_ms_all": cpu,
        "allreduce_floats": floats,
        "g_params": g,
        "d_params": d,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["tiny", "demo"], choices=sorted(SIZES))
    parser.add_argument("--n-dis", nargs="+", type=int, default=[1, 5])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2, help="rounds over all variants (interleaved)")
    parser.add_argument("--out", type=Path, default=None, help="also write a markdown table (+ .json)")
    args = parser.parse_args()
    torch.set_num_threads(1)  # forked ranks: one thread each (libgomp is not fork-safe), 2 ranks on 2 cores

    rows = []
    for size in args.sizes:
        for n_dis in args.n_dis:
            for rep in range(args.repeats):
                for variant in args.variants:
                    if variant == "ddp" and rep > 0:
                        continue
                    r = {
                        "size": size,
                        "n_dis": n_dis,
                        "repeat": rep,
                        **run(variant, size, n_dis, args.iters, args.warmup),
                    }
                    rows.append(r)
                    shown = r.get("error") or (
                        f"{r['ms']:.1f} ms/iter (min {r['min_ms']:.1f}, CPU {r['cpu_ms']:.1f}), "
                        f"all-reduce {r['allreduce_floats']:,} floats/iter"
                    )
                    print(f"{size:5s} n_dis={n_dis} rep {rep} {variant:16s} {shown}", flush=True)

    header = (
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}; 2 ranks x 1 thread "
        f"(gloo, fork); 'single': 1 process x 1 thread. SNDCGAN-32, widths {WIDTHS}, alpha 20, batch per "
        f"rank and D step: "
        + ", ".join(f"{k} {v['batch']} (ngf/ndf {v['ngf']})" for k, v in SIZES.items())
        + f". Median ms per iteration over {args.iters} iterations after {args.warmup} warm-up, rank 0."
    )
    lines = [
        "# DDP variants for the SlimGAN step (2 CPU processes)",
        "",
        header,
        "",
        "| size | n_dis | variant | wall ms / iter, median (per repeat) | wall ms, min | CPU ms / iter, rank 0 "
        "| floats all-reduced / iter |",
        "|---|---|---|---|---|---|---|",
    ]
    keys = []
    for r in rows:
        key = (r["size"], r["n_dis"], r["variant"])
        if key not in keys:
            keys.append(key)
    for key in keys:
        same = [r for r in rows if (r["size"], r["n_dis"], r["variant"]) == key]
        if "error" in same[0]:
            lines.append(f"| {key[0]} | {key[1]} | {key[2]} | fails: {same[0]['error']} | | | |")
        else:
            ms = " / ".join(f"{r['ms']:.1f}" for r in same)
            low = " / ".join(f"{r['min_ms']:.1f}" for r in same)
            cpu = " / ".join(f"{r['cpu_ms']:.1f}" for r in same)
            lines.append(f"| {key[0]} | {key[1]} | {key[2]} | {ms} | {low} | {cpu} | {same[0]['allreduce_floats']:,} |")
    table = "\n".join(lines) + "\n"
    print("\n" + table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table)
        args.out.with_suffix(".json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
