"""Quality parity of the fast training modes: the demo recipe trained in fp32 and in each fast mode
for the same iterations (same seed: same initial weights and data order), per-width FMNIST-FID
side by side.

Rule (docs/speed.md): a fast mode may become a default only if at every width its FMNIST-FID is
within 10% of fp32's or better (ratio mode / fp32 <= 1.10).

    python experiments/benchmarks/precision_parity.py [--iters 1500] [--modes bf16-mixed channels_last]
        [--quick] [--classifier PATH] [--work-dir outputs/precision_parity]
        [--out experiments/results/precision_parity.md] [--note "load conditions"] [override ...]

``--quick``: tiny networks (ngf/ndf 16), 3 iterations, 100 images per FID, no periodic callbacks: shows in
well under a minute that the pipeline works (tests/test_precision.py runs it); its FIDs mean nothing.
Extra arguments are Hydra overrides applied to every run (e.g. ``experiment=fmnist_cond``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

from slimgan_pl.config import config_dir, register_resolvers
from slimgan_pl.train import train

TOLERANCE = 1.10  # a fast mode's FID may be at most 10% above fp32's at every width
# mode name -> config overrides (fp32 is the reference every mode is compared with)
MODES = {
    "fp32": ["trainer.precision=32-true"],
    "bf16-mixed": ["trainer.precision=bf16-mixed"],
    "channels_last": ["model.channels_last=true"],
    "bf16-mixed+channels_last": ["trainer.precision=bf16-mixed", "model.channels_last=true"],
    "compile": ["model.compile=true"],
    "16-mixed": ["trainer.precision=16-mixed", "trainer.accelerator=gpu"],
}
QUICK = [
    "model.generator.ngf=16",
    "model.discriminator.ndf=16",
    "data.batch_size=16",
    "data.limit=256",
    "evaluate.n_fake=100",
    "evaluate.n_real=100",
    "evaluate.latency_repeats=1",
]
QUIET = ["callbacks.fid=null", "callbacks.sample_grid=null", "callbacks.progress_bar=null", "logger=none"]


def run_mode(mode: str, iters: int, work_dir: Path, overrides: list[str]) -> dict:
    """Train the recipe in one mode from scratch; returns its per-width FMNIST-FID and wall time."""
    return {"mode": mode, **train_and_score(work_dir / mode, [f"train.g_steps={iters}", *overrides, *MODES[mode]])}


def train_and_score(out: Path, overrides: list[str]) -> dict:
    """Train one run from scratch into ``out`` and evaluate it (evaluate.after_training): per-width
    FMNIST-FID, wall time of training + evaluation, iterations (also used by demo_recipe.py)."""
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("config", overrides=[f"paths.output_dir={out}", "resume=never", *overrides])
    start = time.perf_counter()
    summary = train(cfg)
    return {
        "fmnist_fid": summary["fmnist_fid"],
        "wall_s": time.perf_counter() - start,
        "iterations": summary["iterations"],
        "output_dir": str(out),
    }


def parity_table(results: list[dict]) -> tuple[str, dict[str, bool]]:
    """Markdown table (one row per width: fp32's FID, then each mode's FID and ratio) and, per fast
    mode, whether it passes the rule at every width."""
    reference = next(r for r in results if r["mode"] == "fp32")
    fast = [r for r in results if r["mode"] != "fp32"]
    widths = list(reference["fmnist_fid"])
    header = "| width | fp32 | " + " | ".join(f"{r['mode']} | ratio" for r in fast) + " |\n"
    header += "|---|---|" + "---|---|" * len(fast) + "\n"
    rows, verdict = "", {r["mode"]: True for r in fast}
    for w in widths:
        ref = reference["fmnist_fid"][w]
        cells = [f"{w} | {ref:.2f}"]
        for r in fast:
            ratio = r["fmnist_fid"][w] / ref
            verdict[r["mode"]] &= ratio <= TOLERANCE
            cells.append(f"{r['fmnist_fid'][w]:.2f} | {ratio:.2f}")
        rows += "| " + " | ".join(cells) + " |\n"
    times = (
        "| wall s (train + eval) | "
        + " | ".join(
            [f"{reference['wall_s']:.0f}"]
            + [f"{r['wall_s']:.0f} | {r['wall_s'] / reference['wall_s']:.2f}" for r in fast]
        )
        + " |\n"
    )
    return header + rows + times, verdict


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--iters", type=int, default=None, help="SlimGAN iterations per run (default: the recipe's; --quick: 3)"
    )
    p.add_argument(
        "--modes", nargs="+", default=["bf16-mixed", "channels_last"], choices=[m for m in MODES if m != "fp32"]
    )
    p.add_argument("--quick", action="store_true", help="tiny sizes: checks the pipeline, not quality")
    p.add_argument("--classifier", default=None, help="FMNIST classifier file (default: the user cache)")
    p.add_argument("--work-dir", type=Path, default=Path("outputs/precision_parity"))
    p.add_argument("--out", type=Path, default=Path("experiments/results/precision_parity.md"))
    p.add_argument("--note", default="", help="conditions of the run (e.g. machine load), written to the table")
    args, overrides = p.parse_known_args(argv)
    register_resolvers()
    overrides = list(overrides) + QUIET + (QUICK if args.quick else [])
    if args.classifier:
        overrides.append(f"evaluate.classifier={args.classifier}")
    iters = args.iters if args.iters is not None else (3 if args.quick else None)
    if iters is None:
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            iters = int(compose("config", overrides=overrides).train.g_steps)
    if iters < 1:
        raise SystemExit(f"precision_parity: --iters must be >= 1, got {iters}")

    results = []
    for mode in ["fp32", *args.modes]:
        print(f"== {mode}: {iters} iterations", flush=True)
        results.append(run_mode(mode, iters, args.work_dir, overrides))
    table, verdict = parity_table(results)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load = os.getloadavg()
    lines = [
        f"- {mode}: {'PASSES' if ok else 'FAILS'} the rule (every width within {TOLERANCE - 1:.0%} of fp32 or better)"
        for mode, ok in verdict.items()
    ]
    text = (
        f"# Quality parity of the fast training modes"
        f"{' (QUICK: tiny sizes, FIDs mean nothing)' if args.quick else ''}\n\n"
        f"Run {now}: demo recipe (conf/experiment/fmnist_demo.yaml) with {overrides}, {iters} iterations per "
        f"mode, seed 0 in every mode. Load average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}. "
        f"{args.note}\n\nFMNIST-FID per width (evaluation in fp32 from the last checkpoint), ratio = mode / fp32:\n\n"
        + table
        + "\n"
        + "\n".join(lines)
        + "\n"
    )
    print("\n" + text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    args.out.with_suffix(".json").write_text(
        json.dumps({"iters": iters, "overrides": overrides, "results": results, "passes": verdict}, indent=2)
    )
    return {"results": results, "passes": verdict, "table": text}


if __name__ == "__main__":
    main()
