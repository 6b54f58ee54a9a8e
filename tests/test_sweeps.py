"""Ablation sweeps (conf/sweep/*.yaml, `slimgan-train -m sweep=NAME`), debug=smoke, slimgan-collect."""

from __future__ import annotations

import csv
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

from helpers.user_path import check_installed, run_user, user_env

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
    env = user_env({"OMP_NUM_THREADS": "1"})  # the installed slimgan-train, no PYTHONPATH (the user's path)
    check_installed()
    proc = subprocess.run(
        [
            "slimgan-train",
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
    collect_main([str(sweep), "--out", str(tmp_path / "tables"), "--runs"])  # --runs: the per-run table too
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


# ----------------------------------------------------------------------------- the ablation table
def write_eval(
    run: Path,
    fids: dict[float, float],
    n_fake: int = 10000,
    n_real: int = 10000,
    name: str = "fmnist",
    stem: str = "metrics",
    mtime: float | None = None,
    is_value: float = 3.0,
) -> Path:
    """A metrics file as slimgan-eval writes it (only the fields slimgan-collect reads)."""
    data = {
        "backbone": {"kind": "fmnist_classifier", "key_prefix": "fmnist_"},
        "protocol": {"name": name, "split": "test", "n_fake": n_fake, "n_real": n_real, "is_n_fake": n_fake},
        "settings": {"n_fake": n_fake, "n_real": n_real, "is_n_fake": n_fake, "split": "test"},
        "widths": [
            {
                "width": w,
                "params": int(1000 * w),
                "macs": int(1e6 * w**2),
                "latency_ms": {"1": 1.0},
                "fmnist_fid": f,
                "fmnist_is": is_value,
                "fmnist_kid": f / 100,
            }
            for w, f in fids.items()
        ],
        "consistency": {"mIC": 5.0},
    }
    path = run / f"{stem}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def seed_run(root: Path, job: int, alpha: int, seed: int, fids: dict[float, float], **eval_kw) -> Path:
    """A finished run of a `slim.alpha=... seed=...` sweep with an evaluation."""
    run = root / str(job)
    summary = {
        "iterations": 4,
        "final_losses": {f"w{w}": {"d": 1.0 + seed, "g": 0.5} for w in fids},
        "distill_loss": 0.1,
    }
    fake_run(root, job, ["debug=smoke", f"slim.alpha={alpha}", f"seed={seed}", f"hydra.sweep.dir={root}"], summary)
    write_eval(run, fids, **eval_kw)
    return run


def test_collect_pools_two_launches_of_a_sweep_into_configurations(tmp_path, capsys):
    """Seeds 0-1 one day, 2-4 the next: one configuration per alpha with n=5; the seed, the sweep folder and
    evaluate.* are no part of a configuration; cells are mean_interval of the per-run numbers."""
    from slimgan_pl.metrics.paired import mean_interval
    from slimgan_pl.sweeps import aggregate

    day1, day2 = tmp_path / "multirun" / "distillation" / "day1", tmp_path / "multirun" / "distillation" / "day2"
    fid = {(a, s): 30.0 + s + (2.0 + 0.1 * s if a == 0 else 0.0) + 0.3 * s * s for a in (0, 20) for s in range(5)}
    job = 0
    for root, seeds in ((day1, (0, 1)), (day2, (2, 3, 4))):
        for a in (0, 20):
            for s in seeds:
                seed_run(root, job, a, s, {0.5: fid[a, s] + 5, 1.0: fid[a, s]})
                job += 1
    rows = collect_runs([day1, day2])
    assert len(rows) == 10
    result = aggregate(rows)
    assert result["keys"] == ["slim.alpha"]  # seed and hydra.sweep.dir (differs by day) ignored
    assert [(e["name"], e["width"], e["n"]) for e in result["rows"]] == [
        ("slim.alpha=0", 0.5, 5),
        ("slim.alpha=0", 1.0, 5),
        ("slim.alpha=20", 0.5, 5),
        ("slim.alpha=20", 1.0, 5),
    ]
    column = "FMNIST-FID (fmnist, 10k fake / 10k real)"
    cell = result["rows"][1]["metrics"][column]
    expected = mean_interval([fid[0, s] for s in range(5)])
    assert (cell["n"], cell["mean"], cell["low"], cell["high"]) == (5, expected.mean, expected.low, expected.high)
    assert result["rows"][1]["seeds"] == ["0", "1", "2", "3", "4"]

    # the parent folder, searched recursively, gives the same table; the CLI writes the four files
    collect_main([str(tmp_path / "multirun"), "--out", str(tmp_path / "out"), "--compare", "slim.alpha=0,20"])
    out = capsys.readouterr().out
    assert "| slim.alpha | width | n | seeds | MACs | params | FMNIST-FID (fmnist, 10k fake / 10k real) |" in out
    assert f"| 0 | 1 | 5 | 0,1,2,3,4 | 1.00M | 1.00k | {expected.mean:.2f} ± {expected.sd:.2f}" in out
    with open(tmp_path / "out" / "collect.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 4 and float(table[1][f"{column} high"]) == pytest.approx(expected.high)
    assert {p.name for p in (tmp_path / "out").iterdir()} == {
        "collect.md",
        "collect.csv",
        "collect.json",
        "collect.png",
    }
    # the paired comparison: alpha=0 is 2-2.4 FID worse at every seed
    compared = json.loads((tmp_path / "out" / "collect.json").read_text())["comparison"]
    fid_rows = [r for r in compared["rows"] if r["column"] == column and r["width"] == 1.0]
    assert fid_rows[0]["n"] == 5 and fid_rows[0]["mean"] == pytest.approx(2.2)
    assert fid_rows[0]["seeds"] == ["0", "1", "2", "3", "4"] and fid_rows[0]["verdict"] == "held"  # 2 < 10% of ~34


def test_collect_keeps_evaluations_with_other_sample_counts_apart(tmp_path, capsys):
    """Two runs evaluated at 10k, two at 200 fakes: separate columns (n=2 each), said in a note; the plot
    takes the newest protocol's FID."""
    from slimgan_pl.sweeps import aggregate, default_metric

    now = 1_700_000_000.0
    for job, seed in enumerate((0, 1)):
        seed_run(tmp_path, job, 0, seed, {1.0: 20.0 + seed}, mtime=now)
    for job, seed in ((2, 2), (3, 3)):
        seed_run(
            tmp_path,
            job,
            0,
            seed,
            {1.0: 90.0 + seed},
            n_fake=200,
            n_real=200,
            stem="metrics-fmnist-fake200",
            mtime=now + 100,
        )
    result = aggregate(collect_runs(tmp_path))
    full, small = "FMNIST-FID (fmnist, 10k fake / 10k real)", "FMNIST-FID (fmnist, 200 fake / 200 real)"
    cell = result["rows"][0]["metrics"]
    assert (cell[full]["n"], cell[full]["mean"], cell[small]["n"], cell[small]["mean"]) == (2, 20.5, 2, 92.5)
    assert result["columns"].index(small) < result["columns"].index(full)  # newest protocol first
    assert default_metric(result) == small
    assert (
        "runs evaluated with different protocols or sample counts, kept apart in separate columns: "
        "fmnist, 200 fake / 200 real (2 runs); fmnist, 10k fake / 10k real (2 runs)"
    ) in result["notes"]
    collect_main([str(tmp_path), "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert "20.50 ± 0.71 [14.15, 26.85] (n=2)" in out  # 4 runs in the configuration, 2 with this protocol
    assert "- Note: runs evaluated with different protocols or sample counts, kept apart in separate columns" in out


def test_collect_takes_the_newest_evaluation_of_a_run(tmp_path):
    """metrics.json rewritten by a later slimgan-eval beats summary.json's after-training FIDs; a summary newer
    than a disagreeing file wins (FID only); a summary that agrees with its file keeps the file's IS/KID/mIC."""
    from slimgan_pl.sweeps import read_run, run_evaluations

    column = "FMNIST-FID (fmnist, 10k fake / 10k real)"
    t = 1_700_000_000.0
    cases = {"later_eval": (t, t + 60, 15.0), "older_file": (t + 60, t, 25.0), "agree": (t + 1, t, 25.0)}
    for name, (summary_time, file_time, expected) in cases.items():
        run = tmp_path / name
        run.mkdir()
        file_fid = 15.0 if name == "later_eval" else (20.0 if name == "older_file" else 25.0)
        path = write_eval(run, {1.0: file_fid}, mtime=file_time)
        summary = run / "summary.json"
        summary.write_text(json.dumps({"iterations": 4, "metrics": str(path), "fmnist_fid": {"w1.0": 25.0}}))
        os.utime(summary, (summary_time, summary_time))
        row = read_run(run)
        assert row["values"][column] == {1.0: expected}, name
        evaluations, notes = run_evaluations(run, json.loads(summary.read_text()))
        assert len(evaluations) == 1
        assert evaluations[0].source == ("summary.json" if name == "older_file" else "metrics.json"), name
        has_is = "FMNIST-IS (fmnist, 10k fake / 10k real)" in row["values"]
        assert has_is == (name != "older_file") and bool(notes) == (name == "older_file"), name
    # summary.json naming a file that is gone: its FIDs, labelled as such
    gone = tmp_path / "gone"
    gone.mkdir()
    (gone / "summary.json").write_text(json.dumps({"metrics": "/elsewhere/metrics.json", "fmnist_fid": {"w1.0": 30.0}}))
    assert read_run(gone)["values"] == {"FMNIST-FID (after training, metrics (file missing))": {1.0: 30.0}}


def test_collect_groups_by_non_seed_overrides_and_counts_a_seed_once(tmp_path):
    """Output paths and evaluate.* differ per run but are no configuration; a seed run twice counts once
    (the newer evaluation); 20.0, 20 and the config's default 20 are one value; an unfinished run without
    evaluation is left out."""
    from slimgan_pl.sweeps import aggregate

    t = 1_700_000_000.0
    for job, (alpha, seed, extra) in enumerate(
        [(0, 0, "paths.output_dir=/a"), (0, 1, "evaluate.n_fake=500"), (20, 0, "hydra.run.dir=/x"), (20, 1, "")]
    ):
        fake_run(tmp_path, job, [f"slim.alpha={alpha}", f"seed={seed}", *([extra] if extra else [])], {"iterations": 4})
        write_eval(tmp_path / str(job), {1.0: 10.0 + job}, mtime=t + job)
    fake_run(tmp_path, 4, ["slim.alpha=20.0", "seed=1"], {"iterations": 4})  # seed 1 again, newer: replaces job 3
    write_eval(tmp_path / "4", {1.0: 99.0}, mtime=t + 10)
    fake_run(tmp_path, 6, ["seed=2"], {"iterations": 4})  # alpha from the config's default, 20
    (tmp_path / "6" / "config_resolved.yaml").write_text("seed: 2\nslim:\n  alpha: 20\n")
    write_eval(tmp_path / "6", {1.0: 40.0})
    fake_run(tmp_path, 5, ["slim.alpha=0", "seed=2"], None)  # still training: a logged FID, no summary.json
    (tmp_path / "5" / "csv").mkdir()
    (tmp_path / "5" / "csv" / "metrics.csv").write_text("step,iteration,val/fmnist_fid_w1.0\n1,2,50.0\n")
    result = aggregate(collect_runs(tmp_path))
    assert result["keys"] == ["slim.alpha"]
    assert f"1 run(s) without results or unfinished, left out: {tmp_path / '5'} (no output)" in result["notes"]
    assert [(e["name"], e["n"], e["seeds"]) for e in result["rows"]] == [
        ("slim.alpha=0", 2, ["0", "1"]),
        ("slim.alpha=20", 3, ["0", "1", "2"]),
    ]
    assert result["rows"][1]["metrics"]["FMNIST-FID (fmnist, 10k fake / 10k real)"]["values"] == [12.0, 99.0, 40.0]
    assert any("seed 1 ran twice" in n for n in result["notes"])


def test_collect_errors_are_one_line(tmp_path, capsys, monkeypatch):
    """No runs, an unknown --compare key or value (naming the configurations), fewer than 2 paired seeds."""
    for job, (alpha, seed) in enumerate([(0, 0), (20, 1)]):
        seed_run(tmp_path / "sweep", job, alpha, seed, {1.0: 10.0})
    (tmp_path / "empty").mkdir()
    found = "configurations: slim.alpha=0; slim.alpha=20"
    cases = {
        "empty": "no run directories (with .hydra, config_resolved.yaml, summary.json) under empty",
        "sweep --compare slim.beta=0,20": "--compare key 'slim.beta' is not a swept key; swept keys: slim.alpha; "
        + found,
        "sweep --compare slim.alpha=0,40": "--compare slim.alpha: no runs with slim.alpha=40; values found: 0, 20; "
        + found,
        "sweep --compare slim.alpha=0,20": "--compare slim.alpha=0,20: fewer than 2 seeds run with both slim.alpha=0 "
        "and slim.alpha=20",
        "sweep --metric nonsense": "--metric 'nonsense' matches no column; columns: MACs",
    }
    monkeypatch.chdir(tmp_path)
    for args, message in cases.items():
        with pytest.raises(SystemExit) as stop:
            collect_main(args.split())
        lines = capsys.readouterr().err.strip().splitlines()
        assert stop.value.code == 2 and len(lines) == 1, (args, lines)
        assert lines[0].startswith(f"slimgan-collect: error: {message}"), (args, lines[0])


def test_collect_imports_nothing_heavy():
    """`slimgan-collect --help` answers at once: no torch, matplotlib or SciPy at import time."""
    code = (
        "import sys, slimgan_pl.sweeps; print(sorted({'torch', 'matplotlib', 'scipy', 'lightning'} & set(sys.modules)))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"


@pytest.mark.slow
def test_user_collects_an_evaluated_smoke_sweep_into_a_table_and_plot(tmp_path):
    """The user's path: a 2-arm x 2-seed smoke sweep evaluated after training (100 fakes / 100 reals, FID logged
    during training too), then `slimgan-collect SWEEP --compare slim.alpha=0,20`."""
    from PIL import Image

    from slimgan_pl.metrics.paired import mean_interval, paired_comparison
    from slimgan_pl.sweeps import format_cell

    fid_callback = "{_target_:slimgan_pl.callbacks.PerWidthFIDCallback,every_n_iterations:4,n_fake:100,n_real:100}"
    run_user(
        "slimgan-train -m debug=smoke trainer.accelerator=cpu slim.alpha=0,20 seed=0,1 "
        "evaluate.after_training=true evaluate.n_fake=100 evaluate.n_real=100 evaluate.latency_repeats=1 "
        f"'callbacks.fid={fid_callback}' hydra.sweep.dir=sweep",
        cwd=tmp_path,
        env={"OMP_NUM_THREADS": "1"},
        timeout=300,
        check=True,
    )
    proc = run_user("slimgan-collect sweep --compare slim.alpha=0,20 --out tables", cwd=tmp_path, check=True)
    lines = proc.stdout.splitlines()
    fid, kid = "FMNIST-FID (fmnist, 100 fake / 100 real)", "FMNIST-KID (fmnist, 100 fake / 100 real)"
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header[:7] == ["slim.alpha", "width", "n", "seeds", "MACs", "params", fid]
    for column in (
        "FMNIST-IS (fmnist, 100 fake / 100 real)",
        kid,
        "FMNIST-mIC (fmnist, 100 fake / 100 real)",
        "FMNIST-FID during training (last logged, 100 fake / 100 real)",
        "latency b1 (ms)",
        "D loss (final)",
        "G loss (final)",
        "distill loss (final)",
    ):
        assert column in header, column
    table = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:10]]
    assert [(r[0], r[1], r[2], r[3]) for r in table] == [
        (a, w, "2", "0,1") for a in ("0", "20") for w in ("0.25", "0.5", "0.75", "1")
    ]
    # every cell is mean_interval of the runs' own numbers (their metrics files)
    per_run: dict[tuple[str, float], dict[str, float]] = {}
    for run in sorted((tmp_path / "sweep").glob("[0-9]")):
        overrides = dict(o.split("=", 1) for o in yaml.safe_load((run / ".hydra" / "overrides.yaml").read_text()))
        (metrics,) = run.glob("metrics-fmnist-*.json")
        for entry in json.loads(metrics.read_text())["widths"]:
            per_run.setdefault((overrides["slim.alpha"], entry["width"]), {})[overrides["seed"]] = entry["fmnist_fid"]
    for row in table:
        values = per_run[row[0], float(row[1])]
        assert row[header.index(fid)] == format_cell(mean_interval(list(values.values())).as_dict(), 2)
    # the comparison: n=2 pairs per width, the paired interval of the same numbers
    start = lines.index(next(line for line in lines if line.startswith("### slim.alpha=0 vs slim.alpha=20")))
    compared = [
        [c.strip() for c in line.strip("|").split("|")] for line in lines[start + 5 :] if line.startswith("| - |")
    ]
    fid_rows = [r for r in compared if r[2] == fid]
    assert [(r[1], r[3], r[4]) for r in fid_rows] == [(w, "2", "0,1") for w in ("0.25", "0.5", "0.75", "1")]
    for r in fid_rows:
        a, b = per_run["0", float(r[1])], per_run["20", float(r[1])]
        paired = paired_comparison([a["0"], a["1"]], [b["0"], b["1"]], 0.10 * abs((b["0"] + b["1"]) / 2))
        assert r[10] == paired.verdict and r[8].startswith(f"[{'+' if paired.low >= 0 else '-'}")
    with open(tmp_path / "tables" / "collect.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 8
    image = Image.open(tmp_path / "tables" / "collect.png").convert("RGB")
    assert image.size == (960, 600)
    colors = image.getcolors(maxcolors=1 << 20)
    assert len(colors) > 50  # axes, text, two lines: not a blank canvas
    tab_blue, tab_orange = (31, 119, 180), (255, 127, 14)  # the two configurations' lines
    for line_color in (tab_blue, tab_orange):
        assert sum(n for n, c in colors if max(abs(x - y) for x, y in zip(c, line_color)) < 10) > 100


def test_compare_pairs_by_seed_within_each_other_configuration(tmp_path):
    """alpha x stepwise: --compare slim.alpha=0,20 gives one comparison per stepwise value and width, paired by
    seed (a seed without its partner is left out); a diverged run's NaN FID is said, not averaged."""
    from slimgan_pl.metrics.paired import paired_comparison
    from slimgan_pl.sweeps import aggregate, compare, parse_compare

    fids = {}
    job = 0
    for stepwise in ("true", "false"):
        for alpha in (0, 20):
            for seed in (0, 1, 2) if alpha == 0 else (0, 1, 2, 3):
                fids[stepwise, alpha, seed] = (
                    20.0 + alpha / 10 + seed + (stepwise == "true") + 0.1 * seed * seed * (alpha == 20)
                )
                fake_run(
                    tmp_path,
                    job,
                    [f"slim.alpha={alpha}", f"slim.stepwise={stepwise}", f"seed={seed}"],
                    {"iterations": 4},
                )
                write_eval(tmp_path / str(job), {1.0: fids[stepwise, alpha, seed]})
                job += 1
    fake_run(tmp_path, job, ["slim.alpha=0", "slim.stepwise=true", "seed=9"], {"iterations": 4})
    write_eval(tmp_path / str(job), {1.0: float("nan")})
    result = aggregate(collect_runs(tmp_path))
    assert result["keys"] == ["slim.alpha", "slim.stepwise"]
    assert any("is nan (left out)" in note for note in result["notes"])
    key, a, b = parse_compare("slim.alpha=0.0,20", result)  # 0.0 is the runs' 0
    comparison = compare(result, key, a, b)
    fid_rows = [r for r in comparison["rows"] if r["column"].startswith("FMNIST-FID")]
    assert [(r["other_name"], r["seeds"]) for r in fid_rows] == [
        ("slim.stepwise=false", ["0", "1", "2"]),
        ("slim.stepwise=true", ["0", "1", "2"]),
    ]
    xs, ys = [fids["false", 0, s] for s in range(3)], [fids["false", 20, s] for s in range(3)]
    expected = paired_comparison(xs, ys, 0.10 * sum(ys) / 3)
    assert (fid_rows[0]["low"], fid_rows[0]["high"], fid_rows[0]["verdict"]) == (
        pytest.approx(expected.low),
        pytest.approx(expected.high),
        expected.verdict,
    )
