"""DDP on two CPU processes (gloo): cross-replica BN against one process, identical weights across
ranks after training with trainer=ddp_cpu, different noise per rank, and Hydra's output dir under
Lightning's subprocess launcher."""

from __future__ import annotations

import copy
import json
import multiprocessing as mp
import os
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import torch.distributed as dist

import slimgan_pl
from slimgan_pl import SlimGAN
from slimgan_pl.distributed import average_gradients, rank_seed
from slimgan_pl.nn import (
    CrossReplicaBatchNorm2d,
    SliceableConditionalBatchNorm2d,
    SwitchableBatchNorm2d,
    SwitchableConditionalBatchNorm2d,
    convert_cross_replica_batchnorm,
)
from slimgan_pl.train import build

pytestmark = pytest.mark.skipif("fork" not in mp.get_all_start_methods(), reason="needs fork")

WORLD = 2
ROWS = 6  # per rank
WIDTHS = [0.5, 1.0]
NUM_CLASSES = 3


# ----------------------------------------------------------------------------- cross-replica BN
def _bn_module(kind: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if kind == "switchable":
        m = SwitchableBatchNorm2d(8, WIDTHS)
    elif kind == "scbn":
        m = SliceableConditionalBatchNorm2d(8, NUM_CLASSES, WIDTHS)
    else:
        m = SwitchableConditionalBatchNorm2d(8, NUM_CLASSES, WIDTHS)
    with torch.no_grad():  # non-trivial affine, so a wrong gain/bias handling shows
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return m


def _bn_inputs(width: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(int(width * 100))
    c = int(8 * width)
    x = torch.randn(WORLD * ROWS, c, 3, 3, generator=g) * 2 + 5  # mean >> std: cancellation shows
    y = torch.randint(NUM_CLASSES, (WORLD * ROWS,), generator=g)
    upstream = torch.randn(WORLD * ROWS, c, 3, 3, generator=g)
    return x, y, upstream


def _bn_run(module: torch.nn.Module, kind: str, rows: slice) -> dict[str, torch.Tensor]:
    """Two training-mode passes at each width (running stats move twice), then eval outputs."""
    out: dict[str, torch.Tensor] = {}
    for w in WIDTHS:
        x, y, upstream = _bn_inputs(w)
        for step in range(2):
            xi = (x[rows] + step).requires_grad_()
            args = (xi, w) if kind == "switchable" else (xi, w, y[rows])
            module.train()
            result = module(*args)
            result.backward(upstream[rows])
            out[f"out_{w}_{step}"], out[f"xgrad_{w}_{step}"] = result.detach(), xi.grad
        module.eval()
        out[f"eval_{w}"] = module(*((x[rows], w) if kind == "switchable" else (x[rows], w, y[rows]))).detach()
    for name, p in module.named_parameters():
        out[f"grad.{name}"] = p.grad.clone()
    for name, b in module.named_buffers():
        out[f"buf.{name}"] = b.clone()
    return out


def _bn_rank(rank: int, kind: str, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        module = convert_cross_replica_batchnorm(_bn_module(kind))
        result = _bn_run(module, kind, slice(rank * ROWS, (rank + 1) * ROWS))
        for key in [k for k in result if k.startswith("grad.")]:  # what gradient averaging sees, x WORLD
            dist.all_reduce(result[key])
        torch.save(result, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _run_ranks(target, *args) -> None:
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=target, args=(rank, *args)) for rank in range(WORLD)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * WORLD


@pytest.mark.parametrize("kind", ["switchable", "scbn", "switchable_cbn"])
def test_cross_replica_bn_on_half_batches_equals_one_process_on_the_full_batch(kind, tmp_path, one_thread):
    single = _bn_run(_bn_module(kind), kind, slice(None))
    _run_ranks(_bn_rank, kind, str(tmp_path / "init"), str(tmp_path))
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    for key, expected in single.items():
        # parameter gradients are sums over 12 rows: float32 rounding of the sum scales with them
        tol = dict(rtol=1e-5, atol=1e-6 * max(1.0, float(expected.abs().max())))
        if key.startswith(("out_", "xgrad_", "eval_")):  # rows: rank r holds rows r*ROWS..
            got = torch.cat([ranks[r][key] for r in range(WORLD)])
        else:  # gradients summed over ranks; buffers identical on every rank
            got = ranks[0][key]
            if key.startswith("buf."):
                torch.testing.assert_close(ranks[1][key], got, rtol=0, atol=0)
        torch.testing.assert_close(got, expected, **tol, msg=f"{kind}: {key}")
    assert any(k.startswith("buf.") and k.endswith("running_var") for k in single)


def test_cross_replica_bn_alone_is_batchnorm_and_conversion_keeps_the_state():
    plain = _bn_module("scbn")
    converted = convert_cross_replica_batchnorm(copy.deepcopy(plain))
    assert all(type(bn) is CrossReplicaBatchNorm2d for bn in converted.norm.bns)
    assert isinstance(converted.norm.bns[0], torch.nn.BatchNorm2d)  # exporters still recognise it
    assert converted.state_dict().keys() == plain.state_dict().keys()
    assert convert_cross_replica_batchnorm(converted) is converted  # idempotent
    # Not initialised: exactly nn.BatchNorm2d (same kernel), outputs, gradients and statistics.
    a, b = _bn_run(plain, "scbn", slice(None)), _bn_run(converted, "scbn", slice(None))
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=0, msg=key)


# ----------------------------------------------------------------------------- gradient averaging
def _average_rank(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        params = [
            torch.zeros(5, requires_grad=True),
            torch.zeros(3, 2, requires_grad=True),
            torch.zeros(2, requires_grad=True),
        ]
        params[0].grad = torch.full((5,), float(rank + 1))
        params[1].grad = torch.arange(6.0).view(3, 2) * (rank + 1)
        # params[2] has no gradient: skipped, stays None
        average_gradients(params, bucket_cap_mb=16 / 2**20)  # 16 bytes: forces several buckets
        torch.save([p.grad for p in params], Path(out_dir) / f"grads{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_average_gradients_in_several_buckets(tmp_path, one_thread):
    _run_ranks(_average_rank, str(tmp_path / "init"), str(tmp_path))
    for r in range(WORLD):
        g0, g1, g2 = torch.load(tmp_path / f"grads{r}.pt", weights_only=True)
        torch.testing.assert_close(g0, torch.full((5,), 1.5))
        torch.testing.assert_close(g1, torch.arange(6.0).view(3, 2) * 1.5)
        assert g2 is None


def test_rank_seeds_differ_between_ranks_and_seeds():
    seeds = {rank_seed(s, r, step) for s in range(3) for r in range(3) for step in (0, 4)}
    assert len(seeds) == 18 and all(0 <= s < 2**63 for s in seeds)
    assert rank_seed(0, 1) == rank_seed(0, 1, 0)


# ----------------------------------------------------------------------------- training under trainer=ddp_cpu
class RecordRank(pl.Callback):
    """Each rank saves the first z it drew for training and its final state (parameters, buffers)."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir

    def on_fit_start(self, trainer: pl.Trainer, pl_module: SlimGAN) -> None:
        drawn = []
        noise = pl_module.noise

        def recording_noise(*args, **kwargs):
            z = noise(*args, **kwargs)
            drawn.append(z.clone())
            return z

        pl_module.noise = recording_noise
        self.drawn = drawn

    def on_train_end(self, trainer: pl.Trainer, pl_module: SlimGAN) -> None:
        torch.save(
            {
                "z": self.drawn[0],
                "n_draws": len(self.drawn),
                "params": {k: v.detach().clone() for k, v in pl_module.named_parameters()},
                "buffers": {k: v.clone() for k, v in pl_module.named_buffers()},
            },
            self.out_dir / f"rank{trainer.global_rank}.pt",
        )


@pytest.mark.parametrize("sync_bn", [False, True])
def test_ddp_cpu_training_keeps_ranks_identical_with_different_noise(
    make_cfg, tmp_path, fmnist_root, sync_bn, one_thread
):
    cfg = make_cfg(
        "trainer=ddp_cpu",
        "trainer.strategy.start_method=fork",
        f"model.sync_bn={sync_bn}",
        "optim.n_dis=2",
        "train.g_steps=3",
        "data.batch_size=4",
        "data.limit=96",
        f"data.root={fmnist_root}",
        "callbacks.fid=null",
        "callbacks.sample_grid=null",
        "callbacks.progress_bar=null",
        "logger=none",
        "+trainer.enable_checkpointing=false",
        "callbacks.model_checkpoint=null",
        "ema=default",
        "ema.start=1",
        "ema.decay=0.5",
    )
    pl.seed_everything(cfg.seed)
    model, datamodule, trainer = build(cfg)
    assert type(trainer.strategy).__name__ == "GANDDPStrategy" and trainer.world_size == 2
    initial = {k: v.detach().clone() for k, v in model.named_parameters()}
    trainer.callbacks.append(RecordRank(tmp_path))
    trainer.fit(model, datamodule=datamodule)

    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert ranks[0]["n_draws"] == ranks[1]["n_draws"] > 0
    assert not torch.equal(ranks[0]["z"], ranks[1]["z"])  # each rank its own noise
    params = [r["params"] for r in ranks]
    assert params[0].keys() == initial.keys()
    assert any(k.startswith("generator_ema.") for k in initial)  # the EMA generator is compared too
    for name in initial:
        assert torch.equal(params[0][name], params[1][name]), name  # bit for bit
    assert not torch.equal(params[0]["generator.fc.weight"], initial["generator.fc.weight"])  # it trained
    assert not torch.equal(params[0]["generator_ema.fc.weight"], initial["generator_ema.fc.weight"])
    bn_keys = [k for k in ranks[0]["buffers"] if "running_mean" in k]
    assert bn_keys
    if sync_bn:
        for name, buffer in ranks[0]["buffers"].items():
            assert torch.equal(buffer, ranks[1]["buffers"][name]), name
    else:  # own statistics per rank: the ranks' fakes differed
        assert any(not torch.equal(ranks[0]["buffers"][k], ranks[1]["buffers"][k]) for k in bn_keys)


def test_sync_bn_config_converts_every_batchnorm(make_cfg):
    model, _, _ = build(make_cfg("model.sync_bn=true", "model=cgan_pd32", "model.generator.ngf=16"))
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(type(m) is CrossReplicaBatchNorm2d for m in bns)
    model, _, _ = build(make_cfg())
    assert not any(type(m) is CrossReplicaBatchNorm2d for m in model.modules())
    with pytest.raises(ValueError, match=r"model\.sync_bn must be true or false"):
        SlimGAN(generator=dict(arch="sndcgan32", ngf=16), discriminator=dict(arch="sndcgan32", ndf=16), sync_bn="yes")


# ----------------------------------------------------------------------------- Hydra + subprocess launcher
def test_ddp_cli_writes_one_output_dir_once(tmp_path, fmnist_root):
    """`slimgan-train trainer=ddp_cpu`: Lightning re-runs the command for rank 1 with the same
    overrides; it must reuse rank 0's Hydra run dir (no second timestamped dir, no second .hydra)
    and leave checkpoints, config and summary to rank 0."""
    env = {**os.environ, "PYTHONPATH": str(Path(slimgan_pl.__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "slimgan_pl.train",
            "trainer=ddp_cpu",
            "model.generator.ngf=16",
            "model.discriminator.ndf=16",
            "evaluate.after_training=false",
            "train.g_steps=2",
            "train.checkpoint_every=1",
            "data.batch_size=4",
            "data.limit=32",
            f"data.root={fmnist_root}",
            "callbacks.fid=null",
            "callbacks.sample_grid.every_n_iterations=1",
            "model.sync_bn=true",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dirs = [p for p in (tmp_path / "outputs").glob("*/*") if p.is_dir()]
    assert len(run_dirs) == 1, run_dirs
    assert not (tmp_path / "multirun").exists()
    run = run_dirs[0]
    assert (run / "train_ddp_process_1.log").is_file()  # rank 1 ran in the same dir
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "iter_000001.ckpt",
        "iter_000002.ckpt",
        "last.ckpt",
    ]
    assert (run / "summary.json").is_file() and (run / "config_resolved.yaml").is_file()
    assert proc.stdout.count("Trained 2 iterations") == 1  # the summary is written (and printed) once
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 2 * (1 + 1)
    model = SlimGAN.load_from_checkpoint(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert model.hparams.sync_bn and type(model.generator.bns[0].bns[0]) is CrossReplicaBatchNorm2d


# ----------------------------------------------------------------------------- deploy
@pytest.mark.parametrize(
    "generator",
    [
        dict(arch="sndcgan32"),
        dict(arch="snresgan32"),
        dict(arch="snresgan32", num_classes=10, cond_norm="scbn"),
        dict(arch="snresgan32", num_classes=10, cond_norm="switchable"),
    ],
    ids=lambda g: "-".join(str(v) for v in g.values()),
)
def test_export_of_a_sync_bn_model_is_the_plain_export(generator, tmp_path):
    """The exporter cuts a converted model (its per-width BNs are CrossReplicaBatchNorm2d, still
    nn.BatchNorm2d) into plain dense layers with the same outputs as the unconverted model's."""
    from slimgan_pl.deploy import export as ex

    torch.manual_seed(0)
    g = dict(ngf=16, img_channels=1, **generator)
    d = dict(arch=generator["arch"], ndf=16, num_classes=generator.get("num_classes", 0))
    plain = SlimGAN(generator=g, discriminator=d, widths=WIDTHS).eval()
    synced = SlimGAN(generator=g, discriminator=d, widths=WIDTHS, sync_bn=True).eval()
    synced.load_state_dict(plain.state_dict())
    with torch.no_grad():  # distinct running statistics, so a BN cut wrongly would show
        for m in [*plain.modules(), *synced.modules()]:
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.linspace(-0.3, 0.3, m.num_features))
                m.running_var.copy_(torch.linspace(0.5, 2.0, m.num_features))
    assert any(type(m) is CrossReplicaBatchNorm2d for m in synced.generator.modules())
    for w in plain.widths:
        dense_plain, dense_synced = ex.export_model(plain, w), ex.export_model(synced, w)  # verified on export
        assert not any(isinstance(m, CrossReplicaBatchNorm2d) for m in dense_synced.modules())
        inputs = ex.example_inputs(dense_plain, batch=3)
        with torch.no_grad():
            torch.testing.assert_close(dense_synced(*inputs), dense_plain(*inputs), rtol=0, atol=0)
    scripted = torch.jit.load(str(ex.save_torchscript(dense_synced, tmp_path / "dense.pt")))
    with torch.no_grad():
        torch.testing.assert_close(scripted(*inputs), dense_plain(*inputs), rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------- rank-0-only code (issue 19, item 1)
def _rank0_alone(rank: int, init_file: str, out_dir: str) -> None:
    """Rank 0 runs train-mode cross-replica BN alone inside local_batch_statistics (as standing
    statistics and evaluation do) while rank 1 has left: must equal nn.BatchNorm2d, not hang."""
    dist.init_process_group(
        "gloo",
        init_method=f"file://{init_file}",
        rank=rank,
        world_size=WORLD,
        timeout=__import__("datetime").timedelta(seconds=30),
    )
    try:
        if rank == 0:
            from slimgan_pl.nn import local_batch_statistics

            torch.manual_seed(0)
            x = torch.randn(6, 4, 3, 3) * 2 + 1
            bn = convert_cross_replica_batchnorm(torch.nn.BatchNorm2d(4)).train()
            plain = torch.nn.BatchNorm2d(4).train()
            with local_batch_statistics():
                out = bn(x)
            torch.save(
                {
                    "out": out.detach(),
                    "expected": plain(x).detach(),
                    "var": bn.running_var,
                    "expected_var": plain.running_var,
                },
                Path(out_dir) / "rank0.pt",
            )
    finally:
        if rank == 0:
            dist.destroy_process_group()


def test_local_batch_statistics_lets_one_rank_run_cross_replica_bn_alone(tmp_path, one_thread):
    _run_ranks(_rank0_alone, str(tmp_path / "init"), str(tmp_path))
    result = torch.load(tmp_path / "rank0.pt", weights_only=True)
    torch.testing.assert_close(result["out"], result["expected"], rtol=0, atol=0)
    torch.testing.assert_close(result["var"], result["expected_var"], rtol=0, atol=0)


def test_ddp_sync_bn_ema_run_evaluates_after_training(tmp_path, fmnist_root):
    """The issue's reproduction: cross-replica BN + EMA (standing statistics) + DDP + evaluation after
    training on rank 0 used to end in "Connection closed by peer" with no summary.json."""
    env = {**os.environ, "PYTHONPATH": str(Path(slimgan_pl.__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "slimgan_pl.train",
            "experiment=fmnist_biggan",
            "trainer=ddp_cpu",
            "model.sync_bn=true",
            "debug=smoke",
            "evaluate.after_training=true",
            "evaluate.n_fake=200",
            "evaluate.n_real=200",
            "train.g_steps=2",
            "ema.standing_batches=2",
            "ema.standing_batch_size=8",
            f"data.root={fmnist_root}",
            "callbacks.sample_grid=null",
            "evaluate.latency_repeats=1",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["iterations"] == 2 and set(summary["fmnist_fid"]) == {"w0.25", "w0.5", "w0.75", "w1.0"}
    assert "standing BN statistics" in proc.stdout + proc.stderr
