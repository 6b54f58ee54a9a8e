"""The README as executable documentation: every command and snippet runs as a new user would run it
(smoke-sized, from a scratch folder, with the venv's scripts), so a README that drifts from the code fails.

Every ```bash and ```python block of README.md has a marker comment on the line above it:
    <!-- readme-test: run -->           run it
    <!-- readme-test: run-if-slurm -->  run it when a SLURM node is up (skipped, saying why, otherwise)
    <!-- readme-test: skip (why) -->    not run (e.g. `make demo`, which builds .venv)
Blocks run in README order in one scratch folder: later blocks use the runs of earlier ones. Each command
named in SMOKE_ARGS gets those arguments appended, which is how a 15-minute demo becomes a seconds-long check.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torchvision.utils import save_image

from slimgan_pl.metrics import fmnist_classifier as fc

from helpers.user_path import check_installed, user_env

REPO = Path(__file__).parents[1]
README = REPO / "README.md"

SMOKE_ARGS = {
    "slimgan-train": ["debug=smoke", "trainer.accelerator=cpu"],
    "slimgan-eval": [
        "--n-fake",
        "64",
        "--n-real",
        "64",
        "--is-splits",
        "2",
        "--kid-subsets",
        "4",
        "--kid-subset-size",
        "32",
        "--latency-repeats",
        "1",
        "--latency-warmup",
        "0",
        "--no-sanity",
    ],
    # The README's own 2 ms budget on one thread (the default): the smoke widths take 0.3-0.9 ms of CPU time
    # even on a loaded 2-core machine, so "no width fits" (exit 1) fails this test instead of being hidden.
    "slimgan-pick": ["--repeats", "5"],
}
# debug=smoke runs write to outputs/smoke/<task>/ (never mistaken for a real run): the blocks' paths follow.
REAL_OUTPUTS = re.compile(r"\boutputs/(?!smoke/)")
# A sweep over seeds is evaluated (tiny counts): `slimgan-collect --compare` needs the runs' FIDs.
SEED_SWEEP_EVAL = [
    "evaluate.after_training=true",
    "evaluate.n_fake=64",
    "evaluate.n_real=64",
    "evaluate.latency_repeats=1",
]
MARKER = re.compile(r"^<!-- readme-test: (run|run-if-slurm|skip \(.+\)) -->$")
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```$", re.M | re.S)
# Linked from the README, written on other branches of the same change (remove once they are merged).


@dataclass
class Block:
    lang: str
    code: str
    line: int
    marker: str | None

    @property
    def id(self) -> str:
        return f"L{self.line}-{self.lang}"


def readme_blocks(text: str) -> list[Block]:
    blocks = []
    for m in BLOCK.finditer(text):
        before = text[: m.start()].rstrip("\n").splitlines()
        marker = MARKER.match(before[-1].strip()) if before else None
        blocks.append(Block(m.group(1), m.group(2), len(before) + 2, marker.group(1) if marker else None))
    return blocks


BLOCKS = [b for b in readme_blocks(README.read_text()) if b.lang in ("bash", "sh", "python")]
RUNNABLE = [b for b in BLOCKS if b.marker in ("run", "run-if-slurm")]


def smoke_sized(line: str) -> str:
    """The command with SMOKE_ARGS inserted before its trailing comment, reading smoke runs' outputs."""
    line = REAL_OUTPUTS.sub("outputs/smoke/", line)
    comment_at = re.search(r"\s+#", line)
    command, comment = (line[: comment_at.start()], line[comment_at.start() :]) if comment_at else (line, "")
    words = command.split()
    if words and words[0] in SMOKE_ARGS:
        command = " ".join([command.rstrip(), *SMOKE_ARGS[words[0]]])
        if words[0] == "slimgan-train" and "-m" in words and any(w.startswith("seed=") for w in words):
            command = " ".join([command, *SEED_SWEEP_EVAL])
    return command + comment


def slurm_reason() -> str | None:
    if shutil.which("sinfo") is None:
        return "no SLURM here (sinfo not found; .ci/run starts one with scripts/local_slurm.sh)"
    states = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30).stdout.split()
    if not {"idle", "mixed", "allocated"} & set(states):
        return f"no usable SLURM node (sinfo states: {states or 'none'})"
    return None


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("readme")
    images = folder / "my_images"  # the README's "your own images" folder: 16 random RGB pictures
    images.mkdir()
    for i in range(16):
        save_image(torch.rand(3, 72, 80), images / f"{i:02d}.png")
    return folder


