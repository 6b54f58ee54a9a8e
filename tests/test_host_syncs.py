"""Host-sync budget of a training iteration (issue 32), counted on the CPU.

On a GPU every tensor-to-Python read (``.item()``, ``float(t)``, ``bool(t)``, ``if t:``) waits for the
device: the host stops queueing kernels. These tests count such reads (``aten::_local_scalar_dense``,
``aten::item``, ``aten::is_nonzero``) with a ``TorchDispatchMode`` over whole steady-state iterations
(from the start of one batch to the start of a later one: the step, the callbacks, the logger's per-step
work) after warm-up, with logging, checkpoints, sample grids and evaluation set to fall outside the
window. The budget is 0 reads per iteration in every mode; reads by the Lightning loop itself are
counted in their own bucket (see docs/speed.md, "Host syncs").

Reads inside ``torch/optim`` are not counted: Adam's step counters live on the CPU even for CUDA
parameters (unless ``capturable``), so those reads never wait for a GPU. Python numbers turned into
tensors (``torch.tensor(0.1)``: ``aten::lift_fresh``, on a GPU a blocking host-to-device copy) are
counted too, in ``h2d``.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import sys
from collections import Counter
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from slimgan_pl.train import build

pytestmark = pytest.mark.usefixtures("one_thread")

WARMUP = 2  # iterations before the window (first-step allocations, lazy state, the first log)
COUNTED = 3  # iterations in the window

SCALAR_READS = {
    torch.ops.aten._local_scalar_dense.default,
    torch.ops.aten.item.default,
    torch.ops.aten.is_nonzero.default,
}
PYTHON_TO_TENSOR = {torch.ops.aten.lift_fresh.default}

# Reads the Lightning loop makes itself, bucketed apart so the project's own budget stays 0:
# pytorch_lightning/loops/training_epoch_loop.py broadcasts rank 0's SIGTERM flag before every batch
# under DDP and reads it back with .item() (Lightning 2.6; docs/speed.md).
LIGHTNING_LOOP = "pytorch_lightning/loops/"


class HostSyncCounter(TorchDispatchMode):
    """Counts scalar reads and Python-number tensors, with the caller chain of each for the message."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[str] = Counter()
        self.where: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        bucket = "reads" if func in SCALAR_READS else "h2d" if func in PYTHON_TO_TENSOR else None
        if bucket is not None:
            frame, callers = sys._getframe(1), []
            while frame is not None:
                callers.append(f"{frame.f_code.co_filename}:{frame.f_lineno}")
                frame = frame.f_back
            if not any("/torch/optim/" in c for c in callers):
                first_outside_torch = next((c for c in callers if "/torch/" not in c), "")
                if LIGHTNING_LOOP in first_outside_torch:
                    bucket = f"lightning_loop_{bucket}"
                self.counts[bucket] += 1
                project = [c for c in callers if "slimgan_pl" in c or "pytorch_lightning" in c or "/torch/amp/" in c]
                self.where.append(
                    f"{bucket}: " + " < ".join(c.rsplit("/", 2)[-2] + "/" + c.rsplit("/", 1)[-1] for c in project[:6])
                )
        return func(*args, **(kwargs or {}))


class CountWindow(pl.Callback):
    """Counts from the start of batch ``WARMUP`` to the start of batch ``WARMUP + COUNTED``; with
    ``out_dir``, each rank writes its counts to ``rank<r>.json`` (DDP ranks are forked processes)."""

    def __init__(self, out_dir: Path | None = None) -> None:
        self.mode = HostSyncCounter()
        self.out_dir = out_dir
        self.active = False

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == WARMUP:
            self.mode.__enter__()
            self.active = True
        elif batch_idx == WARMUP + COUNTED and self.active:
            self.mode.__exit__(None, None, None)
            self.active = False

    def on_train_end(self, trainer, pl_module):
        if self.active:
            self.mode.__exit__(None, None, None)
            self.active = False
        if self.out_dir is not None:
            path = self.out_dir / f"rank{trainer.global_rank}.json"
            path.write_text(json.dumps({"counts": dict(self.mode.counts), "where": self.mode.where}))


