"""Ablation sweeps (conf/sweep/*.yaml, `slimgan-train -m sweep=NAME`), debug=smoke, slimgan-collect."""

from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser

from slimgan_pl.config import config_dir, scale_lr
from slimgan_pl.sweeps import collect_runs, format_table, write_tables
from slimgan_pl.sweeps import main as collect_main

REPO = Path(__file__).parents[1]
SWEEPS = {  # name -> (swept keys, number of runs)
    "width_sets": ({"slim.widths"}, 3),
    "batch_size": ({"data.batch_size"}, 4),
    "skip_z": ({"model", "model.generator.skip_z"}, 2),
    "ortho_reg": ({"model", "optim.ortho_reg"}, 3),
    "distillation": ({"slim.alpha", "slim.stepwise"}, 8),
    "n_share": ({"slim.n_share"}, 8),
    "cond_norm": ({"experiment", "model.generator.cond_norm"}, 2),
    "baseline": ({"model.baseline.g_width"}, 4),
}


def sweep_jobs(name: str) -> list[dict[str, object]]:
    """The runs a sweep config expands to, as Hydra's basic sweeper computes them."""
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("config", overrides=[f"sweep={name}"], return_hydra_config=True)
    assert cfg.sweep_name == name
    assert cfg.hydra.sweep.dir.startswith(f"multirun/{name}/")
    overrides = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in cfg.hydra.sweeper.params.items()])
    choices = [
        [(o.key_or_group, v) for v in (o.sweep_iterator() if o.is_sweep_override() else [o.value()])] for o in overrides
    ]
    return [dict(combo) for combo in itertools.product(*choices)]


@pytest.mark.parametrize("name", sorted(SWEEPS))
def test_every_sweep_config_expands_to_its_runs(name):
    keys, n = SWEEPS[name]
    jobs = sweep_jobs(name)
    assert len(jobs) == n and set(jobs[0]) == keys
    if name == "width_sets":
        assert [len(job["slim.widths"]) for job in jobs] == [2, 4, 8]
    if name == "n_share":
        assert [job["slim.n_share"] for job in jobs] == list(range(8))
    if name == "baseline":
        assert [job["model.baseline.g_width"] for job in jobs] == [0.25, 0.5, 0.75, 1.0]


def test_batch_size_sweep_scales_the_learning_rates(make_cfg):
    cfg = make_cfg("sweep=batch_size", "data.batch_size=256")
    assert cfg.optim.g_lr == pytest.approx(2e-4 * 2) and cfg.optim.d_lr == pytest.approx(2e-4 * 2)  # sqrt(256/64)
    assert make_cfg("sweep=batch_size", "data.batch_size=256", "lr_scaling.rule=linear").optim.g_lr == pytest.approx(
        8e-4
    )
    assert make_cfg("sweep=batch_size", "data.batch_size=64").optim.g_lr == pytest.approx(2e-4)
    with pytest.raises(ValueError, match=r"lr_scaling\.rule must be one of \('none', 'linear', 'sqrt'\)"):
        scale_lr(2e-4, 128, 64, "cubic")


def test_smoke_makes_runs_tiny(make_cfg):
    cfg = make_cfg("debug=smoke", "sweep=batch_size", "data.batch_size=512")
    assert cfg.train.g_steps == 4 and cfg.model.generator.ngf == 16 and cfg.callbacks.fid is None
    assert cfg.evaluate.after_training is False
    assert cfg.data.batch_size == 512 and cfg.data.limit >= 512  # sweep values still apply


