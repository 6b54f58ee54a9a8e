"""The checks of scripts/gpu_check.sh (run that; it installs what is missing from the bundle first).

    python3 scripts/gpu_check.py --device cuda --out $OUT/gpu_check.md    # on one CUDA GPU, < 10 minutes
    python3 scripts/gpu_check.py --device cpu --out cpu_check.md          # the same code paths, smoke-sized

Each check runs in its own try block and adds one row (check, result, seconds, details) to the table,
plus named numbers to the JSON's ``fields`` (host syncs per iteration, it/s, TFLOP/s, peak memory,
gradient parity, fp16 loss scale, compile, versions): ``--out`` gets the Markdown (the summary table and
a speed table), ``--out`` with ``.json`` the numbers. Exit status 1 when any check failed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils._python_dispatch import TorchDispatchMode

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

ROWS: list[tuple[str, str, float, str]] = []
FIELDS: dict[str, object] = {}  # the JSON's named numbers, filled by the checks
SPEED_ROWS: list[dict[str, object]] = []

# Expected on one H100 (fp32, whole iterations with data): what a reader compares against.
EXPECTED_IT_S = {"demo": (30.0, 60.0, 20.0), "cifar10_snresgan32_ngf256": (11.0, 18.0, 8.0)}  # low, high, wrong-below


def check(name: str) -> Callable[[Callable[[], str]], Callable[[], None]]:
    def wrap(fn: Callable[[], str]) -> Callable[[], None]:
        def run() -> None:
            start = time.perf_counter()
            try:
                detail, result = fn(), "ok"
            except SkipCheck as e:
                detail, result = str(e), "skipped"
            except Exception as e:  # noqa: BLE001 - a failed check is a row, the others still run
                traceback.print_exc()
                detail, result = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:200], "FAILED"
            ROWS.append((name, result, time.perf_counter() - start, detail))
            print(f"[gpu_check] {name}: {result} ({detail})", flush=True)

        return run

    return wrap


class SkipCheck(Exception):
    pass


def compose(*overrides: str, out: Path):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from slimgan_pl.config import config_dir, register_resolvers

    register_resolvers()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return hydra_compose(
            "config",
            overrides=[
                f"paths.output_dir={out}",
                f"data.root={ARGS.data_root}",
                "logger=none",
                "trainer.enable_model_summary=false",
                f"trainer.accelerator={ACCEL}",
                *overrides,
            ],
        )


def tiny(*overrides: str) -> list[str]:
    """CPU mode: smaller networks and fewer iterations, the same code paths."""
    return list(overrides) + (
        ["model.generator.ngf=16", "model.discriminator.ndf=16", "data.batch_size=8", "++data.limit=256"]
        if ARGS.device == "cpu"
        else []
    )


def train_run(*overrides: str, out: Path) -> dict:

    from slimgan_pl.train import train

    pl.seed_everything(0)
    return train(compose(*overrides, out=out))


# ----------------------------------------------------------------------------- checks
@check("environment")
def environment() -> str:
    import hydra

    cuda = torch.cuda.is_available()
    try:
        import torchvision

        vision = torchvision.__version__
    except ImportError:  # the data modules import it: the training checks will fail with this name
        vision = None
    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": vision,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "nccl": ".".join(map(str, torch.cuda.nccl.version()))
        if cuda and torch.distributed.is_nccl_available()
        else None,
        "driver": _driver_version() if cuda else None,
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "gpus": torch.cuda.device_count() if cuda else 0,
        "capability": ".".join(map(str, torch.cuda.get_device_capability(0))) if cuda else None,
        "bf16_supported": torch.cuda.is_bf16_supported() if cuda else None,
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "tf32_cudnn": torch.backends.cudnn.allow_tf32,
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "lightning": pl.__version__,
        "hydra": hydra.__version__,
    }
    FIELDS["versions"] = env
    if vision is None:
        raise AssertionError(
            f"torchvision is not installed: pip install the torchvision build for torch {torch.__version__}"
        )
    return ", ".join(f"{k} {v}" for k, v in env.items())


def _driver_version() -> str | None:
    import subprocess

    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True, text=True
        )
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
    except OSError:
        return None


@check("CPU vs device sampling, same seed")
def sampling_equality() -> str:
    from slimgan_pl import SlimGAN

    # TF32 (on by default for cuDNN convolutions) rounds inputs to 10 mantissa bits: ~1e-3 apart from the
    # CPU by design. The check compares fp32 with fp32, so TF32 is off for it (and restored after).
    flags = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        torch.manual_seed(0)
        model = SlimGAN(
            generator=dict(arch="biggan32", ngf=32, img_channels=1),
            discriminator=dict(arch="biggan32", ndf=32),
            widths=[0.5, 1.0],
            ema_decay=0.999,
        ).eval()
        worst = 0.0
        for w in model.widths:
            cpu = model.sample(16, w, seed=3)
            dev = model.to(ARGS.device).sample(16, w, seed=3).cpu()
            model.cpu()
            worst = max(worst, float((cpu - dev).abs().max()))
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags
    FIELDS["sampling_max_abs_diff"] = worst
    if worst > 1e-3:
        raise AssertionError(f"max |cpu - {ARGS.device}| = {worst:.2e} > 1e-3 (TF32 off)")
    return f"max |cpu - {ARGS.device}| = {worst:.1e}, TF32 off (z drawn on the CPU generator: identical inputs)"


def _precision_run(precision: str) -> str:
    if ARGS.device == "cpu" and precision == "16-mixed":
        raise SkipCheck("16-mixed autocast is a CUDA path")
    iters = 40 if ARGS.device == "cuda" else 2
    out = WORK / f"precision_{precision}"
    summary = train_run(
        *tiny(
            "experiment=fmnist_biggan",
            "debug=smoke",
            f"trainer.precision={precision}",
            f"train.g_steps={iters}",
            f"train.checkpoint_every={iters}",
            "ema.start=0",
            "ema.standing_batches=1",
            "ema.standing_batch_size=16",
            "optim.ortho_reg=1e-4",
            "callbacks.sample_grid.every_n_iterations=1000",
        ),
        out=out,
    )
    from slimgan_pl import SlimGAN

    model = SlimGAN.load_from_checkpoint(summary["last_checkpoint"], map_location="cpu", weights_only=True)
    losses = [v for width in summary["final_losses"].values() for v in width.values()]
    assert all(v is not None and v == v and abs(v) < 1e6 for v in losses), f"losses {losses}"
    dtypes = {p.dtype for p in model.parameters()} | {
        b.dtype for b in model.generator_ema.buffers() if b.is_floating_point()
    }
    assert dtypes == {torch.float32}, f"dtypes {dtypes}"
    assert all(torch.isfinite(p).all() for p in model.generator_ema.parameters()), "EMA not finite"
    moved = any(not torch.equal(a, b) for a, b in zip(model.generator.parameters(), model.generator_ema.parameters()))
    assert moved, "EMA equals G"
    return f"{iters} iterations, losses finite, parameters and EMA float32 and finite"


@check("BigGAN bf16-mixed + EMA")
def biggan_bf16() -> str:
    return _precision_run("bf16-mixed")


@check("BigGAN 16-mixed + EMA")
def biggan_fp16() -> str:
    return _precision_run("16-mixed")


@check("exact resume, trainer.deterministic=true")
def exact_resume() -> str:
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    common = tiny(
        "experiment=fmnist_biggan",
        "debug=smoke",
        "trainer.deterministic=true",
        "train.checkpoint_every=2",
        "callbacks.sample_grid=null",
        "ema.start=0",
        "ema.standing_batches=0",
    )
    straight = train_run(*common, "train.g_steps=4", out=WORK / "resume_straight")
    train_run(*common, "train.g_steps=2", out=WORK / "resume_split")
    resumed = train_run(*common, "train.g_steps=4", "resume=auto", out=WORK / "resume_split")
    assert resumed["resumed_from"], "did not resume"
    a = torch.load(straight["last_checkpoint"], map_location="cpu", weights_only=True)["state_dict"]
    b = torch.load(resumed["last_checkpoint"], map_location="cpu", weights_only=True)["state_dict"]
    differing = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differing, f"{len(differing)} tensors differ, e.g. {differing[:3]}"
    return f"4 iterations straight == 2 + resume + 2, bit for bit ({len(a)} tensors)"


def _ddp_rank(rank: int, world: int, init_file: str, device: str, out: str) -> None:
    import torch.distributed as dist

    from slimgan_pl.distributed import average_gradients
    from slimgan_pl.nn import convert_cross_replica_batchnorm

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        x = (torch.randn(2 * 8, 6, 4, 4) * 3 + 2).to(device)
        layer = torch.nn.Sequential(torch.nn.Conv2d(6, 6, 3, padding=1), torch.nn.BatchNorm2d(6)).to(device)
        layer = convert_cross_replica_batchnorm(layer)
        part = x[rank * 8 : (rank + 1) * 8]
        with torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16):
            y = layer(part)
        y.float().square().mean().backward()
        average_gradients(list(layer.parameters()))
        torch.save(
            {
                "y": y.float().cpu(),
                "grads": [p.grad.cpu() for p in layer.parameters()],
                "running_var": layer[1].running_var.cpu(),
                "dtype": str(y.dtype),
                "device": str(y.device),
            },
            Path(out) / f"rank{rank}.pt",
        )
    finally:
        dist.destroy_process_group()


@check("2-process DDP (gloo) + cross-replica BN on one device")
def ddp_two_processes() -> str:
    import torch.multiprocessing as mp

    out = WORK / "ddp"
    out.mkdir(parents=True, exist_ok=True)
    device = "cuda:0" if ARGS.device == "cuda" else "cpu"
    mp.start_processes(
        _ddp_rank, args=(2, str(out / "init"), device, str(out)), nprocs=2, join=True, start_method="spawn"
    )
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(2)]
    # reference: one process, the whole batch, plain BN, same autocast
    torch.manual_seed(0)
    x = (torch.randn(16, 6, 4, 4) * 3 + 2).to(device)
    layer = torch.nn.Sequential(torch.nn.Conv2d(6, 6, 3, padding=1), torch.nn.BatchNorm2d(6)).to(device)
    with torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16):
        y = layer(x)
    torch.testing.assert_close(torch.cat([r["y"] for r in ranks]), y.float().cpu(), rtol=0.05, atol=0.05)
    torch.testing.assert_close(ranks[0]["running_var"], layer[1].running_var.cpu(), rtol=1e-2, atol=1e-3)
    for g0, g1 in zip(ranks[0]["grads"], ranks[1]["grads"]):
        assert torch.equal(g0, g1), "averaged gradients differ between ranks"
    return f"outputs {ranks[0]['dtype']} on {ranks[0]['device']}, statistics match one process, gradients equal"


@check("demo recipe + FID callback + evaluation after training")
def demo_recipe() -> str:
    if not Path(ARGS.classifier).is_file():
        raise AssertionError(f"no FMNIST classifier at {ARGS.classifier} (the shipped file is missing?)")
    os.environ["SLIMGAN_FMNIST_CLASSIFIER"] = str(ARGS.classifier)
    iters = 100 if ARGS.device == "cuda" else 2
    n = 1000 if ARGS.device == "cuda" else 200
    summary = train_run(
        *tiny(
            "experiment=fmnist_demo",
            f"train.g_steps={iters}",
            f"train.checkpoint_every={iters}",
            f"callbacks.fid.every_n_iterations={iters // 2}",
            f"callbacks.fid.n_fake={n}",
            f"callbacks.fid.n_real={n}",
            "evaluate.after_training=true",
            f"evaluate.n_fake={n}",
            f"evaluate.n_real={n}",
            "evaluate.latency_repeats=2",
            f"callbacks.sample_grid.every_n_iterations={iters}",
            "callbacks.progress_bar=null",
            f"evaluate.classifier={ARGS.classifier}",
            f"callbacks.fid.classifier={ARGS.classifier}",
        ),
        out=WORK / "demo",
    )
    fids = summary.get("fmnist_fid") or {}
    assert fids and all(v == v for v in fids.values()), f"FMNIST-FID {fids}"
    return f"{iters} iterations; FMNIST-FID " + ", ".join(f"{k} {v:.1f}" for k, v in fids.items())


# ----------------------------------------------------------------------------- speed, syncs, parity
def _model_and_loader(preset: str, precision: str, baseline: bool, batches: int):
    """(SlimGAN, DataLoader) of a speed preset: ``demo`` (experiment=fmnist_demo on Fashion-MNIST) or
    ``cifar10_snresgan32_ngf256`` (experiment=cifar10_snresgan, random images of CIFAR's shape: the
    speed does not depend on the pixels); ``baseline``: the single-width GAN (model.baseline.g_width=1.0)."""
    from torch.utils.data import DataLoader, TensorDataset

    from slimgan_pl import SlimGAN

    overrides = (
        ["experiment=fmnist_demo"] if preset == "demo" else ["experiment=cifar10_snresgan", "data=fashion_mnist"]
    )
    if baseline:
        overrides.append("model.baseline.g_width=1.0")
    if ARGS.device == "cpu":
        overrides += ["model.generator.ngf=16", "model.discriminator.ndf=16", "data.batch_size=8"]
    cfg = compose(*overrides, out=WORK / "speed")
    channels = 1 if preset == "demo" else 3
    generator = {**cfg.model.generator, "img_channels": channels}
    model = SlimGAN(
        generator=generator, discriminator=cfg.model.discriminator, baseline=cfg.model.baseline, **cfg.slim, **cfg.optim
    )
    per_step = cfg.data.batch_size * cfg.optim.n_dis
    if preset == "demo":  # real Fashion-MNIST images (the datamodule's preprocessing), in a pinned loader
        from hydra.utils import instantiate

        data = instantiate(cfg.data, limit=per_step * batches)
        data.setup()
        images = torch.stack([data.dataset[i][0] for i in range(per_step * batches)])
    else:
        images = torch.rand(per_step * batches, channels, 32, 32) * 2 - 1
    dataset = TensorDataset(images, torch.zeros(len(images), dtype=torch.long))
    loader = DataLoader(dataset, batch_size=per_step, drop_last=True, pin_memory=ARGS.device == "cuda")
    return model, loader, cfg


def _iteration_flops(model, loader, precision: str) -> float:
    """FLOPs of one whole training iteration (every D step, the G step, backward included), counted by
    torch's FlopCounterMode as slimgan_pl/metrics/cost.py counts a generator's MACs (convolutions and
    matrix products; normalisation and activations are not counted)."""
    import copy

    from torch.utils.flop_counter import FlopCounterMode

    probe = copy.deepcopy(model)
    counter = FlopCounterMode(display=False)
    trainer = _trainer(precision, iterations=1, n_dis=model.hparams.n_dis)
    with counter:
        trainer.fit(probe, loader)
    return float(counter.get_total_flops())


def _trainer(precision: str, iterations: int, n_dis: int, callbacks=(), plugins=None):

    kw = dict(plugins=plugins) if plugins else dict(precision=precision)
    return pl.Trainer(
        accelerator=ACCEL,
        devices=1,
        max_steps=iterations * (n_dis + 1),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=list(callbacks),
        **kw,
    )


class Window(pl.Callback):
    """A Lightning callback: from the start of batch ``warmup`` to the end of training (whole iterations:
    data loading, the step, the callbacks), synchronised once at each end; counts host syncs in it
    (CUDA: torch.cuda.set_sync_debug_mode("warn") warnings; CPU: tensor-to-Python reads)."""

    def __init__(self, warmup: int, stop_batch: int | None = None) -> None:
        self.warmup, self.stop_batch, self.seconds, self.syncs, self.peak_bytes = warmup, stop_batch, None, 0, None
        self.done = False
        self._warnings = None
        self._reads = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == self.stop_batch:  # before the end-of-training checkpoint and logs
            self.on_train_end(trainer, pl_module)
        if batch_idx != self.warmup:
            return
        if ARGS.device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._warnings = warnings.catch_warnings(record=True)
            self._records = self._warnings.__enter__()
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
        else:
            self._reads = ScalarReads()
            self._reads.__enter__()
        self.t0 = time.perf_counter()

    def on_train_end(self, trainer, pl_module):
        if self.done:
            return
        self.done = True
        if ARGS.device == "cuda":
            torch.cuda.set_sync_debug_mode("default")
            torch.cuda.synchronize()
            self.seconds = time.perf_counter() - self.t0
            self.syncs = sum("synchroniz" in str(w.message) for w in self._records)
            self._warnings.__exit__(None, None, None)
            self.peak_bytes = torch.cuda.max_memory_allocated()
        elif self._reads is not None:
            self.seconds = time.perf_counter() - self.t0
            self._reads.__exit__(None, None, None)
            self.syncs = self._reads.count


class ScalarReads(TorchDispatchMode):
    """CPU stand-in for CUDA's sync debug mode: tensor-to-Python reads (``.item()``, ``float(t)``,
    ``bool(t)``), which would sync on a GPU; torch.optim's reads of its CPU step counters excluded."""

    READS = ("_local_scalar_dense", "item", "is_nonzero")

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.__name__.split(".")[0] in self.READS:
            frame, optim = sys._getframe(1), False
            while frame is not None and not optim:
                optim = "/torch/optim/" in frame.f_code.co_filename
                frame = frame.f_back
            self.count += not optim
        return func(*args, **(kwargs or {}))


