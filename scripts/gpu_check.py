"""The checks of scripts/gpu_check.sh (run that; it installs what is missing from the bundle first).

    python scripts/gpu_check.py --device cuda --out gpu_check.md     # on one CUDA GPU, < 8 minutes
    python scripts/gpu_check.py --device cpu --out cpu_check.md      # the same code paths, tiny, on CPU

Each check runs in its own try block and adds one row (check, result, seconds, details) to one table,
printed at the end and written to ``--out``. Exit status 1 when any check failed.
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
from collections.abc import Callable
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

ROWS: list[tuple[str, str, float, str]] = []


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
    import pytorch_lightning as pl

    from slimgan_pl.train import train

    pl.seed_everything(0)
    return train(compose(*overrides, out=out))


# ----------------------------------------------------------------------------- checks
@check("environment")
def environment() -> str:
    import hydra
    import pytorch_lightning as pl

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    cap = ".".join(map(str, torch.cuda.get_device_capability(0))) if torch.cuda.is_available() else "-"
    return (
        f"python {platform.python_version()}, torch {torch.__version__} (CUDA {torch.version.cuda}), "
        f"lightning {pl.__version__}, hydra {hydra.__version__}, GPU {gpu} (sm {cap}), "
        f"bf16 {torch.cuda.is_bf16_supported() if torch.cuda.is_available() else '-'}"
    )


@check("CPU vs device sampling, same seed")
def sampling_equality() -> str:
    from slimgan_pl import SlimGAN

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
    if worst > 1e-3:
        raise AssertionError(f"max |cpu - {ARGS.device}| = {worst:.2e} > 1e-3")
    return f"max |cpu - {ARGS.device}| = {worst:.1e} (z drawn on the CPU generator: identical inputs)"


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
        raise SkipCheck(f"no FMNIST classifier at {ARGS.classifier}")
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


def _iterations_per_second(precision: str) -> float:
    import pytorch_lightning as pl
    from torch.utils.data import DataLoader, TensorDataset

    from slimgan_pl import SlimGAN

    size = dict(ngf=128, ndf=128) if ARGS.device == "cuda" else dict(ngf=16, ndf=16)
    batch, iters, warmup = (64, 30, 5) if ARGS.device == "cuda" else (8, 3, 1)
    torch.manual_seed(0)
    model = SlimGAN(
        generator=dict(arch="snresgan32", img_channels=3, ngf=size["ngf"]),
        discriminator=dict(arch="snresgan32", ndf=size["ndf"]),
        n_dis=5,
    )
    data = TensorDataset(
        torch.rand(batch * 5 * (iters + warmup), 3, 32, 32) * 2 - 1,
        torch.zeros(batch * 5 * (iters + warmup), dtype=torch.long),
    )
    times: list[float] = []

    class Timer(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, b, i):
            if ARGS.device == "cuda":
                torch.cuda.synchronize()
            self.t = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, b, i):
            if ARGS.device == "cuda":
                torch.cuda.synchronize()
            if i >= warmup:
                times.append(time.perf_counter() - self.t)

    trainer = pl.Trainer(
        accelerator=ACCEL,
        devices=1,
        precision=precision,
        max_steps=(iters + warmup) * 6,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[Timer()],
    )
    trainer.fit(model, DataLoader(data, batch_size=batch * 5, drop_last=True))
    return len(times) / sum(times)


@check("CIFAR-10 SNResGAN-32 random data: it/s fp32 vs bf16-mixed")
def speed() -> str:
    fp32 = _iterations_per_second("32-true")
    bf16 = _iterations_per_second("bf16-mixed")
    size = "ngf/ndf 128, batch 64, n_dis 5" if ARGS.device == "cuda" else "tiny (CPU mode)"
    return f"{fp32:.2f} it/s fp32, {bf16:.2f} it/s bf16-mixed ({bf16 / fp32:.2f}x), {size}"


# ----------------------------------------------------------------------------- main
def main() -> int:
    global ARGS, ACCEL, WORK
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument(
        "--data-root", default=os.environ.get("SLIMGAN_FMNIST_ROOT", "/usr/share/datasets/fashion-mnist")
    )
    parser.add_argument(
        "--classifier",
        default=os.environ.get(
            "SLIMGAN_FMNIST_CLASSIFIER", str(Path.home() / ".cache" / "slimgan_pl" / "fmnist_classifier_v1.pt")
        ),
    )
    parser.add_argument("--out", default="gpu_check.md")
    parser.add_argument("--only", nargs="*", help="run only the checks whose names contain one of these words")
    ARGS = parser.parse_args()
    if ARGS.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: --device cuda but torch sees no CUDA GPU (use --device cpu for the dry run)", file=sys.stderr)
        return 2
    ACCEL = "gpu" if ARGS.device == "cuda" else "cpu"
    checks = [
        environment,
        sampling_equality,
        biggan_bf16,
        biggan_fp16,
        exact_resume,
        ddp_two_processes,
        demo_recipe,
        speed,
    ]
    names = ["environment", "sampling", "bf16", "fp16", "resume", "ddp", "demo", "speed"]
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        WORK = Path(tmp)
        for name, run in zip(names, checks):
            if ARGS.only and not any(word in name for word in ARGS.only):
                continue
            run()
    table = ["| check | result | s | details |", "|---|---|---:|---|"]
    table += [f"| {n} | {r} | {t:.1f} | {d.replace('|', '/')} |" for n, r, t, d in ROWS]
    text = (
        f"# gpu_check ({ARGS.device}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})\n\n"
        + "\n".join(table)
        + "\n"
    )
    Path(ARGS.out).write_text(text)
    Path(ARGS.out).with_suffix(".json").write_text(
        json.dumps([dict(check=n, result=r, seconds=round(t, 2), details=d) for n, r, t, d in ROWS], indent=2)
    )
    print("\n" + text)
    return 1 if any(r == "FAILED" for _, r, _, _ in ROWS) else 0


ARGS: argparse.Namespace
ACCEL: str
WORK: Path

if __name__ == "__main__":
    sys.exit(main())
