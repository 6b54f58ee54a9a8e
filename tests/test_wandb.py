"""logger=wandb with no account: offline by default, sweep grouping, per-width losses and sample grids.

Offline runs keep everything in ``wandb/offline-run-*/run-*.wandb`` (a LevelDB-style log of protobuf
records that ``wandb sync`` uploads); the test reads those records back."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from wandb.proto import wandb_internal_pb2 as pb

REPO = Path(__file__).parents[1]
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


@pytest.mark.slow
def test_offline_sweep_run_logs_config_group_tags_losses_and_grids(tmp_path):
    sweep = tmp_path / "sweep"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), WANDB_DIR=str(tmp_path / "wandb-home"))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "slimgan_pl.train",
            "-m",
            "sweep=distillation",
            "debug=smoke",
            "logger=wandb",
            "hydra.sweeper.params={slim.alpha: '10', slim.stepwise: 'false'}",
            f"hydra.sweep.dir={sweep}",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir,) = (sweep / "0" / "wandb").glob("offline-run-*")  # offline without any account or WANDB_MODE
    records = list(wandb_records(next(run_dir.glob("run-*.wandb"))))

    (run,) = [r.run for r in records if r.HasField("run")]
    assert run.run_group == "distillation"
    assert {"slim.alpha=10", "slim.stepwise=false", "sweep=distillation"} <= {t.lower() for t in run.tags}

    config = {u.key: json.loads(u.value_json) for r in records if r.HasField("config") for u in r.config.update}
    assert config["slim"]["alpha"] == 10 and config["slim"]["stepwise"] is False  # the resolved Hydra config
    assert config["model"]["generator"]["ngf"] == 16 and config["sweep_name"] == "distillation"

    history = {
        item.key or "/".join(item.nested_key) for r in records if r.HasField("history") for item in r.history.item
    }
    for tag in WIDTH_TAGS:
        assert {f"train/d_loss_{tag}", f"train/g_loss_{tag}"} <= history
        assert f"samples/{tag}" in history or f"samples/{tag}/_type" in history
        images = list((run_dir / "files" / "media" / "images" / "samples").glob(f"{tag}_*.png"))
        assert len(images) == 2, (tag, images)  # grids at iterations 2 and 4
