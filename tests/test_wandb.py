"""logger=wandb with no account: offline by default, the CSV log beside it, sample grids that are the
grids on disk, per-width metrics arranged by metric for the dashboard, one group per sweep, one glob to
sync a sweep.

Offline runs keep everything in ``wandb/offline-run-*/run-*.wandb`` (a LevelDB-style log of protobuf
records that ``wandb sync`` uploads; wandb 0.31 writes no ``wandb-summary.json`` offline); the test reads
those records back, and the media files wandb wrote beside them."""

from __future__ import annotations

import csv
import json
import re
import struct
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image
from wandb.proto import wandb_internal_pb2 as pb

from slimgan_pl.config import run_group, run_name
from slimgan_pl.wandb_logger import thinned, wandb_metric_name

from helpers.user_path import run_user

WIDTH_TAGS = ("w0.25", "w0.5", "w0.75", "w1.0")


def wandb_records(path: Path):
    """Records of a .wandb file: a 7-byte ':W&B' header, then LevelDB log blocks of 32 KiB whose
    chunks (7-byte header: crc32c, length, type FULL/FIRST/MIDDLE/LAST) carry protobuf Records."""
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, chunks = 7, 32768, []
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # block trailer padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0:  # zero padding up to the end of the block
            pos += left
            continue
        chunks.append(data[pos + 7 : pos + 7 + length])
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST: a complete record
            record = pb.Record()
            record.ParseFromString(b"".join(chunks))
            chunks = []
            yield record