@pytest.mark.slow
def test_smoke_sweep_runs_and_collects_into_one_table(tmp_path, fmnist_root):
    sweep = tmp_path / "sweep"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "slimgan_pl.train",
            "-m",
            "sweep=width_sets",
            "debug=smoke",
            "trainer.accelerator=cpu",
            f"hydra.sweep.dir={sweep}",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    widths = [[0.5, 1.0], [0.25, 0.5, 0.75, 1.0], [0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0]]
    for job, expected in enumerate(widths):  # every run records its full resolved config
        resolved = yaml.safe_load((sweep / str(job) / "config_resolved.yaml").read_text())
        assert resolved["slim"]["widths"] == expected and resolved["sweep_name"] == "width_sets"
        assert resolved["trainer"]["max_steps"] == 8  # resolved, not ${optimizer_steps:...}

    rows = collect_runs(sweep)
    assert [row["run"] for row in rows] == ["0", "1", "2"]
    assert [row["slim.widths"] for row in rows] == [
        "[0.5,1.0]",
        "[0.25,0.5,0.75,1.0]",
        "[0.125,0.25,0.375,0.5,0.625,0.75,0.875,1.0]",
    ]
    assert all(row["status"] == "finished" and row["iterations"] == 4 for row in rows)
    assert math.isfinite(rows[2]["d_loss_w0.125"]) and "d_loss_w0.125" not in rows[0]
    table = format_table(rows)
    assert table.splitlines()[0].startswith("| slim.widths | run | status | iterations | d_loss_w0.125 |")
    assert "sweep" not in table.splitlines()[0].split("|")[1]  # overrides shared by all runs are no columns
    collect_main([str(sweep), "--out", str(tmp_path / "tables")])
    assert (tmp_path / "tables" / "results.md").read_text().strip() == table
    assert len(json.loads((tmp_path / "tables" / "results.json").read_text())) == 3


def fake_run(root: Path, job: int, overrides: list[str], summary: dict | None, metrics: dict | None = None) -> None:
    run = root / str(job)
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if summary is not None:
        (run / "summary.json").write_text(json.dumps(summary))
    if metrics is not None:
        (run / "metrics.json").write_text(json.dumps(metrics))


def test_collect_prefers_fid_per_width_and_marks_unfinished_runs(tmp_path, capsys):
    fake_run(
        tmp_path,
        0,
        ["slim.alpha=0", "sweep=distillation"],
        {
            "iterations": 10,
            "fmnist_fid": {"w0.5": 30.0, "w1.0": 20.0},
            "final_losses": {"w0.5": {"d": 1.0, "g": 0.5}, "w1.0": {"d": 1.1, "g": 0.4}},
        },
    )
    fake_run(
        tmp_path,
        1,
        ["slim.alpha=20", "sweep=distillation"],
        {"iterations": 10, "final_losses": {}},
        metrics={"widths": [{"width": 0.5, "fmnist_fid": 25.0}, {"width": 1.0, "fmnist_fid": 18.0}]},
    )
    fake_run(tmp_path, 2, ["slim.alpha=40", "sweep=distillation"], None)
    (tmp_path / "multirun.yaml").write_text("{}")
    rows = collect_runs(tmp_path)
    assert [r["slim.alpha"] for r in rows] == ["0", "20", "40"]
    assert [r["status"] for r in rows] == ["finished", "finished", "no output"]
    assert rows[1]["fid_w1.0"] == 18.0
    header = format_table(rows).splitlines()[0]
    assert header == "| slim.alpha | run | status | iterations | fid_w0.5 | fid_w1.0 |"
    md, csv_path, _ = write_tables(rows, tmp_path / "out")
    assert csv_path.read_text().splitlines()[0] == "slim.alpha,run,status,iterations,fid_w0.5,fid_w1.0"
    with pytest.raises(SystemExit):
        collect_main([str(tmp_path / "missing")])
    assert "is not a directory" in capsys.readouterr().err


def test_logged_fid_curves_read_the_callbacks_csv_rows(tmp_path):
    """callbacks.fid rows (with their "iteration") become per-width curves; loss rows are ignored, a
    resumed run's repeated evaluation keeps the later value, and the last point feeds fid_train_w*."""
    from slimgan_pl.sweeps import logged_fid_curves, read_run

    (tmp_path / "csv").mkdir()
    (tmp_path / "csv" / "metrics.csv").write_text(
        "step,iteration,train/d_loss_w0.5,val/fmnist_fid_w0.5,val/fmnist_fid_w1.0\n"
        "49,50.0,1.2,,\n"
        "249,250.0,,80.5,70.25\n"
        "499,500.0,,40.0,30.0\n"
        "499,500.0,,41.0,31.0\n"  # resumed: evaluated again
        "749,,,20.0,15.0\n"
    )  # no iteration column value: step + 1
    assert logged_fid_curves(tmp_path) == {
        0.5: [(250, 80.5), (500, 41.0), (750, 20.0)],
        1.0: [(250, 70.25), (500, 31.0), (750, 15.0)],
    }
    assert read_run(tmp_path)["fid_train_w1.0"] == 15.0
    assert logged_fid_curves(tmp_path / "missing") == {}
