"""model.compile=true runs real training steps (issue 32): Dynamo traces G's forward and D's score_all
in a Lightning training step, compiles a bounded set of graphs during the first iteration and none
after (no per-iteration recompiles), and the unverified combinations are refused before training.

The quick test compiles with Dynamo's ``eager`` backend (tracing, guards and recompiles exactly as with
Inductor, without Inductor's code generation: seconds instead of minutes on this CPU); the slow one runs
Inductor itself (docs/speed.md: minutes per width on a 2-core CPU)."""

from __future__ import annotations

import functools
import os

import pytest
import pytorch_lightning as pl
import torch
import torch._dynamo
from torch._dynamo.utils import counters

from slimgan_pl.train import ConfigError, build

pytestmark = pytest.mark.usefixtures("one_thread")

ITERATIONS = 3


class FramesPerIteration(pl.Callback):
    """Dynamo frames compiled during each iteration (``counters['frames']['ok']`` differences)."""

    def __init__(self) -> None:
        self.per_iteration: list[int] = []
        self._before = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._before = counters["frames"]["ok"]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.per_iteration.append(counters["frames"]["ok"] - self._before)


def _compile_run(make_cfg, fmnist_root: str, *extra: str) -> tuple[FramesPerIteration, pl.LightningModule]:
    cfg = make_cfg(
        "debug=smoke",
        f"data.root={fmnist_root}",
        "data.limit=64",
        "data.batch_size=4",
        f"train.g_steps={ITERATIONS}",
        "optim.n_dis=1",
        "model.generator.ngf=8",
        "model.discriminator.ndf=8",
        "slim.widths=[0.5,1.0]",
        "model.compile=true",
        "callbacks.sample_grid=null",
        "callbacks.model_checkpoint=null",
        "callbacks.progress_bar=null",
        "+trainer.enable_checkpointing=false",
        "logger=none",
        *extra,
    )
    model, datamodule, trainer = build(cfg)
    frames = FramesPerIteration()
    trainer.callbacks.append(frames)
    torch._dynamo.reset()
    counters.clear()
    trainer.fit(model, datamodule=datamodule)
    return frames, model


def test_compiled_training_steps_compile_in_the_first_iteration_only(make_cfg, fmnist_root, monkeypatch):
    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", functools.partial(real_compile, backend="eager"))
    frames, model = _compile_run(make_cfg, fmnist_root)
    assert model.iteration == ITERATIONS
    assert model._compiled is not None  # the training step ran the compiled forwards
    first, *later = frames.per_iteration
    # G per width x grad mode (D steps under no_grad, G steps with grad) and D's score_all per grad mode
    assert 1 <= first <= 4 * len(model.widths) + 4, frames.per_iteration
    assert later == [0] * (ITERATIONS - 1), frames.per_iteration  # no recompiles in steady state
    assert counters["stats"]["unique_graphs"] >= 2
    for p in model.parameters():
        assert torch.isfinite(p).all()


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("SLIMGAN_TEST_INDUCTOR"), reason="minutes on a CPU: SLIMGAN_TEST_INDUCTOR=1")
def test_inductor_compiled_training_step_runs(make_cfg, fmnist_root):
    """Inductor itself (minutes on a 2-core CPU: docs/speed.md)."""
    frames, model = _compile_run(make_cfg, fmnist_root, "slim.widths=[1.0]", "slim.alpha=0")
    assert model.iteration == ITERATIONS and frames.per_iteration[1:] == [0] * (ITERATIONS - 1)


@pytest.mark.parametrize("setting", ["model.sync_bn=true", "slim.mode=universal"])
def test_compile_with_unverified_settings_is_refused_in_one_line(make_cfg, setting):
    with pytest.raises(ConfigError, match=r"model\.compile=true") as error:
        build(make_cfg("model.compile=true", setting))
    assert "\n" not in str(error.value)


def test_slimgan_train_refuses_compile_with_sync_bn_before_training(tmp_path):
    from helpers.user_path import run_user

    result = run_user("slimgan-train model.compile=true model.sync_bn=true debug=smoke", cwd=tmp_path, check=False)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "slimgan-train: config error: model.compile=true with model.sync_bn=true"
    )
    assert not (tmp_path / "outputs").exists() or not list((tmp_path / "outputs").rglob("*.ckpt"))
