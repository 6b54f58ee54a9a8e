"""Per-width cost of a slimmable generator: active parameters, MACs, CPU latency."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from slimgan_pl.nn import (
    SliceableConditionalBatchNorm2d,
    SwitchableBatchNorm2d,
    SwitchableConditionalBatchNorm2d,
    slim_channels,
)
from slimgan_pl.nn.universal import UniversalBatchNorm2d
from slimgan_pl.sampling import eval_mode

_SLICED = (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)

if TYPE_CHECKING:
    from torch.utils.benchmark import Measurement


def _label_kwargs(generator: nn.Module, n: int) -> dict[str, torch.Tensor]:
    """``{"y": class ids 0, 1, ...}`` for a conditional generator (the cost does not depend on the
    classes), else ``{}`` so that wrappers taking only ``(z, width)`` keep working."""
    num_classes = int(getattr(generator, "num_classes", 0) or 0)
    return {"y": torch.arange(n) % num_classes} if num_classes else {}


def active_parameters(generator: nn.Module, width: float) -> int:
    """Parameters a forward pass at ``width`` uses: weight/bias slices of slimmable layers, the
    width's own switchable (conditional) BN, the width's gamma/beta columns of a sliceable
    conditional BN's shared class embedding (all classes), and every other parameter in full."""
    if hasattr(generator, "network_at"):  # the native baseline (models/baseline.py): its network at full size
        generator, width = generator.network_at(width)
    total, handled = 0, set()
    for module in generator.modules():
        if isinstance(module, (SwitchableBatchNorm2d, SwitchableConditionalBatchNorm2d)):
            handled.update(id(p) for p in module.parameters())
            total += sum(p.numel() for p in module.for_width(width).parameters())
        elif isinstance(module, UniversalBatchNorm2d):  # universal models: the sliced affine
            handled.update(id(p) for p in module.parameters())
            total += 2 * slim_channels(module.num_features, width) if module.affine else 0
        elif isinstance(module, SliceableConditionalBatchNorm2d):
            handled.add(id(module.embed.weight))  # its per-width BNs are counted by the branch above
            total += module.num_classes * 2 * slim_channels(module.num_features, width)
        elif isinstance(module, _SLICED) and hasattr(module, "active"):
            handled.update(id(p) for p in module.parameters())  # incl. a spectral-norm parametrization's original
            in_w, out_w = module.active(width)
            total += in_w * out_w * math.prod(module.weight.shape[2:])
            total += out_w if module.bias is not None else 0
    return total + sum(p.numel() for p in generator.parameters() if id(p) not in handled)


@torch.no_grad()
def generator_macs(generator: nn.Module, width: float, nz: int) -> int:
    """Multiply-accumulates of one image at ``width``: FLOPs counted by torch's FlopCounterMode
    (conv, transposed conv, matmul; normalisation and activations are not counted) divided by 2."""
    with eval_mode(generator), FlopCounterMode(display=False) as counter:
        generator(torch.zeros(1, nz), width=width, **_label_kwargs(generator, 1))
    return counter.get_total_flops() // 2


CLOCKS = ("auto", "cpu", "wall")
MAX_SPREAD = 0.2  # IQR / median above this (or a narrower width slower than a wider one) is unstable
MAX_ROUNDS = 3  # timing rounds at most before reporting an unstable measurement
BUSY_RATIO = 1.5  # wall-clock median this many times the CPU time: other processes share the core


@dataclass
class Latency:
    """One width's timing: the median and IQR of single forwards on ``clock`` (``cpu``: the thread's CPU
    time, ``wall``: wall-clock time), the wall-clock median beside it, with ``threads`` torch threads."""

    median_ms: float
    iqr_ms: float
    wall_ms: float
    samples: int
    threads: int
    clock: str

    @property
    def spread(self) -> float:
        """IQR / median: the relative spread of the single forwards."""
        return self.iqr_ms / self.median_ms if self.median_ms > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "spread": round(self.spread, 4)}