def _timed_run(preset: str, precision: str, baseline: bool = False) -> dict[str, object]:
    warmup, iters = (5, 30) if ARGS.device == "cuda" else (1, 2)
    model, loader, cfg = _model_and_loader(preset, precision, baseline, warmup + iters)
    flops = _iteration_flops(model, loader, precision)
    window = Window(warmup)
    trainer = _trainer(precision, warmup + iters, cfg.optim.n_dis, callbacks=[window])
    trainer.fit(model, loader)
    it_s = iters / window.seconds
    row = {
        "preset": preset,
        "model": "single-width GAN" if baseline else "SlimGAN",
        "precision": precision,
        "batch": cfg.data.batch_size,
        "n_dis": cfg.optim.n_dis,
        "it_s": round(it_s, 3),
        "gflop_per_iteration": round(flops / 1e9, 2),
        "tflop_s": round(flops * it_s / 1e12, 3),
        "peak_memory_gib": None if window.peak_bytes is None else round(window.peak_bytes / 2**30, 2),
        "host_syncs_per_iteration": window.syncs / iters,
    }
    low, high, wrong = EXPECTED_IT_S[preset]
    if ARGS.device == "cuda" and precision == "32-true" and not baseline:
        row["expected_it_s_h100"] = f"{low:g}-{high:g}"
        row["flag"] = "something is wrong" if it_s < wrong else ""
    SPEED_ROWS.append(row)
    return row


