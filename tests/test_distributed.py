"""Multi-GPU / cluster defects reproduced on one CPU process (issue 19): RNG states across GPU counts
and devices, the launcher request derived from the trainer config, the partition check, trainer
refusals, float32 islands under bf16 autocast, and host syncs per training step."""

from __future__ import annotations

import logging
import sys

import pytest
import pytorch_lightning as pl
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from slimgan_pl import SlimGAN
from slimgan_pl.distributed import check_trainer_config
from slimgan_pl.launch import LaunchConfigError, NodeInfo, check_request, launch_resources, parse_gpus
from slimgan_pl.nn import CrossReplicaBatchNorm2d
from slimgan_pl.nn.precision import Float32SpectralNorm
from slimgan_pl.resume import rng_state, set_rng_state
from slimgan_pl.train import ConfigError, build

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


# ----------------------------------------------------------------------------- item 2: CUDA RNG per device
class FakeCuda:
    """torch.cuda's RNG functions for a machine with ``count`` GPUs, current device ``current``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, count: int, current: int = 0) -> None:
        self.states = {i: torch.full((16,), i, dtype=torch.uint8) for i in range(count)}
        self.current, self.count = current, count
        monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
        monkeypatch.setattr(torch.cuda, "is_initialized", lambda: count > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: self.current)
        monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device="cuda": self.states[self.current].clone())
        monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [self.states[i] for i in range(count)])

        def set_state(state: torch.Tensor, device: str = "cuda") -> None:
            self.states[self.current] = state.clone()

        def set_all(states: list[torch.Tensor]) -> None:  # torch's: index past device_count fails
            for i, s in enumerate(states):
                if i >= count:
                    raise RuntimeError(f"Invalid device index {i}")
                self.states[i] = s.clone()

        monkeypatch.setattr(torch.cuda, "set_rng_state", set_state)
        monkeypatch.setattr(torch.cuda, "set_rng_state_all", set_all)


def test_checkpoint_of_an_8_gpu_rank_restores_on_a_1_gpu_machine(monkeypatch):
    saving = FakeCuda(monkeypatch, count=8, current=5)  # rank 5 of an 8-GPU node draws on cuda:5
    state = rng_state()
    assert torch.equal(state["cuda"], torch.full((16,), 5, dtype=torch.uint8))  # its own device only
    resuming = FakeCuda(monkeypatch, count=1, current=0)
    set_rng_state(state)  # the old format (8 states) crashed here: set_rng_state_all indexes cuda:1..7
    assert torch.equal(resuming.states[0], saving.states[5])


def test_old_per_gpu_cuda_states_restore_the_current_device_or_warn(monkeypatch, caplog):
    old = {**rng_state(), "cuda": [torch.full((16,), i, dtype=torch.uint8) for i in range(8)]}
    fake = FakeCuda(monkeypatch, count=4, current=2)
    set_rng_state(old)
    assert torch.equal(fake.states[2], old["cuda"][2])
    fake.current = 3
    short = {**old, "cuda": old["cuda"][:2]}
    with caplog.at_level(logging.WARNING):
        set_rng_state(short)  # no crash: nothing for cuda:3 in a 2-GPU checkpoint
    assert "CUDA RNG states of 2 GPUs" in caplog.text


def test_cuda_state_on_a_cpu_machine_is_skipped_with_a_warning(caplog):
    state = {**rng_state(), "cuda": torch.zeros(16, dtype=torch.uint8)}
    with caplog.at_level(logging.WARNING):
        set_rng_state(state)
    assert ("no GPU" in caplog.text) == (not torch.cuda.is_available())


# ----------------------------------------------------------------------------- item 3: noise state across devices
def test_noise_state_of_a_cuda_checkpoint_on_a_cpu_run_reseeds_with_one_warning(caplog):
    cpu_noise = torch.Generator().manual_seed(123)
    saved = rng_state(cpu_noise)
    assert saved["noise_device"] == "cpu" and saved["noise"].numel() == 5056
    # A CUDA generator's state: 16 bytes (seed + offset), as a checkpoint written on a GPU holds it.
    cuda_saved = {**saved, "noise": torch.zeros(16, dtype=torch.uint8), "noise_device": "cuda"}
    fresh = torch.Generator().manual_seed(7)  # on_train_start seeds it from (seed, rank, step)
    expected = torch.Generator().manual_seed(7)
    with caplog.at_level(logging.WARNING):
        set_rng_state(cuda_saved, fresh)  # used to fail: "RNG state is wrong size"
    assert "reseeded" in caplog.text and len(caplog.records) == 1
    assert torch.equal(torch.randn(4, generator=fresh), torch.randn(4, generator=expected))  # kept its seed
    # An older checkpoint without the device key: detected by the size alone.
    caplog.clear()
    old = {k: v for k, v in cuda_saved.items() if k != "noise_device"}
    with caplog.at_level(logging.WARNING):
        set_rng_state(old, torch.Generator().manual_seed(7))
    assert "reseeded" in caplog.text
    # Same device: continued exactly, no warning.
    caplog.clear()
    again = torch.Generator()
    with caplog.at_level(logging.WARNING):
        set_rng_state(saved, again)
    assert not caplog.records
    torch.testing.assert_close(torch.randn(4, generator=again), torch.randn(4, generator=cpu_noise))


# ----------------------------------------------------------------------------- item 4: launcher request
@pytest.mark.parametrize(
    "kind, accelerator, devices, nodes, expected",
    [
        ("slurm", "gpu", 4, 1, (1, 4, 4)),
        ("slurm", "gpu", [0, 1], 2, (2, 2, 2)),  # a list: its length (used to fail int())
        ("slurm", "gpu", "0,1,2", 1, (1, 3, 3)),
        ("slurm", "cpu", 2, 1, (1, 2, None)),  # trainer=ddp_cpu: two CPU tasks, no GPU request
        ("slurm", "auto", 2, 1, (1, 2, None)),  # partition without GPUs (partition_has_gpus=None)
        ("local", "gpu", 2, 1, (1, 1, 2)),  # Lightning starts the ranks itself
        ("local", "cpu", 2, 1, (1, 1, 0)),
    ],
)
def test_launch_resources_follow_the_trainer(kind, accelerator, devices, nodes, expected):
    r = launch_resources(kind, accelerator, devices, nodes)
    assert (r.nodes, r.tasks_per_node, r.gpus_per_node) == expected


def test_launch_resources_auto_and_all_visible():
    assert launch_resources("slurm", "auto", 2, partition_has_gpus=True).gpus_per_node == 2
    assert launch_resources("local", "gpu", -1, cuda_count=3).gpus_per_node == 3  # this machine's GPUs
    with pytest.raises(LaunchConfigError, match=r"trainer.devices=-1 .*set trainer.devices=<devices per node>"):
        launch_resources("slurm", "gpu", -1)  # used to become --ntasks-per-node=-1
    with pytest.raises(LaunchConfigError, match=r"names GPU ids.*set trainer.devices=2"):
        launch_resources("slurm", "gpu", [1, 3])
    with pytest.raises(LaunchConfigError, match=r"hydra/launcher=slurm"):
        launch_resources("local", "gpu", 2, num_nodes=2, cuda_count=2)
    with pytest.raises(LaunchConfigError, match=r"trainer=ddp_cpu"):
        launch_resources("local", "gpu", 2, cuda_count=0)


@pytest.mark.parametrize(
    "launcher, overrides, expected",
    [
        ("slurm", ["trainer=ddp", "trainer.devices=[0,1]", "trainer.num_nodes=2"], (2, 2, 2)),
        ("slurm", ["trainer=ddp_cpu"], (1, 2, None)),
        ("local", ["trainer=ddp_cpu"], (1, 1, 0)),
    ],
)
def test_launcher_config_derives_nodes_tasks_and_gpus(launcher, overrides, expected):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from slimgan_pl.config import config_dir

    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("config", overrides=[f"hydra/launcher={launcher}", *overrides], return_hydra_config=True)
    params = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert params["_target_"] == f"hydra_plugins.slimgan_launchers.{launcher.capitalize()}Launcher"
    assert (params["nodes"], params["tasks_per_node"], params["gpus_per_node"]) == expected


# ----------------------------------------------------------------------------- item 5: request vs partition
NODE = [NodeInfo("vm", cpus=2, memory_mb=24152, gpus=0)]


def test_check_request_refuses_what_no_node_holds_in_one_line():
    ok = dict(nodes=1, tasks_per_node=1, cpus_per_task=1, mem_gb=1, gpus_per_node=None)
    check_request(ok, "local", NODE)
    cases = [
        (dict(cpus_per_task=4), r"cpus_per_task=4 x 1 task\(s\) per node = 4 CPUs .* at most 2 .*cpus_per_task=2"),
        (dict(mem_gb=32), r"mem_gb=32 .* at most 24152 MB per node: set hydra.launcher.mem_gb=23"),
        (dict(gpus_per_node=2), r"no GPUs: use trainer=ddp_cpu"),
        (dict(nodes=2), r"trainer.num_nodes=2 but partition 'local' \(1 node\)"),
    ]
    for change, message in cases:
        with pytest.raises(LaunchConfigError, match=message) as e:
            check_request({**ok, **change}, "local", NODE)
        assert "\n" not in str(e.value)
    gpu_nodes = [NodeInfo("a", 64, 512000, 4), NodeInfo("b", 8, 512000, 8)]
    with pytest.raises(LaunchConfigError, match=r"0 node\(s\) .* hold 64 CPUs"):  # no single node has both
        check_request({**ok, "cpus_per_task": 8, "tasks_per_node": 8, "gpus_per_node": 8}, "gpu", gpu_nodes)
    assert [parse_gpus(g) for g in ("(null)", "gpu:4", "gpu:a100:8(S:0-1)", "gpu:2,gpu:v100:1")] == [0, 4, 8, 3]


# ----------------------------------------------------------------------------- trainer refusals
def test_gpu_trainer_without_cuda_names_ddp_cpu(make_cfg):
    with pytest.raises(ValueError, match=r"trainer.accelerator=gpu .*use trainer=ddp_cpu"):
        check_trainer_config("gpu", "32-true", ema=False, cuda_available=False)
    check_trainer_config("gpu", "32-true", ema=False, cuda_available=True)
    if not torch.cuda.is_available():
        cfg = make_cfg("trainer=ddp")
        cfg.trainer.accelerator = "gpu"  # make_cfg forces cpu
        with pytest.raises(ConfigError, match=r"trainer=ddp_cpu"):
            build(cfg)


def test_half_true_precision_with_ema_is_refused_mixed_is_not():
    for precision in ("bf16-true", "16-true"):
        with pytest.raises(ValueError, match=rf"trainer.precision={precision} .*freezes the EMA .*bf16-mixed"):
            check_trainer_config("cpu", precision, ema=True)
        check_trainer_config("cpu", precision, ema=False)
    check_trainer_config("cpu", "bf16-mixed", ema=True)
    # why: a 1e-4 EMA step is below bf16 resolution
    t = torch.tensor(1.0, dtype=torch.bfloat16)
    assert torch.equal(t.lerp(torch.tensor(2.0, dtype=torch.bfloat16), 1e-4), t)


# ----------------------------------------------------------------------------- numerics under bf16 autocast
def _biggan(**kwargs) -> SlimGAN:
    torch.manual_seed(0)
    return SlimGAN(
        generator=dict(arch="biggan32", ngf=16, img_channels=1),
        discriminator=dict(arch="biggan32", ndf=16),
        widths=[0.5, 1.0],
        **kwargs,
    )


def test_spectral_norm_power_iteration_runs_in_float32_under_bf16_autocast():
    model = _biggan()
    sns = [m for m in model.modules() if isinstance(m, torch.nn.utils.parametrizations._SpectralNorm)]
    assert sns and all(type(m) is Float32SpectralNorm for m in sns)
    conv = next(
        m
        for m in model.discriminator.modules()
        if isinstance(m, torch.nn.Conv2d) and torch.nn.utils.parametrize.is_parametrized(m)
    )
    sn = conv.parametrizations.weight[0]
    original = conv.parametrizations.weight.original.detach()
    u0 = sn._u.clone()
    # reference: the same power iteration and sigma by hand in float32
    w = original.reshape(original.shape[0], -1)
    v = torch.nn.functional.normalize(w.T @ u0, dim=0, eps=sn.eps)  # torch's order: v from u, then u from v
    u = torch.nn.functional.normalize(w @ v, dim=0, eps=sn.eps)
    sigma = u @ (w @ v)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        normalised = conv.weight
    assert normalised.dtype == torch.float32 and sn._u.dtype == torch.float32
    torch.testing.assert_close(sn._u, u, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(normalised, original / sigma, rtol=1e-6, atol=1e-7)


def test_ortho_penalty_is_float32_under_bf16_autocast():
    model = _biggan(ortho_reg=1e-4)
    reference = model.ortho_penalty()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        penalty = model.ortho_penalty()
    assert penalty.dtype == torch.float32
    torch.testing.assert_close(penalty, reference, rtol=1e-6, atol=0)  # bf16 matmuls miss by ~1e-2


def test_cross_replica_bn_statistics_in_float32_return_the_activation_dtype(monkeypatch):
    """Two 'ranks' simulated in one process (the all-reduce doubles): |x - mean| > 256 squared
    overflows fp16; the statistics must stay finite and match float32, the output keep fp16."""
    import slimgan_pl.nn.cross_replica as cr

    monkeypatch.setattr(cr, "_world_size", lambda: 2)
    monkeypatch.setattr(cr.dist, "all_reduce", lambda t, *a, **k: t.mul_(2))
    bn = CrossReplicaBatchNorm2d(3).train()
    x = (torch.randn(8, 3, 4, 4) * 400).half()
    out = bn(x)
    assert out.dtype == torch.float16 and torch.isfinite(bn.running_var).all()
    ref = torch.nn.BatchNorm2d(3).train()
    expected = ref(torch.cat([x.float(), x.float()]))[:8]  # the global batch: both 'ranks' hold x
    torch.testing.assert_close(out.float(), expected, rtol=2e-3, atol=2e-3)
    torch.testing.assert_close(bn.running_var, ref.running_var, rtol=1e-4, atol=0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert bn(x.float().bfloat16()).dtype == torch.bfloat16


# ----------------------------------------------------------------------------- host syncs per step
class ScalarReads(TorchDispatchMode):
    """Counts tensor-to-Python reads (``.item()``, ``float(t)``, ``bool(t)``: aten::_local_scalar_dense),
    which on a GPU are host-device syncs. Reads inside torch.optim are skipped: Adam's step counters
    live on the CPU even for CUDA parameters, so those are not syncs."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self.where: list[str] = []  # callers of each read, for the failure message

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            frame, callers = sys._getframe(1), []
            while frame is not None:
                callers.append(f"{frame.f_code.co_filename}:{frame.f_lineno}")
                frame = frame.f_back
            if not any("/torch/optim/" in c for c in callers):
                self.count += 1
                self.where.append(" < ".join(c.rsplit("/", 1)[-1] for c in callers[:8]))
        return func(*args, **(kwargs or {}))


