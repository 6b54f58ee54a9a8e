"""``slimgan-pick CHECKPOINT --budget-ms B | --budget-macs M [--batch N]``: the width to deploy within a
latency and/or MACs budget: the best measured quality (lowest FID in the run's metrics.json) among the
widths within the budget, or the widest of them when none has a measured FID; it prints the rule used.

Every trained width is timed on this machine's CPU with a stated number of torch threads
(``--threads``, default 1) by :func:`slimgan_pl.metrics.cost.time_widths`: single forwards, the widths
interleaved, median and spread (IQR/median) of ``--repeats`` per round, more rounds (``--rounds`` at most)
while a spread is above ``--max-spread`` or a narrower width is slower than a wider one; with one thread
the clock is the thread's CPU time, so other processes on a busy CPU do not inflate it. It times the dense
model ``slimgan-export`` would write by default (what gets deployed; ``--model slimmable`` times the
slimmable generator instead). The budget is checked against the largest median of the width and every
narrower one, so noise never makes a wider width fit where a narrower one does not; a measurement still
unstable after the last round says so in one warning line (and ``timing.stable`` in ``--json``).

The table lists latency, MACs per image and, when the run directory has a
``metrics.json`` from ``slimgan-eval`` (its full evaluation; reduced ones are named
``metrics-<protocol>-<counts>.json`` and not read), its FID: FMNIST-FID (Fashion-MNIST classifier)
or FID (Inception), labelled as the file says (``fmnist_fid`` below holds either). Exit status 0 with
a pick, 1 when even the narrowest width is over budget, 2 for usage errors.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from slimgan_pl.choices import WEIGHTS
from slimgan_pl.cli import cli_main
from slimgan_pl.deploy.common import fail

if TYPE_CHECKING:  # torch and the model load inside the functions: --help answers without them
    import torch

    from slimgan_pl.metrics.cost import Timing
    from slimgan_pl.module import SlimGAN

PROG = "slimgan-pick"
MODELS = ("exported", "slimmable")
# slimgan_pl.metrics.cost's CLOCKS, MAX_ROUNDS, MAX_SPREAD (test_deploy checks), spelled out so that parse_args
# needs nothing heavy
CLOCKS, MAX_ROUNDS, MAX_SPREAD = ("auto", "cpu", "wall"), 3, 0.2


@dataclass
class WidthCost:
    width: float
    latency_ms: float  # median of single forwards
    macs: int
    fmnist_fid: float | None = None
    spread: float = 0.0  # IQR / median of the forwards
    wall_ms: float | None = None  # wall-clock median (differs from latency_ms on a busy CPU with the cpu clock)


def read_fids(path: str | os.PathLike) -> dict[float, float]:
    """{width: FMNIST-FID} from a ``slimgan-eval`` metrics.json; {} if the file is absent or has none."""
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        rows = json.loads(path.read_text()).get("widths", [])
        key = fid_key(path)
        return {float(r["width"]): float(r[key]) for r in rows if r.get(key) is not None}
    except (ValueError, TypeError, KeyError, AttributeError):
        return {}  # an unreadable metrics file should not block picking a width


def fid_key(path: str | os.PathLike) -> str:
    """``fid`` (Inception) or ``fmnist_fid`` (the FMNIST classifier) for a metrics file; older
    files (no ``backbone`` entry) hold FMNIST-FID."""
    try:
        return json.loads(Path(path).read_text())["backbone"]["key_prefix"] + "fid"
    except (OSError, ValueError, TypeError, KeyError):
        return "fmnist_fid"


def _lookup(fids: dict[float, float], width: float, generator: torch.nn.Module | None = None) -> float | None:
    """The FID measured at ``width``; for a universal generator also at a width with the same channel
    counts (the same network)."""
    from slimgan_pl.universal import channel_signature, is_universal

    exact = next((fid for w, fid in fids.items() if abs(w - width) < 1e-6), None)
    if exact is not None or generator is None or not is_universal(generator):
        return exact
    signature = channel_signature(generator, width)
    lo, hi = generator.width_range
    same = [fid for w, fid in fids.items() if lo <= w <= hi and channel_signature(generator, w) == signature]
    return same[0] if same else None


def candidate_widths(
    model: SlimGAN, widths: Sequence[float] | None = None, step: float = 0.05
) -> tuple[list[float], list[str]]:
    """(widths to measure, notes): ``widths`` (default: the trained widths; for a universal model every
    ``step`` across slim.range), each checked (fixed-width models refuse untrained widths) and kept
    once per channel configuration (the notes name the widths that are the same network)."""
    from slimgan_pl.universal import channel_grid, distinct_widths, is_universal

    generator = model.generator
    if widths:
        for w in widths:
            generator.check_width(w)
        candidates = sorted({float(w) for w in widths})
    elif is_universal(generator):
        if not 0 < step <= 1:
            raise ValueError(f"--step must be in (0, 1], got {step}")
        candidates = channel_grid(generator, step)
    else:
        candidates = list(model.widths)
    return distinct_widths(generator, candidates)


def measure(
    model: SlimGAN,
    batch: int = 1,
    repeats: int = 20,
    warmup: int = 3,
    weights: str = "auto",
    model_kind: str = "exported",
    fids: dict[float, float] | None = None,
    widths: Sequence[float] | None = None,
    threads: int = 1,
    clock: str = "auto",
    rounds: int = MAX_ROUNDS,
    max_spread: float = MAX_SPREAD,
) -> tuple[list[WidthCost], Timing]:
    """(rows, timing): latency (ms, one forward of ``batch`` images; median and spread), MACs per image and
    FID of ``widths`` (default: every trained width), timed together by :func:`time_widths` with
    ``threads`` torch threads; a universal model is calibrated at them first."""
    from slimgan_pl.deploy.common import select_generator
    from slimgan_pl.deploy.dense import dense_generator, generator_meta
    from slimgan_pl.metrics.cost import generator_forward, generator_macs, time_widths
    from slimgan_pl.sampling import eval_mode
    from slimgan_pl.universal import calibrate_model

    if model_kind not in MODELS:
        raise ValueError(f"--model must be one of {list(MODELS)}, got {model_kind!r}")
    if batch < 1 or repeats < 1 or warmup < 0 or rounds < 1:
        raise ValueError(
            "need --batch >= 1, --repeats >= 1, --warmup >= 0, --rounds >= 1, "
            f"got {batch}, {repeats}, {warmup}, {rounds}"
        )
    generator, used = select_generator(model, weights)
    generator = generator.cpu()
    widths = list(model.widths) if not widths else list(widths)
    calibrate_model(model, widths, generator=generator)  # universal models only
    macs = {w: generator_macs(generator, w, generator.nz) for w in widths}
    nets = {}
    for w in widths:
        if model_kind == "exported":
            nets[w] = dense_generator(generator, w, generator_meta(generator, dict(model.hparams.generator), w, used))
        else:
            nets[w] = generator
    with ExitStack() as stack:
        for net in {id(n): n for n in nets.values()}.values():
            stack.enter_context(eval_mode(net))
        # cost.py passes class labels to conditional models (both kinds expose num_classes)
        forwards = {w: generator_forward(net, w, generator.nz, batch) for w, net in nets.items()}
        timing = time_widths(forwards, macs, repeats, warmup, threads, clock, rounds, max_spread)
    rows = []
    for w in widths:
        t = timing.latencies[w]
        rows.append(WidthCost(w, t.median_ms, macs[w], _lookup(fids or {}, w, generator), t.spread, t.wall_ms))
    return rows, timing


RULE_QUALITY = "quality"  # lowest measured FID among the widths within the budget
RULE_WIDEST = "widest"  # no FID for any width within the budget: the widest of them


def budget_latencies(rows: Sequence[WidthCost]) -> dict[float, float]:
    """{width: the latency the budget is checked against}: the largest median of the width and of every
    narrower one. A wider width (as many channels or more) is never truly faster than a narrower one, so
    one measured faster is noise, and must not fit a budget the narrower one misses."""
    return {r.width: max(o.latency_ms for o in rows if o.width <= r.width) for r in rows}


def within_budget(
    row: WidthCost,
    budget_ms: float | None = None,
    budget_macs: float | None = None,
    latency_ms: float | None = None,
) -> bool:
    """Whether ``row`` fits every budget given (None: no budget of that kind); ``latency_ms`` replaces
    the row's own latency (:func:`budget_latencies`)."""
    latency = row.latency_ms if latency_ms is None else latency_ms
    return (budget_ms is None or latency <= budget_ms) and (budget_macs is None or row.macs <= budget_macs)