def quiet_overrides(fmnist_root: str, *extra: str) -> list[str]:
    """Tiny networks; logs, checkpoints, grids and evaluation outside the counted window."""
    iterations = WARMUP + COUNTED + 1  # the window ends at the start of the last batch
    return [
        "debug=smoke",
        f"data.root={fmnist_root}",
        "data.limit=128",
        "data.batch_size=4",
        f"train.g_steps={iterations}",
        "train.checkpoint_every=1000",
        "optim.n_dis=2",
        "model.generator.ngf=8",
        "model.discriminator.ndf=8",
        "slim.widths=[0.5,1.0]",
        "callbacks.sample_grid=null",
        "callbacks.progress_bar={_target_:slimgan_pl.callbacks.IterationProgressBar,refresh_rate:1000}",
        "trainer.log_every_n_steps=1000",
        *extra,
    ]


MODES = {
    "sndcgan": [],
    "snresgan": ["model=snresgan32", "optim=resnet"],
    "biggan_ema_standing": [
        "model=biggan32",
        "optim=biggan",
        "optim.n_dis=2",
        "ema=default",
        "ema.start=1",
        "ema.decay=0.999",
        "ema.standing_batches=2",
        "ema.standing_batch_size=4",
    ],
    "universal": [
        "slim.mode=universal",
        "slim.widths=[0.5,1.0]",
        "slim.range=[0.5,1.0]",
        "slim.n_random=1",
        "slim.calibration_batches=1",
        "slim.calibration_batch_size=4",
    ],
    "lr_decay_linear": ["optim.lr_decay=linear"],
    "bf16_mixed_biggan_ema": [
        "trainer.precision=bf16-mixed",
        "model=biggan32",
        "optim=biggan",
        "optim.n_dis=2",
        "ema=default",
        "ema.start=1",
        "ema.decay=0.999",
    ],
}


@pytest.mark.parametrize("mode", list(MODES))
def test_steady_state_iterations_do_not_sync(make_cfg, fmnist_root, mode):
    cfg = make_cfg(*quiet_overrides(fmnist_root, *MODES[mode]))
    model, datamodule, trainer = build(cfg)
    counter = CountWindow()
    trainer.callbacks.append(counter)
    trainer.fit(model, datamodule=datamodule)
    assert counter.mode.counts["reads"] == 0, "\n".join(counter.mode.where)
    assert counter.mode.counts["h2d"] == 0, "\n".join(counter.mode.where)
    assert counter.mode.counts["lightning_loop_reads"] == 0  # one process: Lightning's loop reads nothing


def fp16_trainer(trainer: pl.Trainer, cfg) -> pl.Trainer:
    """The run's trainer with fp16 autocast and a GradScaler on the CPU (Lightning turns
    ``precision=16-mixed`` into bf16 on a CPU, so the plugin is passed explicitly)."""
    from hydra.utils import instantiate
    from pytorch_lightning.plugins.precision import MixedPrecision

    plugin = MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu"))
    kwargs = {k: v for k, v in cfg.trainer.items() if k != "precision"}
    return instantiate(kwargs, callbacks=trainer.callbacks, logger=False, plugins=[plugin])


@pytest.mark.parametrize("fused, reads_per_optimizer_step", [(False, 1), (True, 0)])
def test_16_mixed_syncs_only_without_fused_adam(make_cfg, fmnist_root, fused, reads_per_optimizer_step):
    """The GradScaler's inf check reads one flag per optimizer step (n_dis + 1 per iteration) unless the
    optimizer unscales itself (fused Adam, ``optim.fused=true``)."""
    cfg = make_cfg(*quiet_overrides(fmnist_root, f"optim.fused={str(fused).lower()}"))
    model, datamodule, trainer = build(cfg)
    trainer = fp16_trainer(trainer, cfg)
    counter = CountWindow()
    trainer.callbacks.append(counter)
    trainer.fit(model, datamodule=datamodule)
    expected = COUNTED * (cfg.optim.n_dis + 1) * reads_per_optimizer_step
    assert counter.mode.counts["reads"] == expected, "\n".join(counter.mode.where)
    assert trainer.precision_plugin.scaler.get_scale() > 0  # the scaler ran