@check("speed: demo recipe fp32 / bf16 / single-width GAN")
def speed_demo() -> str:
    return _speed("demo")


@check("speed: CIFAR-10 SNResGAN-32 ngf 256 fp32 / bf16 / single-width GAN")
def speed_cifar() -> str:
    return _speed("cifar10_snresgan32_ngf256")


def _speed(preset: str) -> str:
    rows = [_timed_run(preset, "32-true"), _timed_run(preset, "bf16-mixed"), _timed_run(preset, "32-true", True)]
    FIELDS[f"speed_{preset}"] = rows
    fp32, bf16, single = rows
    text = (
        f"{fp32['it_s']:.2f} it/s fp32 ({fp32['tflop_s']:.2f} TFLOP/s), {bf16['it_s']:.2f} bf16-mixed "
        f"({bf16['it_s'] / fp32['it_s']:.2f}x), single-width GAN {single['it_s']:.2f} it/s "
        f"(SlimGAN costs {single['it_s'] / fp32['it_s']:.1f}x its time); syncs/iteration "
        f"{fp32['host_syncs_per_iteration']:g} / {bf16['host_syncs_per_iteration']:g}"
    )
    if fp32.get("flag"):
        text += f"; SOMETHING IS WRONG: expected {fp32['expected_it_s_h100']} it/s on one H100"
    return text


