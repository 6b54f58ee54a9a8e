"""Seconds per training iteration of whole experiments, measured in one run, as ratios to the first.

Each experiment is built exactly as ``slimgan-train experiment=NAME`` builds it (``slimgan_pl.train.build``),
with the in-training FID callback, the final evaluation, sample grids, checkpoints and loggers off,
and trained for ``--iters`` iterations on its real data. The first ``--warmup`` iterations are not
timed. Example: is ``fmnist_cond`` within the demo's budget?

    python experiments/benchmarks/experiment_speed.py --experiments fmnist_demo fmnist_cond --iters 150
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir

from slimgan_pl.config import config_dir, register_resolvers
from slimgan_pl.train import build

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "results" / "experiment_speed"


class IterationClock(pl.Callback):
    """Wall time from the end of iteration ``warmup`` to the end of training."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.seconds, self.timed = warmup, None, None, 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if pl_module.iteration == self.warmup:
            self.start = time.perf_counter()
        elif self.start is not None:
            self.timed += 1

    def on_train_end(self, trainer, pl_module) -> None:
        self.seconds = time.perf_counter() - self.start


def seconds_per_iteration(experiment: str, iters: int, warmup: int, extra: Sequence[str] = ()) -> dict:
    register_resolvers()
    with tempfile.TemporaryDirectory() as out, initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=[
                f"experiment={experiment}",
                f"train.g_steps={iters}",
                f"train.checkpoint_every={iters}",
                "callbacks.fid=null",
                "callbacks.sample_grid=null",
                "callbacks.model_checkpoint=null",
                "callbacks.progress_bar=null",
                "evaluate.after_training=false",
                "logger=none",
                "+trainer.enable_checkpointing=false",
                "trainer.enable_model_summary=false",
                "+trainer.enable_progress_bar=false",
                f"paths.output_dir={out}",
                *extra,
            ],
        )
        pl.seed_everything(cfg.seed)
        model, datamodule, trainer = build(cfg)
        clock = IterationClock(warmup)
        trainer.callbacks.append(clock)
        trainer.fit(model, datamodule=datamodule)
    return {
        "experiment": experiment,
        "iterations_timed": clock.timed,
        "s_per_iteration": clock.seconds / clock.timed,
        "batch_size": cfg.data.batch_size,
        "model": f"{cfg.model.generator.arch} ngf {cfg.model.generator.ngf}",
        "widths": list(cfg.slim.widths),
    }


def main(argv: Sequence[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--experiments", nargs="+", default=["fmnist_demo", "fmnist_cond"])
    p.add_argument("--iters", type=int, default=150)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--overrides", nargs="*", default=[], help="more slimgan-train overrides for every experiment")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="writes OUT.md and OUT.json")
    args = p.parse_args(argv)
    if not 0 < args.warmup < args.iters:
        raise SystemExit(f"experiment_speed: --warmup must be in [1, --iters), got {args.warmup}")
    rows = [seconds_per_iteration(e, args.iters, args.warmup, args.overrides) for e in args.experiments]
    base = rows[0]["s_per_iteration"]
    command = (
        f"python experiments/benchmarks/experiment_speed.py --experiments {' '.join(args.experiments)} "
        f"--iters {args.iters} --warmup {args.warmup}"
        + (f" --overrides {' '.join(args.overrides)}" if args.overrides else "")
    )
    lines = [
        f"# Seconds per training iteration ({platform.processor() or platform.machine()}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads)",
        "",
        f"`{command}`; one run, {args.iters - args.warmup} timed iterations each; FID callback, grids, "
        "checkpoints and loggers off.",
        "",
        "| experiment | model | batch | widths | s / iteration | ratio to first |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        r["ratio"] = r["s_per_iteration"] / base
        lines.append(
            f"| {r['experiment']} | {r['model']} | {r['batch_size']} | {len(r['widths'])} | "
            f"{r['s_per_iteration']:.3f} | {r['ratio']:.2f} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(text)
    out.with_suffix(".json").write_text(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    main()
