"""scripts/gpu_check.sh in its CPU mode (the GPU run needs a GPU): the script runs end to end, each check
adds a row and named numbers to the JSON, the Markdown has the table. Smoke-sized checks only here (the
speed, compile, precision, resume and demo checks take minutes on this CPU: run them with
`bash scripts/gpu_check.sh --cpu`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).parents[1]


def _gpu_check(*args: str, env_extra: dict[str, str] | None = None, timeout: int = 300):
    env = {k: v for k, v in os.environ.items() if k != "OUT"}
    env.update(PYTHON=sys.executable, OMP_NUM_THREADS="1", **(env_extra or {}))
    return subprocess.run(
        ["bash", str(REPO / "scripts" / "gpu_check.sh"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_gpu_check_prepare_then_cpu_mode_writes_json_fields_and_a_table(tmp_path):
    """The lent-GPU recipe end to end, CPU-sized: --prepare fills a bundle here (PyPI), then the check runs
    from that bundle (its Fashion-MNIST copy) and writes its JSON and table under $OUT."""
    bundle = tmp_path / "bundle"
    prepared = _gpu_check("--prepare", str(bundle), timeout=600)
    assert prepared.returncode == 0, prepared.stdout[-2000:] + prepared.stderr[-2000:]
    wheels = " ".join(p.name for p in (bundle / "wheels").iterdir())
    for name in ("hydra_core", "pytorch_lightning", "torchmetrics", "torch_fidelity", "submitit", "antlr4", "wheel"):
        assert name in wheels, wheels  # everything but torch/torchvision, for an offline GPU machine
    assert len(list((bundle / "data" / "fashion-mnist").glob("*-ubyte.gz"))) == 4
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc = _gpu_check(
        "--bundle",
        str(bundle),
        "--cpu",
        "--",
        "--only",
        "environment",
        "sampling",
        "syncs",
        "parity",
        env_extra={"OUT": str(out_dir)},
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = out_dir / "gpu_check.md"  # --out defaults to $OUT/gpu_check.md
    result = json.loads(report.with_suffix(".json").read_text())
    assert [r["check"] for r in result["checks"]] == [
        "environment",
        "CPU vs device sampling, same seed",
        "host syncs per steady-state iteration",
        "bf16 vs fp32 gradient parity, one batch",
    ]
    assert all(r["result"] == "ok" for r in result["checks"]), result["checks"]
    fields = result["fields"]
    versions = fields["versions"]
    for key in ("torch", "torchvision", "cuda", "cudnn", "nccl", "driver", "tf32_matmul", "tf32_cudnn", "lightning"):
        assert key in versions
    assert versions["torch"].split("+")[0] in proc.stdout + report.read_text()
    assert fields["sampling_max_abs_diff"] == 0.0  # CPU against CPU
    assert fields["host_syncs_per_iteration"] == {"sndcgan": 0.0, "biggan_ema": 0.0}
    parity = fields["bf16_gradient_parity"]
    assert set(parity) == {"generator", "discriminator"}
    assert all(0.98 < p["cosine"] <= 1.0 and 0.0 < p["relative_l2"] < 0.5 for p in parity.values())
    assert "| check | result | s | details |" in report.read_text()


def test_gpu_check_out_must_lie_under_OUT(tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc = _gpu_check("--cpu", "--out", str(tmp_path / "elsewhere.md"), env_extra={"OUT": str(out_dir)}, timeout=60)
    assert proc.returncode == 2 and "outside $OUT" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_gpu_check_defaults_to_the_shipped_classifier_and_python3():
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gpu_check.py"), "--help"], capture_output=True, text=True, timeout=120
    )
    assert "fmnist_classifier_v1.pt" in proc.stdout.replace("\n", "").replace(" ", "")
    assert (REPO / "slimgan_pl" / "metrics" / "weights" / "fmnist_classifier_v1.pt").is_file()
    script = (REPO / "scripts" / "gpu_check.sh").read_text()
    assert "PY=${PYTHON:-python3}" in script and "setuptools" in script and "--system-site-packages" in script


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