SYNC_MODES = {
    "sndcgan": [],
    "snresgan": ["model=snresgan32", "optim=resnet"],
    "biggan_ema": ["model=biggan32", "optim=biggan", "ema=default", "ema.start=1", "ema.decay=0.999"],
    "universal": ["slim.mode=universal", "slim.n_random=1", "slim.calibration_batches=1"],
    "lr_decay_linear": ["optim.lr_decay=linear"],
    "bf16_biggan_ema": [
        "trainer.precision=bf16-mixed",
        "model=biggan32",
        "optim=biggan",
        "ema=default",
        "ema.start=1",
        "ema.decay=0.999",
    ],
    "fp16_fused_adam": ["trainer.precision=16-mixed", "optim.fused=true"],
    "fp16": ["trainer.precision=16-mixed"],
}


@check("host syncs per steady-state iteration")
def host_syncs() -> str:
    from slimgan_pl.train import build

    warmup, iters = 2, 3
    counts = {}
    for mode, extra in SYNC_MODES.items():
        if ARGS.device == "cpu" and mode not in ("sndcgan", "biggan_ema"):
            continue  # smoke-sized: tests/test_host_syncs.py counts every mode on the CPU
        cfg = compose(
            "debug=smoke",
            "data.batch_size=8",
            "++data.limit=256",
            f"train.g_steps={warmup + iters + 1}",
            "train.checkpoint_every=1000",
            "optim.n_dis=2",
            "callbacks.sample_grid=null",
            "callbacks.progress_bar=null",
            "trainer.log_every_n_steps=1000",
            "model.generator.ngf=32",
            "model.discriminator.ndf=32",
            *extra,
            out=WORK / f"syncs_{mode}",
        )
        model, datamodule, trainer = build(cfg)
        window = Window(warmup, stop_batch=warmup + iters)
        trainer.callbacks.append(window)
        trainer.fit(model, datamodule=datamodule)
        counts[mode] = window.syncs / iters
    FIELDS["host_syncs_per_iteration"] = counts
    bad = {m: c for m, c in counts.items() if c and m != "fp16"}  # fp16 without fused Adam: n_dis + 1 expected
    how = "set_sync_debug_mode warnings" if ARGS.device == "cuda" else "scalar reads (CPU stand-in)"
    text = ", ".join(f"{m} {c:g}" for m, c in counts.items()) + f" ({how})"
    if bad:
        raise AssertionError(f"syncs in steady state: {text}")
    return text


