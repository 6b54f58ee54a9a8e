"""Benchmark one SlimGAN training iteration: precision, memory format and compilation modes, against
fp32 and against four separately trained single-width GANs, all in the same run.

For SNDCGAN-32 at the reference size (ngf 512, ndf 512, 3x32x32, batch 64, n_dis 1, widths
[0.25, 0.5, 0.75, 1.0], alpha 20 stepwise, n_share 2) and at the demo size (ngf/ndf 128, 1x32x32)
it prints, per mode (``--modes``: fp32, bf16-mixed, channels_last, bf16-mixed+channels_last,
compile, ...): ms per iteration (median after warm-up), its ratio to fp32 measured in the same run,
FLOPs of one iteration (torch.utils.flop_counter), achieved GFLOP/s; for fp32 also the conv
throughput of the iteration's own conv calls replayed bare and the peak conv throughput; and the
summed time of one iteration of four single-width GANs (dense generator of ngf*w channels, same
full-width D) in fp32. Iterations run through the real Lightning loop (manual optimization), so
the figures include it. ``compile`` modes compile during the first (untimed) iteration: its time
is reported as the compile time.

    python experiments/benchmarks/train_step.py [--iters 6] [--warmup 2] [--sizes reference demo]
        [--modes fp32 bf16-mixed channels_last ...] [--distill-forward separate concat]
        [--profile] [--note "load conditions"] [--out experiments/results/train_step.md]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.data import DataLoader, TensorDataset
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
        self.cpu_times: list[float] = []  # process CPU time (all threads): less sensitive to other jobs
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
        self._t0, self._cpu0 = time.perf_counter(), time.process_time()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        elapsed, cpu = time.perf_counter() - self._t0, time.process_time() - self._cpu0
        if self._mode is None:
            self.times.append(elapsed)
            self.cpu_times.append(cpu)
            return
        self._mode.__exit__(None, None, None)  # instrumented iterations are slower: not timed
        if isinstance(self._mode, FlopCounterMode):
            self.flops = self._mode.get_total_flops()
        self._mode = None


def run_iterations(
    model: SlimGAN, batch: int, iters: int, warmup: int, precision: str = "32-true", instrument: bool = True
) -> dict:
    """Runs warm-up + (2 instrumented) + ``iters`` timed iterations. Returns ``sec`` (median seconds per
    timed iteration), ``first_sec`` (the first iteration: includes compilation), ``flops`` (FLOPs of
    one iteration) and ``calls`` (its conv kernel calls); the last two only when ``instrument``
    (dispatch modes around a compiled model would recompile it)."""
    c = model.generator.img_channels
    extra = 2 if instrument else 0
    total = iters + warmup + extra
    n = batch * model.hparams.n_dis * total
    data = TensorDataset(torch.rand(n, c, 32, 32) * 2 - 1, torch.zeros(n, dtype=torch.long))
    timer = IterationTimer(flop_iteration=warmup if instrument else -10)  # count FLOPs right after warm-up
    trainer = pl.Trainer(
        max_steps=total * (model.hparams.n_dis + 1),
        accelerator="cpu",
        precision=precision,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
    )
    trainer.fit(model, DataLoader(data, batch_size=batch * model.hparams.n_dis, drop_last=True))
    return dict(
        sec=statistics.median(timer.times[warmup:]),
        cpu_sec=statistics.median(timer.cpu_times[warmup:]),
        first_sec=timer.times[0],
        flops=timer.flops,
        calls=timer.recorder.calls,
    )


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
        (64, 128, 3, 1, 16),
        (128, 128, 4, 2, 16),
        (128, 256, 3, 1, 8),
        (256, 512, 3, 1, 4),
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


# mode name -> (trainer.precision, SlimGAN switches)
MODES = {
    "fp32": ("32-true", {}),
    "bf16-mixed": ("bf16-mixed", {}),
    "channels_last": ("32-true", {"channels_last": True}),
    "bf16-mixed+channels_last": ("bf16-mixed", {"channels_last": True}),
    "compile": ("32-true", {"compile_networks": True}),
    "bf16-mixed+compile": ("bf16-mixed", {"compile_networks": True}),
}


def slim_model(size: dict, distill_forward: str = "separate", **switches) -> SlimGAN:
    return SlimGAN(
        generator=dict(arch="sndcgan32", ngf=size["ngf"], img_channels=size["img_channels"]),
        discriminator=dict(arch="sndcgan32", ndf=size["ndf"]),
        widths=WIDTHS,
        n_share=2,
        alpha=20.0,
        stepwise=True,
        distill_forward=distill_forward,
        n_dis=1,
        g_betas=(0.5, 0.999),
        d_betas=(0.5, 0.999),
        **switches,
    )


def single_width_model(size: dict, width: float) -> SlimGAN:
    """An ordinary GAN at one width: dense G with ngf*w channels, full-width D, no distillation."""
    return SlimGAN(
        generator=dict(arch="sndcgan32", ngf=round(size["ngf"] * width), img_channels=size["img_channels"]),
        discriminator=dict(arch="sndcgan32", ndf=size["ndf"]),
        widths=[1.0],
        n_share=0,
        alpha=0.0,
        n_dis=1,
        g_betas=(0.5, 0.999),
        d_betas=(0.5, 0.999),
    )


def profile_iteration(size: dict, batch: int, precision: str = "32-true", rows: int = 15, **switches) -> str:
    """torch.profiler tables of one iteration after two warm-up iterations: top ops by self CPU time,
    and the copies and zero-fills grouped by tensor shape (weight-shaped ones come from slicing)."""
    from torch.profiler import ProfilerActivity, profile

    class Profile(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if batch_idx == 2:
                self.prof = profile(activities=[ProfilerActivity.CPU], record_shapes=True)
                self.prof.__enter__()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if batch_idx == 2:
                self.prof.__exit__(None, None, None)

    model = slim_model(size, **switches)
    data = TensorDataset(torch.rand(3 * batch, size["img_channels"], 32, 32) * 2 - 1, torch.zeros(3 * batch).long())
    prof = Profile()
    pl.Trainer(
        max_steps=6,
        accelerator="cpu",
        precision=precision,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[prof],
    ).fit(model, DataLoader(data, batch_size=batch))
    events = prof.prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    top = sorted(events, key=lambda e: -e.self_cpu_time_total)[:rows]
    lines = [
        f"| {e.key} | {e.self_cpu_time_total / 1e3:.1f} | {100 * e.self_cpu_time_total / total:.1f}% | {e.count} |"
        for e in top
    ]
    weight_shapes = {tuple(t.shape) for t in model.parameters()}

    def fits_a_weight(shape: tuple) -> bool:  # a weight or a slice of one (or an activation of such a shape)
        return any(len(w) == len(shape) and all(a <= b for a, b in zip(shape, w)) for w in weight_shapes)

    by_shape: dict[tuple, list[float]] = {}
    for e in prof.prof.events():
        if e.name in ("aten::copy_", "aten::fill_") and e.input_shapes:
            key = (e.name, tuple(e.input_shapes[0]))
            by_shape.setdefault(key, []).append(e.self_cpu_time_total)
    copies = sorted(by_shape.items(), key=lambda kv: -sum(kv[1]))
    weight_ms = sum(sum(v) for (name, shape), v in copies if fits_a_weight(shape)) / 1e3
    copy_lines = [
        f"| {name} | {list(shape)} | {'weight or slice' if fits_a_weight(shape) else 'activation / other'} "
        f"| {sum(v) / 1e3:.1f} | {len(v)} |"
        for (name, shape), v in copies[:rows]
    ]
    return (
        "| op | self CPU ms | share | calls |\n|---|---|---|---|\n"
        + "\n".join(lines)
        + f"\n\nTotal self CPU time of the iteration (profiled, so slower than the timed runs): {total / 1e3:.0f} ms\n"
        + "\nCopies and fills by shape (*weight or slice*: the shape fits inside a weight, so it may come "
        "from slicing a weight or its gradient; an upper bound, as an activation may have such a shape):\n\n"
        + "| op | shape | kind | self CPU ms | calls |\n|---|---|---|---|---|\n"
        + "\n".join(copy_lines)
        + "\n\nAll weight-or-slice-shaped copies and fills (upper bound of what slicing costs): "
        + f"{weight_ms:.1f} ms ({100 * weight_ms * 1e3 / total:.2f}% of the "
        f"iteration).\n"
    )


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--iters", type=int, default=6)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    p.add_argument(
        "--modes",
        nargs="+",
        default=["fp32", "bf16-mixed", "channels_last", "bf16-mixed+channels_last", "compile"],
        choices=list(MODES),
    )
    p.add_argument("--distill-forward", nargs="+", default=["separate"], choices=["separate", "concat"])
    p.add_argument("--no-separate", action="store_true", help="skip the four single-width GANs")
    p.add_argument("--no-conv-throughput", action="store_true", help="skip the peak and bare-conv measurements")
    p.add_argument("--no-flops", action="store_true", help="skip counting FLOPs (two instrumented iterations)")
    p.add_argument("--profile", action="store_true", help="also profile one fp32 iteration at the demo size")
    p.add_argument("--note", default="", help="conditions of the run (e.g. machine load), written to the table")
    p.add_argument("--out", type=Path, default=Path("experiments/results/train_step.md"))
    args = p.parse_args()
    if "fp32" not in args.modes:
        args.modes.insert(0, "fp32")  # every ratio is against fp32 of the same run
    torch.manual_seed(0)
    pl.seed_everything(0, verbose=False)

    peak, peak_name = (float("nan"), "not measured") if args.no_conv_throughput else peak_conv_throughput(args.batch)
    print(f"peak conv throughput (best single large conv, fwd+bwd): {peak:.1f} GFLOP/s [{peak_name}]", flush=True)
    rows = []
    for size_name in args.sizes:
        size = SIZES[size_name]
        sep_ms = sep_gflop = None
        if not args.no_separate:
            separate = [
                run_iterations(single_width_model(size, w), args.batch, args.iters, args.warmup) for w in WIDTHS
            ]
            for w, r in zip(WIDTHS, separate):
                print(
                    f"[{size_name}] single-width GAN w={w}: {r['sec'] * 1e3:.0f} ms, {r['flops'] / 1e9:.1f} GFLOP",
                    flush=True,
                )
            sep_ms, sep_gflop = sum(r["sec"] for r in separate) * 1e3, sum(r["flops"] for r in separate) / 1e9
        for forward in args.distill_forward:
            fp32_ms = fp32_flops = None
            for mode in args.modes:
                precision, switches = MODES[mode]
                compiled = switches.get("compile_networks", False)
                torch.manual_seed(0)
                model = slim_model(size, forward, **switches)
                try:
                    # FLOPs are counted in fp32 only: every mode does the same arithmetic
                    r = run_iterations(
                        model,
                        args.batch,
                        args.iters,
                        args.warmup + compiled,
                        precision,
                        instrument=mode == "fp32" and not args.no_flops,
                    )
                except Exception as e:  # e.g. no C++ compiler for torch.compile: report and go on
                    print(f"[{size_name}] {mode}: failed: {type(e).__name__}: {str(e).splitlines()[0]}", flush=True)
                    rows.append(dict(size=size_name, distill_forward=forward, mode=mode, failed=str(e).splitlines()[0]))
                    continue
                ms = r["sec"] * 1e3
                flops = r["flops"] or fp32_flops
                if mode == "fp32":
                    fp32_ms, fp32_flops = ms, flops
                row = dict(
                    size=size_name,
                    distill_forward=forward,
                    mode=mode,
                    precision=precision,
                    **switches,
                    ms=ms,
                    ratio_vs_fp32=ms / fp32_ms,
                    cpu_ms=r["cpu_sec"] * 1e3,
                    first_iteration_s=r["first_sec"],
                    gflop=flops / 1e9 if flops else None,
                    gflops_per_s=flops / r["sec"] / 1e9 if flops else None,
                    four_separate_ms=sep_ms,
                    four_separate_gflop=sep_gflop,
                    ratio_vs_separate=ms / sep_ms if sep_ms else None,
                )
                row["cpu_ratio_vs_fp32"] = row["cpu_ms"] / next(
                    x["cpu_ms"]
                    for x in rows + [row]
                    if x.get("mode") == "fp32" and x["size"] == size_name and x["distill_forward"] == forward
                )
                if mode == "fp32" and not (args.no_conv_throughput or args.no_flops):
                    bare = replay_conv_throughput(r["calls"])
                    row.update(
                        bare_conv_gflops_per_s=bare,
                        pct_of_bare_conv=100 * row["gflops_per_s"] / bare,
                        peak_conv_gflops_per_s=peak,
                        pct_of_peak_conv=100 * row["gflops_per_s"] / peak,
                    )
                rows.append(row)
                print(
                    f"[{size_name}] {forward} {mode}: {ms:.0f} ms/iter ({row['ratio_vs_fp32']:.2f}x fp32), "
                    f"CPU {row['cpu_ms']:.0f} ms ({row['cpu_ratio_vs_fp32']:.2f}x), "
                    f"{fmt(row['gflop'], '.1f')} GFLOP, {fmt(row['gflops_per_s'], '.1f')} GFLOP/s, first iteration "
                    f"{r['first_sec']:.1f} s",
                    flush=True,
                )

    header = (
        "| size | G-step forwards | mode | ms / iter | x fp32 | CPU ms / iter | CPU x fp32 | GFLOP / iter | GFLOP/s "
        "| first iteration s | four separate (fp32) ms | slim / separate |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = "".join(
        f"| {r['size']} | {r['distill_forward']} | {r['mode']} | failed: {r['failed'][:80]} |||||||||\n"
        if "failed" in r
        else f"| {r['size']} | {r['distill_forward']} | {r['mode']} | {r['ms']:.0f} | {r['ratio_vs_fp32']:.2f} "
        f"| {r['cpu_ms']:.0f} | {r['cpu_ratio_vs_fp32']:.2f} "
        f"| {fmt(r['gflop'], '.1f')} | {fmt(r['gflops_per_s'], '.1f')} | {r['first_iteration_s']:.1f} "
        f"| {fmt(r['four_separate_ms'], '.0f')} | {fmt(r['ratio_vs_separate'], '.2f')} |\n"
        for r in rows
    )
    conv_lines = "".join(
        f"- {r['size']}, fp32: {r['gflops_per_s']:.1f} GFLOP/s = {r['pct_of_bare_conv']:.0f}% of the same convs "
        f"run bare ({r['bare_conv_gflops_per_s']:.1f} GFLOP/s), {r['pct_of_peak_conv']:.0f}% of peak conv.\n"
        for r in rows
        if "pct_of_bare_conv" in r
    )
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load = os.getloadavg()
    meta = (
        f"Run {now}. Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; load average at the end "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1 / 5 / 15 min). {args.note}\n\n"
        f"Batch {args.batch}, median of {args.iters} iterations after {args.warmup} warm-up (compiled modes: "
        f"one more, the compiling one, whose time is *first iteration s*), through the Lightning loop. "
        f"*x fp32*: ms / fp32's ms of the same size in this run. *CPU ms*: process CPU time of the iteration "
        f"(all threads; less disturbed by other jobs than wall time on a shared machine). "
        f"GFLOP counted by torch.utils.flop_counter "
        f"(in the fp32 run; every mode does the same arithmetic).\n\n"
    )
    conv = (
        "Conv throughput (fp32): *same convs bare* replays every convolution kernel call of one iteration "
        f"alone on dense contiguous tensors; *peak* is the best single large conv fwd+bwd ({peak:.1f} GFLOP/s, "
        f"{peak_name}).\n\n" + conv_lines
    )
    table = header + lines
    print("\n" + table)
    body = "# SlimGAN training iteration benchmark (SNDCGAN-32)\n\n" + meta + table + "\n" + conv
    if args.profile:
        print("profiling one fp32 iteration at the demo size ...", flush=True)
        body += (
            "\n## Profile: one fp32 iteration at the demo size (torch.profiler, top ops by self CPU time)\n\n"
            + profile_iteration(SIZES["demo"], args.batch)
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(body)
    args.out.with_suffix(".json").write_text(json.dumps(rows, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