def pick(
    rows: Sequence[WidthCost], budget_ms: float | None = None, budget_macs: float | None = None
) -> tuple[WidthCost | None, str]:
    """(chosen row or None, rule): among the rows within the budgets, the lowest measured FID when
    some of them have one (:data:`RULE_QUALITY`; a wider width is not always better, e.g. the demo's
    1.0x scores worse than its 0.5x), else the widest (:data:`RULE_WIDEST`). Latencies are checked as
    :func:`budget_latencies` gives them."""
    checked = budget_latencies(rows)
    fitting = [r for r in rows if within_budget(r, budget_ms, budget_macs, checked[r.width])]
    measured = [r for r in fitting if r.fmnist_fid is not None]
    if measured:  # ties: the narrower (cheaper) width
        return min(measured, key=lambda r: (r.fmnist_fid, r.width)), RULE_QUALITY
    return (max(fitting, key=lambda r: r.width) if fitting else None), RULE_WIDEST


def rule_text(rule: str, fid_label: str = "FMNIST-FID") -> str:
    """The sentence saying which rule chose the width."""
    if rule == RULE_QUALITY:
        return f"rule: lowest measured {fid_label} within the budget (metrics file)"
    return "rule: widest width within the budget (no measured quality for the widths within it)"


def _fmt_macs(macs: int) -> str:
    return f"{macs / 1e9:.2f}G" if macs >= 1e9 else f"{macs / 1e6:.1f}M"