class CountSteps(pl.Callback):
    """Counts scalar reads from the start of batch 1 to the start of batch 2: one whole iteration,
    with the logger's and the progress bar's per-step work."""

    def __init__(self) -> None:
        self.mode = ScalarReads()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == 1:
            self.mode.__enter__()
        elif batch_idx == 2:
            self.mode.__exit__(None, None, None)


@pytest.mark.parametrize("every, expect_reads", [(1000, False), (1, True)])
def test_training_steps_read_no_scalar_until_a_logger_or_the_bar_prints(make_cfg, fmnist_root, every, expect_reads):
    cfg = make_cfg(
        "debug=smoke",
        f"data.root={fmnist_root}",
        "train.g_steps=3",
        "optim.n_dis=1",
        "model.generator.ngf=8",
        "model.discriminator.ndf=8",
        "data.batch_size=4",
        "callbacks.sample_grid=null",
        "callbacks.model_checkpoint=null",
        "+trainer.enable_checkpointing=false",
        f"callbacks.progress_bar={{_target_:slimgan_pl.callbacks.IterationProgressBar,refresh_rate:{every}}}",
        f"trainer.log_every_n_steps={every}",
        "model.sync_bn=true",
        "ema=default",
        "ema.start=0",
        "optim.ortho_reg=1e-4",
    )
    model, datamodule, trainer = build(cfg)
    counter = CountSteps()
    trainer.callbacks.append(counter)
    trainer.fit(model, datamodule=datamodule)
    if expect_reads:  # the counter sees reads when they happen: the CSV logger and bar print every step
        assert counter.mode.count > 0
    else:
        assert counter.mode.count == 0, counter.mode.where


@requires_cuda
def test_training_steps_do_not_sync_on_cuda(make_cfg, fmnist_root):
    cfg = make_cfg(
        "debug=smoke",
        f"data.root={fmnist_root}",
        "train.g_steps=3",
        "optim.n_dis=1",
        "callbacks.sample_grid=null",
        "callbacks.model_checkpoint=null",
        "+trainer.enable_checkpointing=false",
        "callbacks.progress_bar={_target_:slimgan_pl.callbacks.IterationProgressBar,refresh_rate:1000}",
        "trainer.log_every_n_steps=1000",
        "trainer.accelerator=gpu",
        "logger=none",
    )
    model, datamodule, trainer = build(cfg)

    class Strict(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            torch.cuda.set_sync_debug_mode("error" if batch_idx == 1 else "default")

        def on_train_end(self, trainer, pl_module):
            torch.cuda.set_sync_debug_mode("default")

    trainer.callbacks.append(Strict())
    try:
        trainer.fit(model, datamodule=datamodule)
    finally:
        torch.cuda.set_sync_debug_mode("default")