def test_wandb_mode_comes_from_the_environment(make_cfg, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert make_cfg("logger=wandb").logger.wandb.mode == "offline"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert make_cfg("logger=wandb").logger.wandb.mode == "disabled"


def test_logger_wandb_keeps_the_csv_log_of_logger_csv(make_cfg):
    loggers = make_cfg("logger=wandb").logger
    assert set(loggers) == {"csv", "wandb"}
    as_csv = make_cfg("logger=csv").logger.csv
    assert OmegaConf.to_container(loggers.csv) == OmegaConf.to_container(as_csv)  # same class, same path


@pytest.mark.parametrize(
    "logged, on_wandb, chart",
    [
        ("train/d_loss_w0.25", "d_loss/w0.25", "d_loss"),
        ("train/g_loss_w1.0", "g_loss/w1.0", "g_loss"),
        ("train/d_loss_wmin", "d_loss/wmin", "d_loss"),  # universal mode
        ("val/fmnist_fid_w0.5", "fmnist_fid/w0.5", "fmnist_fid"),
        ("val/fid_w0.75", "fid/w0.75", "fid"),
        ("eval/fmnist_fid_w0.25", "eval_fmnist_fid/w0.25", "eval_fmnist_fid"),  # after training
        ("train/distill_loss", "train/distill_loss", None),
        ("iteration", "iteration", None),
    ],
)
def test_per_width_keys_are_renamed_for_wandb(logged, on_wandb, chart):
    name, metric, _ = wandb_metric_name(logged)
    assert (name, metric) == (on_wandb, chart)


def test_chart_history_is_thinned_evenly_keeping_both_ends():
    points = [(float(i), float(i * i)) for i in range(1, 1001)]
    kept = thinned(points, 200)
    assert len(kept) == 200 and kept[0] == points[0] and kept[-1] == points[-1]
    gaps = np.diff([x for x, _ in kept])
    assert gaps.min() >= 4 and gaps.max() <= 6  # ~999/199 iterations apart everywhere
    assert thinned(points[:50], 200) == points[:50]


def test_run_group_is_the_sweep_folder_also_for_a_resumed_job(tmp_path):
    job = tmp_path / "multirun" / "distillation" / "2026-12-07_22-46-15" / "3"
    job.mkdir(parents=True)
    assert run_group(str(job)) is None  # not (yet) a Hydra sweep folder: a single run has no group
    (job.parent / "multirun.yaml").write_text("{}")  # what Hydra writes before it launches the jobs
    assert run_group(str(job)) == "distillation/2026-12-07_22-46-15"
    assert run_name() is None  # outside a Hydra run: wandb names it


def _pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


@pytest.mark.slow
def test_offline_sweep_logs_disk_grids_metrics_by_width_csv_and_syncs_with_one_glob(tmp_path):
    env = {
        "WANDB_MODE": "offline",
        "WANDB_DIR": str(tmp_path / "wandb-home"),  # the logger's save_dir must win: runs land in the run folder
        "SLIMGAN_METRICS_CACHE": str(tmp_path / "cache"),
        "OMP_NUM_THREADS": "1",
    }
    fid = "{_target_:slimgan_pl.callbacks.PerWidthFIDCallback,every_n_iterations:2,n_fake:40,n_real:50}"
    run_user(
        "slimgan-train -m sweep=distillation debug=smoke trainer.accelerator=cpu logger=wandb "
        '\'hydra.sweeper.params={slim.alpha: "0,10", slim.stepwise: "false"}\' '
        f"'callbacks.fid={fid}'",
        cwd=tmp_path,
        env=env,
        check=True,
        timeout=300,
    )
    (sweep,) = (tmp_path / "multirun" / "distillation").iterdir()
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [j.name for j in jobs] == ["0", "1"]
    assert not (tmp_path / "wandb-home" / "wandb").exists()

    for job, alpha in zip(jobs, ("0", "10")):
        (run_dir,) = (job / "wandb").glob("offline-run-*")
        records = list(wandb_records(next(run_dir.glob("run-*.wandb"))))

        # One sweep folder = one group; the run is named by its overrides, set-up keys left out.
        (run,) = [r.run for r in records if r.HasField("run")]
        assert run.run_group == f"distillation/{sweep.name}"
        parts = run.display_name.split(",")
        assert {f"slim.alpha={alpha}", "slim.stepwise=False", "debug=smoke"} <= set(parts)
        assert not any(p.startswith(("logger=", "sweep=", "trainer.accelerator=")) for p in parts)

        # The images wandb stored are the grids on disk, pixel for pixel, and not black.
        media = run_dir / "files" / "media" / "images" / "samples"
        for tag, disk_name in [(t, f"{t}/iter_{{:06d}}.png") for t in WIDTH_TAGS] + [
            ("widths", "widths_iter_{:06d}.png")
        ]:
            logged = sorted(media.glob(f"{tag}_*.png"), key=lambda p: int(p.name.split("_")[-2]))
            assert len(logged) == 2, (tag, logged)  # iterations 2 and 4
            for png, iteration in zip(logged, (2, 4)):
                on_wandb, on_disk = _pixels(png), _pixels(job / "samples" / disk_name.format(iteration))
                assert on_wandb.shape == on_disk.shape and np.abs(on_wandb - on_disk).max() <= 1, (png, iteration)
                assert on_wandb.max() > 0 and 20 < on_wandb.mean() < 235, (png, on_wandb.max(), on_wandb.mean())

        # Per-width metrics reach wandb as <metric>/<width> (one section per metric), never the CSV names.
        history = {
            item.key or "/".join(item.nested_key) for r in records if r.HasField("history") for item in r.history.item
        }
        for tag in WIDTH_TAGS:
            assert {f"d_loss/{tag}", f"g_loss/{tag}", f"fmnist_fid/{tag}"} <= history, tag
        assert not any(re.match(r"(train|val)/.*_w[\d.]+$", key) for key in history)

        # One chart per metric, widths as its lines: a line-series custom chart over the iterations.
        visualize = {
            u.nested_key[-1]: json.loads(u.value_json)
            for r in records
            if r.HasField("config")
            for u in r.config.update
            if list(u.nested_key[:2]) == ["_wandb", "visualize"]
        }
        assert set(visualize) == {"widths/d_loss", "widths/g_loss", "widths/fmnist_fid"}
        assert {v["panel_config"]["panelDefId"] for v in visualize.values()} == {"wandb/lineseries/v0"}
        tables = (run_dir / "files" / "media" / "table").rglob("fmnist_fid_table_*.table.json")
        latest = max(tables, key=lambda p: int(p.name.split("_")[-2]))  # <key>_<wandb step>_<hash>.table.json
        table = json.loads(latest.read_text())  # the latest redraw: the whole history
        assert table["columns"] == ["step", "lineKey", "lineVal"]
        assert sorted({row[1] for row in table["data"]}) == sorted(WIDTH_TAGS)
        assert sorted({row[0] for row in table["data"]}) == [2, 4]  # SlimGAN iterations of the evaluations

        # The CSV log beside wandb, with the CSV names slimgan-collect and the study read.
        with open(job / "csv" / "metrics.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        losses = [r for r in rows if r.get("train/d_loss_w0.25")]
        assert [float(r["iteration"]) for r in losses] == [1.0, 2.0, 3.0, 4.0]
        assert all(float(r[f"train/g_loss_{t}"]) == float(r[f"train/g_loss_{t}"]) for r in losses for t in WIDTH_TAGS)
        assert [float(r["iteration"]) for r in rows if r.get("val/fmnist_fid_w1.0")] == [2.0, 4.0]

    # slimgan-collect still finds the training FID of every run.
    run_user(f"slimgan-collect {sweep} --runs", cwd=tmp_path, check=True, timeout=120)  # --runs: one row per run
    collected = json.loads((sweep / "results.json").read_text())
    assert len(collected) == 2 and all(row[f"fid_train_{t}"] > 0 for row in collected for t in WIDTH_TAGS)

    # The documented one-liner's glob finds both runs; --dry-run lists what `wandb sync` would upload.
    dry = run_user(
        f"python -m wandb sync --dry-run multirun/distillation/{sweep.name}/*/wandb/offline-run-*",
        cwd=tmp_path,
        check=True,
        timeout=120,
    )
    assert "Would sync 2 run(s)" in dry.stdout + dry.stderr