def _budget_text(budget_ms: float | None, budget_macs: float | None) -> str:
    parts = ([f"{budget_ms:g} ms"] if budget_ms is not None else []) + (
        [f"{_fmt_macs(int(budget_macs))} MACs"] if budget_macs is not None else []
    )
    return " and ".join(parts)


def table(
    rows: Sequence[WidthCost],
    budget_ms: float | None,
    batch: int,
    fid_label: str = "FMNIST-FID",
    budget_macs: float | None = None,
) -> str:
    """The per-width table; ``*`` marks a latency below a narrower width's, checked as that one's."""
    head = f"latency b{batch} (ms)"
    budget = _budget_text(budget_ms, budget_macs)
    checked = budget_latencies(rows)
    lines = [f"{'width':>6}  {head:>17}  {'spread':>6}  {'MACs/image':>10}  {fid_label:>10}  within {budget}"]
    for r in rows:
        fid = "-" if r.fmnist_fid is None else f"{r.fmnist_fid:.2f}"
        ok = "yes" if within_budget(r, budget_ms, budget_macs, checked[r.width]) else "no"
        raised = "*" if checked[r.width] > r.latency_ms else " "
        lines.append(
            f"{r.width:>6}  {r.latency_ms:>16.2f}{raised}  {r.spread:>6.0%}  {_fmt_macs(r.macs):>10}  {fid:>10}  {ok}"
        )
    if any(checked[r.width] > r.latency_ms for r in rows):
        lines.append("* faster than a narrower width (noise): checked against the narrower width's latency")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog=PROG, description="Pick the SlimGAN width to deploy within a CPU latency and/or MACs budget."
    )
    p.add_argument("checkpoint", help="Lightning checkpoint, e.g. outputs/<run>/checkpoints/last.ckpt")
    p.add_argument("--budget-ms", type=float, default=None, help="latency budget of one forward, milliseconds")
    p.add_argument("--budget-macs", type=float, default=None, help="MACs budget per image, e.g. 5e6")
    p.add_argument("--batch", type=int, default=1, help="images per forward (default 1)")
    p.add_argument("--repeats", type=int, default=20, help="timed forwards per width and round; the median counts")
    p.add_argument("--warmup", type=int, default=3, help="untimed forwards per width first")
    p.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads of the timing (default 1: immune to other jobs)"
    )
    p.add_argument(
        "--clock",
        choices=CLOCKS,
        default="auto",
        help="auto (default): the thread's CPU time with one thread, wall-clock time with more",
    )
    p.add_argument(
        "--rounds", type=int, default=MAX_ROUNDS, help=f"timing rounds at most while unstable (default {MAX_ROUNDS})"
    )
    p.add_argument(
        "--max-spread",
        type=float,
        default=MAX_SPREAD,
        help=f"IQR/median above which a width's timing is unstable (default {MAX_SPREAD})",
    )
    p.add_argument(
        "--model",
        choices=MODELS,
        default="exported",
        help="time the dense exported model (default) or the slimmable generator",
    )
    p.add_argument(
        "--weights",
        choices=WEIGHTS,
        default="auto",
        help="EMA or live generator weights (default auto: EMA when the checkpoint has it)",
    )
    p.add_argument(
        "--widths",
        type=float,
        nargs="+",
        default=None,
        help="candidate widths (default: the trained widths; universal models: every --step across slim.range)",
    )
    p.add_argument("--step", type=float, default=0.05, help="universal models: candidate width spacing")
    p.add_argument("--metrics", default=None, help="slimgan-eval metrics.json (default: <run dir>/metrics.json)")
    p.add_argument("--json", action="store_true", help="print the result as JSON instead of a table")
    return p.parse_args(argv)


