"""Benchmark one SlimGAN training iteration against four separately trained single-width GANs.

For SNDCGAN-32 at the reference size (ngf 512, ndf 512, 3x32x32, batch 64, n_dis 1, widths
[0.25, 0.5, 0.75, 1.0], alpha 20 stepwise, n_share 2) and at the demo size (ngf/ndf 128, 1x32x32)
it prints: ms per iteration (median after warm-up), FLOPs of one iteration (torch.utils.flop_counter),
achieved GFLOP/s, this machine's conv throughput measured in the same run, and the summed time of
one iteration of four single-width GANs (dense generator of ngf*w channels, same full-width D).
Iterations run through the real Lightning loop (manual optimization), so the figures include it.

    python experiments/benchmarks/train_step.py [--iters 6] [--warmup 2] [--sizes reference demo]
        [--distill-forward separate concat] [--out experiments/results/train_step.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from slimgan_pl import SlimGAN

WIDTHS = [0.25, 0.5, 0.75, 1.0]
SIZES = {
    "reference": dict(ngf=512, ndf=512, img_channels=3),
    "demo": dict(ngf=128, ndf=128, img_channels=1),
}


class IterationTimer(pl.Callback):
    """Wall time of every training iteration; FLOPs and conv calls of two chosen (untimed) ones."""

    def __init__(self, flop_iteration: int) -> None:
        self.times: list[float] = []
        self.flop_iteration, self.flops = flop_iteration, 0
        self.recorder = ConvRecorder()
        self._mode: TorchDispatchMode | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == self.flop_iteration:
            self._mode = FlopCounterMode(display=False)
        elif batch_idx == self.flop_iteration + 1:
            self._mode = self.recorder
        if self._mode is not None:
            self._mode.__enter__()
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        elapsed = time.perf_counter() - self._t0
        if self._mode is None:
            self.times.append(elapsed)
            return
        self._mode.__exit__(None, None, None)  # instrumented iterations are slower: not timed
        if isinstance(self._mode, FlopCounterMode):
            self.flops = self._mode.get_total_flops()
        self._mode = None


def run_iterations(model: SlimGAN, batch: int, iters: int, warmup: int) -> tuple[float, int, list]:
    """(median seconds per iteration after warm-up, FLOPs of one iteration, its conv calls)."""
    c = model.generator.img_channels
    total = iters + warmup + 2
    n = batch * model.hparams.n_dis * total
    data = TensorDataset(torch.rand(n, c, 32, 32) * 2 - 1, torch.zeros(n, dtype=torch.long))
    timer = IterationTimer(flop_iteration=warmup)  # count FLOPs right after warm-up
    trainer = pl.Trainer(max_steps=total * (model.hparams.n_dis + 1), accelerator="cpu",
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[timer])
    trainer.fit(model, DataLoader(data, batch_size=batch * model.hparams.n_dis, drop_last=True))
    return statistics.median(timer.times[warmup:]), timer.flops, timer.recorder.calls


class ConvRecorder(TorchDispatchMode):
    """Records every convolution kernel call (forward and backward) with its shapes and arguments."""

    OPS = (torch.ops.aten.convolution.default, torch.ops.aten.convolution_backward.default)

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in self.OPS:
            spec = [("tensor", a.shape, a.dtype) if isinstance(a, torch.Tensor) else ("value", a) for a in args]
            self.calls.append((func, spec))
        return func(*args, **(kwargs or {}))


def replay_conv_throughput(calls: list[tuple], repeats: int = 3) -> float:
    """GFLOP/s of the recorded conv kernel calls replayed alone on dense, contiguous tensors: the
    conv throughput this machine reaches on exactly the iteration's conv work, with no framework,
    slicing, BN, activation, optimizer or data overhead around it."""
    def materialise(spec):
        return [torch.randn(s[1], dtype=s[2]) if s[0] == "tensor" else s[1] for s in spec]

    prepared = [(func, materialise(spec)) for func, spec in calls]
    with FlopCounterMode(display=False) as fc:
        for func, args in prepared:
            func(*args)
    times = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        for func, args in prepared:
            func(*args)
        times.append(time.perf_counter() - t0)
    return fc.get_total_flops() / statistics.median(times[1:]) / 1e9


def peak_conv_throughput(batch: int, repeats: int = 5) -> tuple[float, str]:
    """Best GFLOP/s of one large conv forward+backward among shapes of SNDCGAN-32's D."""
    shapes = [  # (C_in, C_out, k, stride, H_in)
        (64, 128, 3, 1, 16), (128, 128, 4, 2, 16), (128, 256, 3, 1, 8), (256, 512, 3, 1, 4),
    ]
    best, best_name = 0.0, ""
    for c_in, c_out, k, s, h in shapes:
        x = torch.randn(batch * 2, c_in, h, h, requires_grad=True)
        w = torch.randn(c_out, c_in, k, k, requires_grad=True)
        with FlopCounterMode(display=False) as fc:
            F.conv2d(x, w, stride=s, padding=1).sum().backward()
        flops = fc.get_total_flops()
        times = []
        for _ in range(repeats + 1):
            t0 = time.perf_counter()
            F.conv2d(x, w, stride=s, padding=1).sum().backward()
            times.append(time.perf_counter() - t0)
        gflops = flops / statistics.median(times[1:]) / 1e9
        if gflops > best:
            best, best_name = gflops, f"conv{k}x{k}/s{s} {c_in}->{c_out} @{h}x{h}, batch {batch * 2}"
    return best, best_name