@check("bf16 vs fp32 gradient parity, one batch")
def gradient_parity() -> str:
    from slimgan_pl import SlimGAN
    from slimgan_pl.losses import GAN_LOSSES

    torch.manual_seed(0)
    ngf = 128 if ARGS.device == "cuda" else 16
    model = SlimGAN(
        generator=dict(arch="sndcgan32", ngf=ngf, img_channels=1),
        discriminator=dict(arch="sndcgan32", ndf=ngf),
        widths=[0.25, 1.0],
    ).to(ARGS.device)
    real = torch.rand(64, 1, 32, 32, device=ARGS.device) * 2 - 1
    z = torch.randn(64, model.generator.nz, device=ARGS.device)
    d_loss, g_loss = GAN_LOSSES["hinge"]

    def grads(autocast: bool) -> dict[str, torch.Tensor]:
        """D's gradients of its loss (fakes detached), then G's of its own loss (D's discarded)."""
        model.zero_grad(set_to_none=True)
        with torch.autocast(ARGS.device, dtype=torch.bfloat16, enabled=autocast):
            fakes = [model.generator(z, width=w) for w in model.widths]
            fake_scores, real_scores = model.discriminator.score_all([f.detach() for f in fakes], real)
            loss_d = sum(d_loss(r.float(), f.float()) for r, f in zip(real_scores, fake_scores))
        loss_d.backward()
        d_grads = {
            n: p.grad.detach().float().flatten()
            for n, p in model.discriminator.named_parameters()
            if p.grad is not None
        }
        model.zero_grad(set_to_none=True)
        with torch.autocast(ARGS.device, dtype=torch.bfloat16, enabled=autocast):
            fake_scores, _ = model.discriminator.score_all(fakes)
            loss_g = sum(g_loss(f.float()) for f in fake_scores)
        loss_g.backward()
        g_grads = {
            n: p.grad.detach().float().flatten() for n, p in model.generator.named_parameters() if p.grad is not None
        }
        return {
            **{f"discriminator.{n}": g for n, g in d_grads.items()},
            **{f"generator.{n}": g for n, g in g_grads.items()},
        }

    fp32, bf16 = grads(False), grads(True)
    result = {}
    for net in ("generator", "discriminator"):
        a = torch.cat([g for n, g in fp32.items() if n.startswith(net + ".")])
        b = torch.cat([g for n, g in bf16.items() if n.startswith(net + ".")])
        result[net] = {
            "cosine": float(torch.nn.functional.cosine_similarity(a, b, dim=0)),
            "relative_l2": float((a - b).norm() / a.norm()),
        }
    FIELDS["bf16_gradient_parity"] = result
    worst = min(r["cosine"] for r in result.values())
    if worst < 0.98:
        raise AssertionError(f"bf16 gradients point elsewhere: {result}")
    return ", ".join(f"{k} cosine {v['cosine']:.4f}, rel. L2 {v['relative_l2']:.3f}" for k, v in result.items())


