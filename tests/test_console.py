"""What `slimgan-train` prints: no known-harmless third-party noise, and a progress bar over the run's iterations."""

from __future__ import annotations

import os
import subprocess
import warnings
from pathlib import Path

from slimgan_pl._warnings import WARNING_FILTERS, silence_third_party_noise
from slimgan_pl.callbacks import IterationProgressBar
from slimgan_pl.train import build

from helpers.user_path import check_installed, user_env

REPO = Path(__file__).parents[1]
NOISE = (
    "The `srun` command is available",
    "litlogger",
    "LeafSpec",
    "Using ModelCheckpoint with manual optimization",
    "saved_models",
)


def test_smoke_run_prints_no_third_party_noise_and_counts_iterations(tmp_path):
    # A fake `srun` on PATH makes Lightning's SLURM hint appear on any machine, not only under SLURM.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "srun").chmod(0o755)
    check_installed()
    env = user_env({"OMP_NUM_THREADS": "1"})  # the installed slimgan-train, no PYTHONPATH (the user's path)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    env.pop("SLURM_JOB_ID", None)
    proc = subprocess.run(
        [
            "slimgan-train",
            "debug=smoke",
            "trainer.accelerator=cpu",
            "train.g_steps=3",
            "train.checkpoint_every=1",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    output = proc.stdout + proc.stderr
    assert [n for n in NOISE if n in output] == []
    assert "iteration: 100%" in output and "3/3" in output  # the run's iterations, not 3/6 optimizer steps
    assert (tmp_path / "run" / "checkpoints" / "iter_000001.ckpt").is_file()  # the checkpoints whose warning went


def test_filters_are_narrow():
    """The same words from another module, or another warning from the same module, still show."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        silence_third_party_noise()
        for message, module, category, _ in WARNING_FILTERS:
            text = message.replace("\\", "")
            warnings.warn_explicit(text, category, "x.py", 1, module=module.replace("\\", ""))  # silenced
            warnings.warn_explicit(text, category, "x.py", 1, module="slimgan_pl.something")  # shown
            warnings.warn_explicit("another message", category, "x.py", 1, module=module.replace("\\", ""))  # shown
    assert len(caught) == 2 * len(WARNING_FILTERS)


def test_progress_bar_total_is_the_runs_iterations_across_epochs(make_cfg, fmnist_root):
    # 16 images, batch 8: 2 iterations per epoch, so 5 iterations cross two epoch boundaries; n_dis 2:
    # Lightning's max_steps is 15 optimizer steps.
    cfg = make_cfg(
        "debug=smoke",
        "train.g_steps=5",
        "optim.n_dis=2",
        "data.limit=48",
        "callbacks.sample_grid=null",
        f"data.root={fmnist_root}",
    )
    model, datamodule, trainer = build(cfg)
    bar = next(c for c in trainer.callbacks if isinstance(c, IterationProgressBar))
    trainer.fit(model, datamodule=datamodule)
    assert trainer.max_steps == 15 and trainer.current_epoch >= 2
    assert bar.train_progress_bar.total == cfg.train.g_steps == 5
    assert bar.train_progress_bar.n == 5
    assert bar.train_progress_bar.desc.startswith("iteration")


def test_progress_bar_of_a_resumed_run_starts_at_the_checkpoint(make_cfg, fmnist_root, tmp_path):
    out = tmp_path / "run"
    common = ["debug=smoke", "data.limit=32", "callbacks.sample_grid=null", f"data.root={fmnist_root}"]
    first = build(make_cfg(*common, "train.g_steps=2", output_dir=out))
    first[2].fit(first[0], datamodule=first[1])
    model, datamodule, trainer = build(make_cfg(*common, "train.g_steps=5", output_dir=out))
    bar = next(c for c in trainer.callbacks if isinstance(c, IterationProgressBar))
    trainer.fit(model, datamodule=datamodule, ckpt_path=str(out / "checkpoints" / "last.ckpt"))
    assert (bar.train_progress_bar.initial, bar.train_progress_bar.n, bar.train_progress_bar.total) == (2, 5, 5)
