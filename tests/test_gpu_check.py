"""scripts/gpu_check.sh in its CPU mode (the GPU run needs a GPU): the script runs, each check adds
a row, the table is written. The CPU mode of the slow checks (BigGAN precision, exact resume, demo
recipe, speed) takes minutes here: run them with `bash scripts/gpu_check.sh --cpu`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).parents[1]


def test_gpu_check_cpu_mode_writes_one_table(tmp_path):
    out = tmp_path / "cpu_check.md"
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            "bash",
            str(REPO / "scripts" / "gpu_check.sh"),
            "--cpu",
            "--out",
            str(out),
            "--",
            "--only",
            "environment",
            "sampling",
            "ddp",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = json.loads(out.with_suffix(".json").read_text())
    assert [r["check"] for r in rows] == [
        "environment",
        "CPU vs device sampling, same seed",
        "2-process DDP (gloo) + cross-replica BN on one device",
    ]
    assert all(r["result"] == "ok" for r in rows), rows
    assert "| check | result | s | details |" in out.read_text()


def test_gpu_check_refuses_cuda_mode_without_a_gpu(tmp_path):
    import torch

    if torch.cuda.is_available():
        return
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gpu_check.py"), "--device", "cuda", "--out", str(tmp_path / "x.md")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "--device cpu" in proc.stderr