@check("fp16 loss scale and skipped steps, 50 iterations")
def fp16_scale() -> str:
    from pytorch_lightning.plugins.precision import MixedPrecision

    iterations = 50 if ARGS.device == "cuda" else 3
    model, loader, cfg = _model_and_loader("demo", "16-mixed", False, iterations)
    scales: list[float] = []

    class Scale(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            scales.append(float(trainer.precision_plugin.scaler.get_scale()))

    # Lightning turns 16-mixed into bf16 on a CPU: the plugin with a CPU GradScaler keeps the fp16 path
    plugin = MixedPrecision("16-mixed", ARGS.device, scaler=torch.amp.GradScaler(ARGS.device))
    trainer = _trainer("16-mixed", iterations, cfg.optim.n_dis, callbacks=[Scale()], plugins=[plugin])
    trainer.fit(model, loader)
    opt_g, opt_d = trainer.optimizers
    taken = {
        "g": int(max(s["step"] for s in opt_g.state.values())),
        "d": int(max(s["step"] for s in opt_d.state.values())),
    }
    skipped = iterations - taken["g"] + iterations * cfg.optim.n_dis - taken["d"]
    initial = torch.amp.GradScaler(ARGS.device).get_scale()  # Lightning's scaler starts there too
    FIELDS["fp16"] = {
        "iterations": iterations,
        "initial_scale": initial,
        "scale_after_each_iteration": scales,
        "min_scale": min(scales),
        "skipped_steps": skipped,
    }
    return (
        f"{iterations} iterations: scale {initial:g} -> {scales[-1]:g} (min {min(scales):g}), {skipped} skipped steps"
    )


@check("compile attempt (time-boxed)")
def compile_attempt() -> str:
    import subprocess

    budget = 240 if ARGS.device == "cuda" else 150
    backend = "inductor" if ARGS.device == "cuda" else "eager"  # CPU: Dynamo only (Inductor takes minutes there)
    cmd = [
        sys.executable,
        __file__,
        "--device",
        ARGS.device,
        "--data-root",
        ARGS.data_root,
        "--compile-worker",
        backend,
    ]
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=budget, env={**os.environ, "PYTHONPATH": str(REPO)}
        )
    except subprocess.TimeoutExpired:
        FIELDS["compile"] = {"backend": backend, "result": f"not done in {budget} s"}
        raise SkipCheck(f"compile did not finish in {budget} s ({backend})") from None
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("COMPILE_RESULT ")]
    if proc.returncode != 0 or not lines:
        raise AssertionError((proc.stderr.strip().splitlines() or ["no output"])[-1][:200])
    result = json.loads(lines[-1].split(" ", 1)[1])
    FIELDS["compile"] = result
    note = "" if ARGS.device == "cuda" else " (CPU: Dynamo's eager backend, the ratio is no speed claim)"
    return (
        f"{backend}: first iteration {result['first_iteration_s']:.1f} s, {result['graphs']} graphs, "
        f"recompiles after it {result['frames_after_first']}, {result['compiled_it_s']:.2f} it/s vs eager "
        f"{result['eager_it_s']:.2f} ({result['compiled_it_s'] / result['eager_it_s']:.2f}x)" + note
    )