@cli_main("slimgan-pick")  # one-line errors, --debug for the traceback (slimgan_pl/cli.py)
def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    from slimgan_pl.checkpoint import CheckpointError, load_slimgan, run_directory

    try:
        if args.budget_ms is None and args.budget_macs is None:
            raise ValueError("give a budget: --budget-ms (latency) and/or --budget-macs (MACs per image)")
        for flag, value in (("--budget-ms", args.budget_ms), ("--budget-macs", args.budget_macs)):
            if value is not None and not value > 0:
                raise ValueError(f"{flag} must be > 0, got {value}")
        model = load_slimgan(args.checkpoint)
        metrics = args.metrics or run_directory(args.checkpoint) / "metrics.json"
        fids, label = read_fids(metrics), "FID" if fid_key(metrics) == "fid" else "FMNIST-FID"
        widths, notes = candidate_widths(model, args.widths, args.step)
        rows, timing = measure(
            model,
            args.batch,
            args.repeats,
            args.warmup,
            args.weights,
            args.model,
            fids,
            widths,
            args.threads,
            args.clock,
            args.rounds,
            args.max_spread,
        )
    except (CheckpointError, ValueError) as e:
        fail(PROG, e)
    best, rule = pick(rows, args.budget_ms, args.budget_macs)
    warning = timing.warning("so may the pick; close other jobs, or budget MACs instead (--budget-macs)")
    if warning:
        print(f"{PROG}: {warning}", file=sys.stderr)
    if not args.json:
        for note in notes:
            print(note)
        print(timing.summary())
    if args.json:
        print(
            json.dumps(
                {
                    "budget_ms": args.budget_ms,
                    "budget_macs": args.budget_macs,
                    "rule": rule,
                    "notes": notes,
                    "batch": args.batch,
                    "threads": timing.threads,
                    "timing": timing.to_json(),
                    "model": args.model,
                    "fid_metric": label,
                    "widths": [asdict(r) for r in rows],
                    "budget_latency_ms": {str(w): ms for w, ms in budget_latencies(rows).items()},
                    "pick": asdict(best) if best else None,
                },
                indent=2,
            )
        )
    else:
        print(table(rows, args.budget_ms, args.batch, label, args.budget_macs))
    if best is None:
        narrowest = rows[0]
        fail(
            PROG,
            f"no width fits: the narrowest width {narrowest.width} takes {narrowest.latency_ms:.2f} ms at "
            f"batch {args.batch} and {_fmt_macs(narrowest.macs)} MACs/image, above the budget of "
            f"{_budget_text(args.budget_ms, args.budget_macs)}",
            code=1,
        )
    if not args.json:
        fid = "" if best.fmnist_fid is None else f", {label} {best.fmnist_fid:.2f}"
        unstable = "" if timing.stable else "; timing UNSTABLE, see the warning"
        threads = f"{timing.threads} thread{'s' if timing.threads != 1 else ''}"
        print(
            f"pick: width {best.width} ({best.latency_ms:.2f} ms +- {best.spread:.0%} at batch {args.batch}, "
            f"{threads}, {_fmt_macs(best.macs)} MACs/image{fid}{unstable})"
        )
        print(rule_text(rule, label))


if __name__ == "__main__":
    main()