@dataclass
class Timing:
    """The latencies of several widths timed together (:func:`time_widths`), the rounds it took and
    what was unstable after the last one (empty: stable)."""

    latencies: dict[float, Latency]
    rounds: int
    repeats: int
    warmup: int
    threads: int
    clock: str
    max_spread: float
    problems: list[str] = field(default_factory=list)

    @property
    def stable(self) -> bool:
        return not self.problems

    @property
    def busy_ratio(self) -> float:
        """The largest wall-clock / CPU-time ratio of the medians (1 on a core of one's own; cpu clock only)."""
        if self.clock != "cpu":
            return 1.0
        return max((t.wall_ms / t.median_ms for t in self.latencies.values() if t.median_ms > 0), default=1.0)

    def summary(self) -> str:
        """One line saying how the numbers were measured (printed above the tables)."""
        what = "CPU time" if self.clock == "cpu" else "wall-clock time"
        busy = ""
        if self.busy_ratio > BUSY_RATIO:
            busy = (
                f"; the CPU is busy (wall-clock up to {self.busy_ratio:.1f}x the CPU time), the CPU time is what a "
                "free core would take"
            )
        return (
            f"timing: {self.threads} torch thread{'s' if self.threads != 1 else ''}, {what} of single forwards, "
            f"median of {self.repeats} x {self.rounds} round{'s' if self.rounds != 1 else ''} per width "
            f"(widths interleaved), spread = IQR/median{busy}"
        )

    def warning(self, advice: str = "close other jobs") -> str | None:
        """The one warning line for an unstable measurement (ending with ``advice``), None when stable."""
        if self.stable:
            return None
        if self.threads != 1:
            advice += ", time with one thread (--threads 1)"
        return (
            f"warning: unstable timing after {self.rounds} rounds ({'; '.join(self.problems)}): these latencies "
            f"may change from run to run; {advice}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "threads": self.threads,
            "clock": self.clock,
            "repeats": self.repeats,
            "warmup": self.warmup,
            "rounds": self.rounds,
            "max_spread": self.max_spread,
            "stable": self.stable,
            "problems": list(self.problems),
            "busy_ratio": round(self.busy_ratio, 3),
        }


def resolve_clock(clock: str, threads: int) -> str:
    """``auto``: the thread's CPU time with one thread (other processes taking turns on the core do not
    count), wall-clock time with more (CPU time would add up the threads)."""
    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {list(CLOCKS)}, got {clock!r}")
    if threads < 1:
        raise ValueError(f"--threads must be >= 1, got {threads}")
    if clock == "cpu" and threads != 1:
        raise ValueError(
            f"the cpu clock needs one torch thread (CPU time adds up the threads), got --threads {threads}"
        )
    return clock if clock != "auto" else ("cpu" if threads == 1 else "wall")


def timing_problems(latencies: Mapping[float, Latency], macs: Mapping[float, int], max_spread: float) -> list[str]:
    """What makes a measurement unstable: a width whose spread is above ``max_spread``, or a narrower
    (fewer MACs) width measured slower than a wider one by more than their noise (the mean of their IQRs,
    at least 5% of the wider one's median)."""
    problems = [f"{w}x spread {t.spread:.0%} > {max_spread:.0%}" for w, t in latencies.items() if t.spread > max_spread]
    widths = sorted(latencies)
    for i, narrow in enumerate(widths):
        for wide in widths[i + 1 :]:
            a, b = latencies[narrow], latencies[wide]
            noise = max((a.iqr_ms + b.iqr_ms) / 2, 0.05 * b.median_ms)
            if macs[narrow] < macs[wide] and a.median_ms - b.median_ms > noise:
                problems.append(f"{narrow}x ({a.median_ms:.2f} ms) slower than {wide}x ({b.median_ms:.2f} ms)")
    return problems


def _benchmark_utils() -> tuple[Any, Any, Any]:  # (Measurement, TaskSpec, set_torch_threads)
    """torch.utils.benchmark, imported when a timing runs: it imports torch.utils.cpp_extension, which logs
    "No CUDA runtime is found" on any CPU machine with nvcc on its PATH, a stray line in every tool's
    output (and in the one-line errors) that only timing needs."""
    import logging

    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    from torch.utils.benchmark import Measurement, set_torch_threads
    from torch.utils.benchmark.utils.common import TaskSpec

    return Measurement, TaskSpec, set_torch_threads


def _measurement(times_s: Sequence[float], threads: int, width: float) -> Measurement:
    Measurement, TaskSpec, _ = _benchmark_utils()
    return Measurement(1, list(times_s), TaskSpec("forward", "", sub_label=f"width {width}", num_threads=threads))