def slim_model(size: dict, distill_forward: str) -> SlimGAN:
    return SlimGAN(generator=dict(arch="sndcgan32", ngf=size["ngf"], img_channels=size["img_channels"]),
                   discriminator=dict(arch="sndcgan32", ndf=size["ndf"]), widths=WIDTHS, n_share=2,
                   alpha=20.0, stepwise=True, distill_forward=distill_forward, n_dis=1,
                   g_betas=(0.5, 0.999), d_betas=(0.5, 0.999))


def single_width_model(size: dict, width: float) -> SlimGAN:
    """An ordinary GAN at one width: dense G with ngf*w channels, full-width D, no distillation."""
    return SlimGAN(generator=dict(arch="sndcgan32", ngf=round(size["ngf"] * width), img_channels=size["img_channels"]),
                   discriminator=dict(arch="sndcgan32", ndf=size["ndf"]), widths=[1.0], n_share=0,
                   alpha=0.0, n_dis=1, g_betas=(0.5, 0.999), d_betas=(0.5, 0.999))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--iters", type=int, default=6)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    p.add_argument("--distill-forward", nargs="+", default=["separate", "concat"], choices=["separate", "concat"])
    p.add_argument("--out", type=Path, default=Path("experiments/results/train_step.md"))
    args = p.parse_args()
    torch.manual_seed(0)
    pl.seed_everything(0, verbose=False)

    peak, peak_name = peak_conv_throughput(args.batch)
    print(f"peak conv throughput (best single large conv, fwd+bwd): {peak:.1f} GFLOP/s [{peak_name}]")
    rows = []
    for size_name in args.sizes:
        size = SIZES[size_name]
        separate = [run_iterations(single_width_model(size, w), args.batch, args.iters, args.warmup) for w in WIDTHS]
        for w, (sec, flops, _) in zip(WIDTHS, separate):
            print(f"[{size_name}] single-width GAN w={w}: {sec * 1e3:.0f} ms, {flops / 1e9:.1f} GFLOP")
        sep_sec, sep_flops = sum(r[0] for r in separate), sum(r[1] for r in separate)
        for mode in args.distill_forward:
            sec, flops, calls = run_iterations(slim_model(size, mode), args.batch, args.iters, args.warmup)
            bare = replay_conv_throughput(calls)
            achieved = flops / sec / 1e9
            row = dict(size=size_name, distill_forward=mode, ms=sec * 1e3, gflop=flops / 1e9, gflops_per_s=achieved,
                       bare_conv_gflops_per_s=bare, pct_of_bare_conv=100 * achieved / bare,
                       peak_conv_gflops_per_s=peak, pct_of_peak_conv=100 * achieved / peak,
                       four_separate_ms=sep_sec * 1e3, four_separate_gflop=sep_flops / 1e9,
                       ratio_vs_separate=sec / sep_sec)
            rows.append(row)
            print(f"[{size_name}] SlimGAN ({mode}): {row['ms']:.0f} ms/iter, {row['gflop']:.1f} GFLOP, "
                  f"{achieved:.1f} GFLOP/s = {row['pct_of_bare_conv']:.0f}% of the same convs run bare "
                  f"({bare:.1f} GFLOP/s), {row['pct_of_peak_conv']:.0f}% of peak conv; four separate: "
                  f"{row['four_separate_ms']:.0f} ms ({row['four_separate_gflop']:.1f} GFLOP); "
                  f"ratio {row['ratio_vs_separate']:.2f}")

    header = ("| size | G-step forwards | ms / iter | GFLOP / iter | GFLOP/s | same convs bare, GFLOP/s | % of bare "
              "| % of peak conv | four separate ms | four separate GFLOP | slim / separate |\n"
              "|---|---|---|---|---|---|---|---|---|---|---|\n")
    lines = "".join(
        f"| {r['size']} | {r['distill_forward']} | {r['ms']:.0f} | {r['gflop']:.1f} | {r['gflops_per_s']:.1f} "
        f"| {r['bare_conv_gflops_per_s']:.1f} | {r['pct_of_bare_conv']:.0f}% | {r['pct_of_peak_conv']:.0f}% "
        f"| {r['four_separate_ms']:.0f} | {r['four_separate_gflop']:.1f} | {r['ratio_vs_separate']:.2f} |\n"
        for r in rows)
    meta = (f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads. Batch {args.batch}, median of {args.iters} iterations after "
            f"{args.warmup} warm-up, through the Lightning loop.\n\n"
            f"- *same convs bare*: every convolution kernel call of one SlimGAN iteration (forward and backward, "
            f"recorded with a dispatch mode) replayed alone on dense contiguous tensors: the conv throughput this "
            f"machine reaches on exactly this work.\n"
            f"- *peak conv*: the best single large conv fwd+bwd ({peak:.1f} GFLOP/s, {peak_name}).\n\n")
    table = header + lines
    print("\n" + table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("# SlimGAN training iteration benchmark (SNDCGAN-32)\n\n" + meta + table)
    args.out.with_suffix(".json").write_text(json.dumps(rows, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