class Clock(pl.Callback):
    """Lightning callback: the time and Dynamo's compiled-frame count at each batch start and at the end."""

    def __init__(self, counters) -> None:
        self.counters, self.times, self.frames = counters, [], []

    def _mark(self) -> None:
        if ARGS.device == "cuda":
            torch.cuda.synchronize()
        self.times.append(time.perf_counter())
        self.frames.append(self.counters["frames"]["ok"])

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._mark()

    def on_train_end(self, trainer, pl_module) -> None:
        self._mark()


def compile_worker(backend: str) -> None:
    """One process: the demo model compiled (model.compile=true) against eager, whole iterations timed."""
    import functools

    from torch._dynamo.utils import counters

    torch.compile = functools.partial(torch.compile, backend=backend)
    iterations = 20 if ARGS.device == "cuda" else 3
    out: dict[str, object] = {"backend": backend}
    for compiled in (False, True):
        model, loader, cfg = _model_and_loader("demo", "32-true", False, iterations)
        model.hparams.compile_networks = compiled
        clock = Clock(counters)
        _trainer("32-true", iterations, cfg.optim.n_dis, callbacks=[clock]).fit(model, loader)
        times, frames = clock.times, clock.frames
        steady = (iterations - 1) / (times[-1] - times[1])
        if compiled:
            out.update(
                first_iteration_s=times[1] - times[0],
                compiled_it_s=steady,
                graphs=counters["stats"]["unique_graphs"],
                frames_after_first=frames[-1] - frames[1],
            )
        else:
            out["eager_it_s"] = steady
    print("COMPILE_RESULT " + json.dumps(out), flush=True)