@pytest.fixture(scope="module")
def env(scratch, fmnist_root) -> dict[str, str]:
    # A small FMNIST classifier (seconds to train), so slimgan-eval needs no cached one.
    model, acc, info = fc.train_classifier(root=fmnist_root, epochs=1, limit=1000, test_limit=200, log=None)
    classifier = fc.save_classifier(model, scratch / ".classifier" / "clf.pt", acc, info)
    check_installed()  # the venv's own install, no PYTHONPATH: what a user has after make setup
    return user_env(
        {
            "OMP_NUM_THREADS": "1",
            "SLIMGAN_FMNIST_CLASSIFIER": str(classifier),
            "SLIMGAN_METRICS_CACHE": str(scratch / ".cache"),
        }
    )


def test_every_code_block_is_marked():
    unmarked = [b.id for b in BLOCKS if b.marker is None]
    assert not unmarked, f"README blocks without a <!-- readme-test: ... --> line above them: {unmarked}"
    assert len(RUNNABLE) >= 4  # train + sweep, SLURM, deploy + evaluate, Python


def test_smoke_sizing_keeps_the_command_and_its_comment():
    assert (
        smoke_sized("slimgan-train experiment=fmnist_demo   # train")
        == "slimgan-train experiment=fmnist_demo debug=smoke trainer.accelerator=cpu   # train"
    )
    assert (
        smoke_sized("ls outputs/fmnist_demo/*/x outputs/smoke/y") == "ls outputs/smoke/fmnist_demo/*/x outputs/smoke/y"
    )
    assert smoke_sized("slimgan-sample $CKPT -n 4") == "slimgan-sample $CKPT -n 4"


@pytest.mark.parametrize("block", RUNNABLE, ids=[b.id for b in RUNNABLE])
def test_readme_block_runs(block: Block, scratch: Path, env: dict[str, str]):
    if block.marker == "run-if-slurm" and (reason := slurm_reason()):
        pytest.skip(reason)
    if block.lang == "python":
        script = scratch / f"readme_{block.id}.py"
        script.write_text(REAL_OUTPUTS.sub("outputs/smoke/", block.code))
        cmd = [sys.executable, str(script)]
    else:
        cmd = ["bash", "-euo", "pipefail", "-c", "\n".join(smoke_sized(ln) for ln in block.code.splitlines())]
    proc = subprocess.run(cmd, cwd=scratch, env=env, capture_output=True, text=True, timeout=600)
    output = f"{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    assert proc.returncode == 0, f"README block at line {block.line} failed:\n{output}"


def test_readme_commands_left_their_results(scratch: Path):
    """What the quick start promises is there (runs after the blocks above)."""
    runs = sorted(scratch.glob("outputs/smoke/fmnist_demo/*/"))
    assert runs, "slimgan-train experiment=fmnist_demo made no run directory"
    run = runs[0]
    assert (run / "checkpoints" / "last.ckpt").is_file() and (run / "samples" / "widths_iter_000004.png").is_file()
    assert len(list(scratch.glob("multirun/width_sets/*/[0-9]/summary.json"))) == 3  # one run per width set
    assert (scratch / "w05.png").is_file()
    assert len(list(scratch.glob("outputs/smoke/my_images/*/checkpoints/last.ckpt"))) == 1
    assert not (scratch / "outputs" / "fmnist_demo").exists()  # smoke runs stay out of the real runs' folders
    assert (scratch / "w04.png").is_file()
    collected = next(scratch.glob("multirun/fmnist_demo/collect.md")).read_text()  # the seed sweep's table
    assert "FMNIST-FID (fmnist, 64 fake / 64 real)" in collected and "| 3 | 0,1,2 |" in collected
    assert "paired t" in collected and (scratch / "multirun" / "fmnist_demo" / "collect.png").is_file()
    assert (scratch / "w04.png").is_file() and len(list(scratch.glob("outputs/smoke/fmnist_universal/*/"))) == 1
    assert {p.suffix for p in (run / "export").iterdir()} >= {".pt", ".json", ".onnx"}
    # smoke-sized counts: a reduced evaluation, named metrics-<preset>-<counts>.md (metrics.md is the full one)
    reduced = list(run.glob("metrics-fmnist-*.md"))
    assert len(reduced) == 1 and "FMNIST-FID" in reduced[0].read_text()


def test_links_point_to_files():
    missing = []
    for doc in [README, *sorted((REPO / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)|src=\"([^\"]+)\"", doc.read_text()):
            target = next(t for t in target if t)
            if re.match(r"^[a-z]+://", target):
                continue
            path = (doc.parent / target).resolve()
            if not path.exists():
                missing.append(f"{doc.relative_to(REPO)} -> {target}")
    assert not missing, missing