@pytest.mark.skipif("fork" not in mp.get_all_start_methods(), reason="needs fork")
def test_ddp_cpu_iterations_do_not_sync(make_cfg, fmnist_root, tmp_path):
    """Two gloo processes (trainer=ddp_cpu): no host read in a steady-state iteration. Lightning 2.6's own
    per-batch SIGTERM broadcast is switched off by PreemptionCheckpoint (which handles the signal), and the
    ranks agree on a signal only every ``callbacks.preemption.poll_every`` iterations (default 10), outside
    this window."""
    cfg = make_cfg(
        *quiet_overrides(
            fmnist_root, "trainer=ddp_cpu", "trainer.strategy.start_method=fork", "model.sync_bn=true", "logger=none"
        )
    )
    model, datamodule, trainer = build(cfg)
    trainer.callbacks.append(CountWindow(tmp_path))
    trainer.fit(model, datamodule=datamodule)
    for rank in range(2):
        result = json.loads((tmp_path / f"rank{rank}.json").read_text())
        counts = result["counts"]
        assert counts.get("lightning_loop_reads", 0) == 0, "\n".join(result["where"])  # its broadcast: off
        assert counts.get("reads", 0) == 0, "\n".join(result["where"])
        assert counts.get("h2d", 0) == 0, "\n".join(result["where"])


# ----------------------------------------------------------------------------- the EMA's spectral norms
def _biggan_and_ema() -> tuple[torch.nn.Module, torch.nn.Module, torch.nn.Module]:
    import copy

    from slimgan_pl import SlimGAN

    torch.manual_seed(0)
    g = dict(arch="biggan32", ngf=16, img_channels=1, num_classes=10)
    model = SlimGAN(generator=g, discriminator=dict(arch="biggan32", ndf=16, num_classes=10), widths=[0.5, 1.0])
    return model, *(copy.deepcopy(model.generator).requires_grad_(False) for _ in range(2))


def _train_like_step(model, scale: float = 1e-3) -> None:
    """An Adam-sized change of every weight of G, then a train-mode forward (G's own u/v move)."""
    with torch.no_grad():
        for p in model.generator.parameters():
            p.add_(scale * p.abs().mean() * torch.randn_like(p))
        model.generator.train()(model.noise(4), 1.0, model.random_labels(4))


@pytest.mark.parametrize("decay", [0.0, 0.999])
def test_device_side_tracking_equals_the_host_loop_at_training_speeds(decay):
    """ema_update's device-side stopping test (no host read) gives the vectors of the host loop it
    replaced (converge_spectral_norms: iterate until sigma settles) while the weights move as in training."""
    from slimgan_pl.ema import _lerp_into, converge_spectral_norms, ema_update, spectral_norms

    model, ema_device, ema_host = _biggan_and_ema()
    for _ in range(5):
        _train_like_step(model)
        ema_update(ema_device, model.generator, decay)
        _lerp_into(ema_host, model.generator, decay)
        assert converge_spectral_norms(ema_host) <= 4  # within the device loop's iterations per update
        pairs = list(zip(spectral_norms(ema_device), spectral_norms(ema_host)))
        assert len(pairs) > 10
        for (sn_d, _), (sn_h, _) in pairs:
            torch.testing.assert_close(sn_d._u, sn_h._u, rtol=0, atol=1e-6)
            torch.testing.assert_close(sn_d._v, sn_h._v, rtol=0, atol=1e-6)


def test_ema_update_is_float32_under_bf16_autocast(monkeypatch):
    """The EMA's lerp and power iterations run with autocast off: under bf16 autocast (as in a
    bf16-mixed training step) the EMA generator ends bit for bit as without autocast, and no
    matrix-vector product runs with autocast on (CUDA autocast runs ``mv`` in half precision; the
    CPU's leaves it in float32, hence the spy)."""
    from slimgan_pl.ema import ema_update

    model, ema_plain, ema_autocast = _biggan_and_ema()
    autocast_during_mv = []
    real_mv = torch.mv

    def spy_mv(*args, **kwargs):
        autocast_during_mv.append(torch.is_autocast_enabled("cpu"))
        return real_mv(*args, **kwargs)

    monkeypatch.setattr(torch, "mv", spy_mv)
    for _ in range(3):
        _train_like_step(model, scale=1e-2)
        ema_update(ema_plain, model.generator, 0.9)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            ema_update(ema_autocast, model.generator, 0.9)
    assert autocast_during_mv and not any(autocast_during_mv)
    state_plain, state_autocast = ema_plain.state_dict(), ema_autocast.state_dict()
    assert any(k.endswith("_u") for k in state_plain)
    for name, value in state_plain.items():
        assert state_autocast[name].dtype == value.dtype
        assert torch.equal(state_autocast[name], value), name