@check("DDP on 2 GPUs (NCCL)")
def ddp_two_gpus() -> str:
    import subprocess

    if ARGS.device != "cuda" or torch.cuda.device_count() < 2:
        raise SkipCheck(f"{torch.cuda.device_count() if ARGS.device == 'cuda' else 0} GPU(s): needs 2")
    out = WORK / "ddp_gpus"
    cmd = [
        sys.executable,
        "-c",
        "from slimgan_pl.train import main; main()",
        "debug=smoke",
        "trainer=ddp",
        "trainer.devices=2",
        f"data.root={ARGS.data_root}",
        f"paths.output_dir={out}",
        "logger=none",
        "train.g_steps=20",
        "model.sync_bn=true",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    if proc.returncode != 0:
        raise AssertionError((proc.stderr.strip().splitlines() or ["no output"])[-1][:200])
    summary = json.loads((out / "summary.json").read_text())
    FIELDS["ddp_two_gpus"] = {"iterations": 20, "last_checkpoint": summary.get("last_checkpoint")}
    return "20 iterations of trainer=ddp on 2 GPUs with cross-replica BN"


# ----------------------------------------------------------------------------- main
def main() -> int:
    global ARGS, ACCEL, WORK
    from slimgan_pl.metrics.fmnist_classifier import SHIPPED_PATH

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument(
        "--data-root", default=os.environ.get("SLIMGAN_FMNIST_ROOT", "/usr/share/datasets/fashion-mnist")
    )
    parser.add_argument(
        "--classifier",
        default=os.environ.get("SLIMGAN_FMNIST_CLASSIFIER", str(SHIPPED_PATH)),
        help="FMNIST classifier file (default: the shipped file, %(default)s)",
    )
    default_out = Path(os.environ["OUT"]) / "gpu_check.md" if os.environ.get("OUT") else Path("gpu_check.md")
    parser.add_argument("--out", default=str(default_out), help="Markdown report; the JSON goes next to it (.json)")
    parser.add_argument("--only", nargs="*", help="run only the checks whose names contain one of these words")
    parser.add_argument("--compile-worker", help=argparse.SUPPRESS)
    ARGS = parser.parse_args()
    if ARGS.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: --device cuda but torch sees no CUDA GPU (use --device cpu for the dry run)", file=sys.stderr)
        return 2
    out = Path(ARGS.out).resolve()
    if os.environ.get("OUT") and not out.is_relative_to(Path(os.environ["OUT"]).resolve()):
        print(
            f"gpu_check: --out {ARGS.out} is outside $OUT={os.environ['OUT']} (only $OUT comes back)", file=sys.stderr
        )
        return 2
    ACCEL = "gpu" if ARGS.device == "cuda" else "cpu"
    checks = {
        "environment": environment,
        "sampling": sampling_equality,
        "syncs": host_syncs,
        "speed_demo": speed_demo,
        "speed_cifar": speed_cifar,
        "parity": gradient_parity,
        "fp16_scale": fp16_scale,
        "compile": compile_attempt,
        "bf16": biggan_bf16,
        "fp16": biggan_fp16,
        "resume": exact_resume,
        "ddp": ddp_two_processes,
        "ddp_gpus": ddp_two_gpus,
        "demo": demo_recipe,
    }
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        WORK = Path(tmp)
        if ARGS.compile_worker:
            compile_worker(ARGS.compile_worker)
            return 0
        for name, run in checks.items():
            if ARGS.only and not any(word in name for word in ARGS.only):
                continue
            run()
    text = report()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    out.with_suffix(".json").write_text(
        json.dumps(
            {
                "device": ARGS.device,
                "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                "fields": FIELDS,
                "checks": [dict(check=n, result=r, seconds=round(t, 2), details=d) for n, r, t, d in ROWS],
            },
            indent=2,
        )
    )
    print("\n" + text)
    return 1 if any(r == "FAILED" for _, r, _, _ in ROWS) else 0


def report() -> str:
    """The Markdown: the checks, then the speed table (numbers also in the JSON's fields)."""
    table = ["| check | result | s | details |", "|---|---|---:|---|"]
    table += [f"| {n} | {r} | {t:.1f} | {d.replace('|', '/')} |" for n, r, t, d in ROWS]
    text = f"# gpu_check ({ARGS.device}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})\n\n" + "\n".join(table)
    if SPEED_ROWS:
        cols = [
            "preset",
            "model",
            "precision",
            "batch",
            "n_dis",
            "it_s",
            "gflop_per_iteration",
            "tflop_s",
            "peak_memory_gib",
            "host_syncs_per_iteration",
            "expected_it_s_h100",
            "flag",
        ]
        speed = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        speed += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in SPEED_ROWS]
        text += "\n\n## Speed (whole iterations with data, synchronised once per window)\n\n" + "\n".join(speed)
        text += (
            "\n\nExpected on one H100, fp32: demo 30-60 it/s, CIFAR-10 SNResGAN-32 ngf 256 11-18 it/s; "
            "below 20 / 8 it/s: something is wrong."
        )
    return text + "\n"


ARGS: argparse.Namespace
ACCEL: str
WORK: Path

if __name__ == "__main__":
    sys.exit(main())