@torch.inference_mode()
def time_widths(
    forwards: Mapping[float, Callable[[], Any]],
    macs: Mapping[float, int] | None = None,
    repeats: int = 20,
    warmup: int = 3,
    threads: int = 1,
    clock: str = "auto",
    max_rounds: int = MAX_ROUNDS,
    max_spread: float = MAX_SPREAD,
) -> Timing:
    """Median and IQR of single calls of ``forwards[width]()`` with ``threads`` torch threads.

    Each round times ``repeats`` calls per width, the widths interleaved call by call (the order
    reversed every other call), so that a burst of load from other processes hits every width alike;
    the rounds continue (``max_rounds`` at most, samples pooled) while :func:`timing_problems` finds
    any. Single calls, not torch.utils.benchmark's ``blocked_autorange``: its blocks of 100-1000 calls
    (chosen to amortise the timer) average the time other processes hold the core into every block
    (measured on a loaded 2-core machine: 5-10x medians and one block, no spread), while the median of
    single calls keeps the calls that ran undisturbed; the statistics are torch.utils.benchmark's
    (:class:`~torch.utils.benchmark.Measurement`). ``macs`` (width -> MACs) orders widths for the
    narrower-slower check (default: by width)."""
    if repeats < 1 or warmup < 0 or max_rounds < 1:
        raise ValueError(f"need repeats >= 1, warmup >= 0, rounds >= 1, got {repeats}, {warmup}, {max_rounds}")
    clock = resolve_clock(clock, threads)
    macs = dict(macs) if macs is not None else {w: i for i, w in enumerate(sorted(forwards))}
    widths = sorted(forwards)
    wall: dict[float, list[float]] = {w: [] for w in widths}
    cpu: dict[float, list[float]] = {w: [] for w in widths}
    set_torch_threads = _benchmark_utils()[2]
    with set_torch_threads(threads):  # torch.set_num_threads inside the timing, restored after it
        for _ in range(warmup):
            for w in widths:
                forwards[w]()
        rounds, problems = 0, []
        while rounds < max_rounds and (rounds == 0 or problems):
            rounds += 1
            for i in range(repeats):
                for w in widths if i % 2 == 0 else widths[::-1]:
                    start_wall, start_cpu = time.perf_counter(), time.thread_time()
                    forwards[w]()
                    cpu[w].append(time.thread_time() - start_cpu)
                    wall[w].append(time.perf_counter() - start_wall)
            latencies = {}
            for w in widths:
                m = _measurement(cpu[w] if clock == "cpu" else wall[w], threads, w)
                latencies[w] = Latency(
                    m.median * 1e3,
                    m.iqr * 1e3,
                    _measurement(wall[w], threads, w).median * 1e3,
                    len(m.times),
                    threads,
                    clock,
                )
            problems = timing_problems(latencies, macs, max_spread)
    return Timing(latencies, rounds, repeats, warmup, threads, clock, max_spread, problems)


def generator_forward(generator: nn.Module, width: float, nz: int, batch: int, seed: int = 0) -> Callable[[], Any]:
    """One eval-mode forward of ``batch`` images at ``width`` (fixed z; class labels for a conditional
    generator), as :func:`time_widths` calls it; the caller holds :func:`eval_mode`."""
    z = torch.randn(batch, nz, generator=torch.Generator().manual_seed(seed))
    labels = _label_kwargs(generator, batch)
    return lambda: generator(z, width=width, **labels)


def time_generator(
    generator: nn.Module,
    widths: Sequence[float],
    nz: int,
    batch: int,
    repeats: int = 20,
    warmup: int = 3,
    threads: int = 1,
    clock: str = "auto",
    max_rounds: int = MAX_ROUNDS,
    max_spread: float = MAX_SPREAD,
) -> Timing:
    """:func:`time_widths` of a slimmable generator's forwards of ``batch`` images at ``widths``."""
    macs = {w: generator_macs(generator, w, nz) for w in widths}
    with eval_mode(generator):
        forwards = {w: generator_forward(generator, w, nz, batch) for w in widths}
        return time_widths(forwards, macs, repeats, warmup, threads, clock, max_rounds, max_spread)


def latency_ms(
    generator: nn.Module, width: float, nz: int, batch: int, repeats: int = 20, warmup: int = 3, seed: int = 0
) -> float:
    """Median wall time (ms) of one eval-mode forward of ``batch`` images on the CPU, after warm-up
    runs (allocator and kernel selection settle), with torch's current thread count. One width, one
    round: :func:`time_widths` for several widths, a stated thread count and the spread."""
    with eval_mode(generator):
        forward = generator_forward(generator, width, nz, batch, seed)
        timing = time_widths({width: forward}, None, repeats, warmup, torch.get_num_threads(), "wall", max_rounds=1)
    return timing.latencies[width].median_ms
