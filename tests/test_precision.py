"""Mixed precision, channels-last and compile switches of the training step (docs/speed.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.plugins.precision import MixedPrecision

import slimgan_pl.module as module
from slimgan_pl import SlimGAN
from slimgan_pl.train import ConfigError, build

from helpers.scripts import load_script
from helpers.tiny import fit_on_noise

WIDTHS = [0.25, 0.5, 0.75, 1.0]
K = 10
FAMILIES = {  # arch, conditional
    "sndcgan": ("sndcgan32", False),
    "snresgan": ("snresgan32", False),
    "biggan": ("biggan32", True),
    "conditional": ("snresgan32", True),  # cGAN-PD-32 at tiny size
}


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors (tests/conftest.py)


def tiny_model(family: str = "sndcgan", **kw) -> SlimGAN:
    arch, conditional = FAMILIES[family]
    classes = {"num_classes": K} if conditional else {}
    args = dict(
        generator=dict(arch=arch, ngf=16, img_channels=1, **classes),
        discriminator=dict(arch=arch, ndf=16, **classes),
        widths=WIDTHS,
        n_share=2,
        alpha=10.0,
        n_dis=1,
    )
    args.update(kw)
    return SlimGAN(**args)


def fit(model: SlimGAN, iterations: int, batch: int = 8, **trainer_kw) -> pl.Trainer:
    return fit_on_noise(model, iterations, batch, num_classes=K, images_seed=1, **trainer_kw)


@pytest.fixture
def loss_spy(monkeypatch):
    """Records, for every loss the training step computes: (name, input dtypes, output, autocast on?)."""
    calls = []

    def spy(name, fn):
        def wrapped(*args, **kwargs):
            out = fn(*args, **kwargs)
            tensors = args[0] if name == "distill" else args
            dtypes = {t.dtype for t in tensors if t is not None}
            calls.append((name, dtypes, out.detach().clone(), torch.is_autocast_enabled("cpu")))
            return out

        return wrapped

    d_loss, g_loss = module.GAN_LOSSES["hinge"]  # the training step looks the loss up in this table
    monkeypatch.setitem(module.GAN_LOSSES, "hinge", (spy("d", d_loss), spy("g", g_loss)))
    monkeypatch.setattr(module, "distillation_loss", spy("distill", module.distillation_loss))
    return calls


@pytest.mark.parametrize("family", list(FAMILIES))
def test_bf16_mixed_trains_every_family_with_fp32_losses_and_parameters(family, loss_spy):
    torch.manual_seed(0)
    model = tiny_model(family)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    trainer = fit(model, iterations=2, precision="bf16-mixed")
    assert model.iteration == 2
    assert {name for name, *_ in loss_spy} == {"d", "g", "distill"}
    for name, dtypes, out, autocast_on in loss_spy:
        assert autocast_on, "the training step must run under autocast"  # bf16 really was on
        assert dtypes == {torch.float32} and out.dtype == torch.float32, (name, dtypes, out.dtype)
        assert torch.isfinite(out), name
    for name, p in model.named_parameters():
        assert p.dtype == torch.float32 and torch.isfinite(p).all(), name
    changed = [k for k, v in model.named_parameters() if not torch.equal(v, before[k])]
    assert any(k.startswith("generator.") for k in changed) and any(k.startswith("discriminator.") for k in changed)
    for opt in trainer.optimizers:  # optimizer state in fp32 as well
        assert all(t.dtype == torch.float32 for s in opt.state.values() for t in s.values() if t.is_floating_point())


def _first_iteration_losses(precision: str, calls: list) -> dict[str, torch.Tensor]:
    calls.clear()
    torch.manual_seed(0)
    fit(tiny_model(), iterations=1, precision=precision)
    d = torch.stack([out for name, _, out, _ in calls if name == "d"])
    g = torch.stack([out for name, _, out, _ in calls if name == "g"])
    kd = torch.stack([out for name, _, out, _ in calls if name == "distill"])
    return {"d": d, "g": g, "distill": kd}


def test_bf16_first_step_losses_agree_with_fp32(loss_spy):
    fp32 = _first_iteration_losses("32-true", loss_spy)
    bf16 = _first_iteration_losses("bf16-mixed", loss_spy)
    for name in fp32:
        assert fp32[name].shape == bf16[name].shape == (1 if name == "distill" else len(WIDTHS),)
        # bf16 keeps 8 mantissa bits: the losses of the same start and data agree to a few percent
        assert torch.allclose(bf16[name], fp32[name], rtol=0.05, atol=0.02), (name, fp32[name], bf16[name])
        assert not torch.equal(bf16[name], fp32[name])  # (it did compute in another precision)


def test_fp16_grad_scaler_path_under_manual_optimization(loss_spy):
    """16-mixed is GPU-only in Lightning's flags; the same plugin on CPU exercises the GradScaler path:
    manual_backward scales, each opt.step() unscales, steps and updates the scale."""
    torch.manual_seed(0)
    model = tiny_model()
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    trainer = fit(model, iterations=2, plugins=[MixedPrecision("16-mixed", "cpu", scaler=scaler)])
    assert model.iteration == 2 and trainer.precision_plugin.scaler is scaler
    assert scaler._scale is not None  # the scaler scaled the losses (lazily created on first use)
    assert all(out.dtype == torch.float32 and autocast for _, _, out, autocast in loss_spy)
    for name, p in model.named_parameters():
        assert p.dtype == torch.float32 and torch.isfinite(p).all(), name
    changed = [k for k, v in model.named_parameters() if not torch.equal(v, before[k])]  # steps were taken
    assert any(k.startswith("generator.") for k in changed) and any(k.startswith("discriminator.") for k in changed)


def test_sample_is_fp32_even_inside_autocast():
    torch.manual_seed(0)
    model = tiny_model()
    plain = model.sample(4, 0.5, seed=3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = model.sample(4, 0.5, seed=3)
    assert inside.dtype == torch.float32 and torch.equal(inside, plain)


def test_channels_last_trains_like_the_default_and_saves_a_plain_state(loss_spy):
    torch.manual_seed(0)
    default = tiny_model()
    fit(default, iterations=2)
    default_losses = [out for *_, out, _ in loss_spy]
    loss_spy.clear()
    torch.manual_seed(0)
    fast = tiny_model(channels_last=True)
    fit(fast, iterations=2)
    conv = fast.discriminator.shared[1][0].parametrizations.weight.original
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    # the same arithmetic up to summation order
    assert torch.allclose(torch.stack(default_losses), torch.stack([out for *_, out, _ in loss_spy]), atol=1e-4)
    for (name, a), b in zip(default.state_dict().items(), fast.state_dict().values()):
        # Adam moves every weight by ~lr per step whatever the gradient's size: tiny gradients that
        # differ in rounding may differ by up to 2 lr after two steps
        assert torch.allclose(a, b, atol=1e-3), name
    tiny_model().load_state_dict(fast.state_dict())  # loads into a default model


def test_compile_switch_wraps_g_and_d_separately_and_keeps_the_state_dict():
    torch.manual_seed(0)
    model = tiny_model(compile_networks=True)
    keys = list(model.state_dict())
    model.setup("fit")  # compiling is lazy: this builds the wrappers, runs nothing
    eager = tiny_model()
    assert eager._training_forwards() == (eager.generator, eager.discriminator.score_all)
    generate, score_all = model._training_forwards()
    assert generate is not model.generator and generate._orig_mod is model.generator
    assert getattr(score_all, "_torchdynamo_orig_callable", None) == model.discriminator.score_all
    assert list(model.state_dict()) == keys  # no _orig_mod prefixes: checkpoints stay portable


@pytest.mark.parametrize("key", ["model.channels_last", "model.compile"])
def test_switches_must_be_booleans(make_cfg, key):
    with pytest.raises(ConfigError, match=f"{key} must be true or false"):
        build(make_cfg(f"{key}=maybe"))


def test_bf16_under_the_gan_ddp_strategy_keeps_ranks_identical(make_cfg, fmnist_root, tmp_path):
    """slimgan_pl.distributed.GANDDPStrategy with bf16-mixed: gradients (fp32) are averaged per
    optimizer step, so two CPU ranks end bit-identical."""
    cfg = make_cfg(
        "trainer=ddp_cpu",
        "trainer.strategy.start_method=fork",
        "trainer.precision=bf16-mixed",
        "train.g_steps=2",
        "optim.n_dis=1",
        "data.batch_size=4",
        "data.limit=32",
        f"data.root={fmnist_root}",
        "callbacks.fid=null",
        "callbacks.sample_grid=null",
        "callbacks.progress_bar=null",
        "logger=none",
        "+trainer.enable_checkpointing=false",
        "callbacks.model_checkpoint=null",
    )
    pl.seed_everything(cfg.seed)
    model, datamodule, trainer = build(cfg)
    assert type(trainer.strategy).__name__ == "GANDDPStrategy" and trainer.world_size == 2

    class Gather(pl.Callback):
        def on_train_end(self, trainer, pl_module):
            flat = torch.cat([p.detach().reshape(-1) for p in pl_module.parameters()])
            gathered = trainer.strategy.all_gather(flat)
            if trainer.is_global_zero:  # the ranks are forked processes: report through a file
                torch.save(
                    {
                        "ranks": gathered,
                        "iteration": pl_module.iteration,
                        "dtypes": {str(p.dtype) for p in pl_module.parameters()},
                    },
                    tmp_path / "ranks.pt",
                )

    gather = Gather()
    trainer.callbacks.append(gather)
    trainer.fit(model, datamodule=datamodule)
    result = torch.load(tmp_path / "ranks.pt", weights_only=True)
    assert result["iteration"] == 2 and result["dtypes"] == {"torch.float32"}
    ranks = result["ranks"]
    assert torch.isfinite(ranks).all() and torch.equal(ranks[0], ranks[1])


def benchmark_script(name: str):
    """experiments/benchmarks/<name>.py loaded as a module (the benchmarks are scripts, not a package)."""
    return load_script(f"experiments/benchmarks/{name}.py")


def test_parity_benchmark_quick_mode_reports_every_width_and_a_verdict(tmp_path, monkeypatch, tiny_classifier):
    monkeypatch.setenv("SLIMGAN_METRICS_CACHE", str(tmp_path / "cache"))
    parity = benchmark_script("precision_parity")
    out = tmp_path / "parity.md"
    result = parity.main(
        [
            "--quick",
            "--iters",
            "2",
            "--modes",
            "bf16-mixed",
            "--classifier",
            str(tiny_classifier),
            "--work-dir",
            str(tmp_path / "runs"),
            "--out",
            str(out),
        ]
    )
    fids = {r["mode"]: r["fmnist_fid"] for r in result["results"]}
    assert set(fids) == {"fp32", "bf16-mixed"} and all(r["iterations"] == 2 for r in result["results"])
    assert all(set(f) == {"w0.25", "w0.5", "w0.75", "w1.0"} and all(v > 0 for v in f.values()) for f in fids.values())
    # the verdict follows the rule: every width's ratio <= 1.10
    ratios = [fids["bf16-mixed"][w] / fids["fp32"][w] for w in fids["fp32"]]
    assert result["passes"]["bf16-mixed"] == all(r <= 1.10 for r in ratios)
    text = out.read_text()
    assert "| w1.0 |" in text and ("PASSES" in text or "FAILS" in text) and out.with_suffix(".json").is_file()


def test_demo_recipe_benchmark_quick_mode_scores_each_candidate_and_seed(tmp_path, monkeypatch, tiny_classifier):
    monkeypatch.setenv("SLIMGAN_METRICS_CACHE", str(tmp_path / "cache"))
    bench = benchmark_script("demo_recipe")
    out = tmp_path / "demo.md"
    argv = ["--quick", "--candidates", "bf16_ema_lr_decay", "--seeds", "0", "1", "--classifier", str(tiny_classifier)]
    result = bench.main([*argv, "--work-dir", str(tmp_path / "runs"), "--out", str(out), "--setup-seconds", "600"])
    runs = {(r["candidate"], r["seed"]): r for r in result["results"]}
    assert set(runs) == {("bf16_ema_lr_decay", 0), ("bf16_ema_lr_decay", 1)}
    # the candidate's overrides reached the run (EMA on, bf16), the seed changed the result
    cfg = (Path(runs[("bf16_ema_lr_decay", 0)]["output_dir"]) / "config_resolved.yaml").read_text()
    assert "precision: bf16-mixed" in cfg and "decay: 0.995" in cfg and "lr_decay: linear" in cfg
    assert runs[("bf16_ema_lr_decay", 0)]["fmnist_fid"] != runs[("bf16_ema_lr_decay", 1)]["fmnist_fid"]
    for row in result["summary"]:  # the worst width per seed; 600 s of install alone exceeds 10 min
        mine = [runs[(row["candidate"], s)] for s in (0, 1)]
        assert row["worst_fid"] == [max(r["fmnist_fid"].values()) for r in mine] and row["meets"] is False
        assert row["demo_minutes"] == [(r["wall_s"] + 600) / 60 for r in mine]
    assert "| bf16_ema_lr_decay | 1 | 2 |" in out.read_text()
    with pytest.raises(SystemExit, match="unknown --candidates"):
        bench.main(["--candidates", "nope"])

    # --previous: the earlier runs join the tables and are not trained again; only the new one trains
    again = tmp_path / "again.md"
    more = [
        "--quick",
        "--candidates",
        "bf16_ema_lr_decay",
        "current",
        "--seeds",
        "0",
        "--classifier",
        str(tiny_classifier),
    ]
    parity = bench._parity_module()
    real_train_and_score, trained = parity.train_and_score, []

    def counting_train_and_score(out, overrides):  # records the run folders it is asked to train
        trained.append(Path(out).name)
        return real_train_and_score(out, overrides)

    monkeypatch.setattr(parity, "train_and_score", counting_train_and_score)
    monkeypatch.setattr(bench, "_parity_module", lambda: parity)
    first = json.loads(out.with_suffix(".json").read_text())
    first["results"][0]["fmnist_fid"] = {"w0.5": 1.25, "w1.0": 2.5}  # (bf16_ema_lr_decay, 0), marked
    marked = tmp_path / "marked.json"
    marked.write_text(json.dumps(first))
    where = ["--work-dir", str(tmp_path / "runs2"), "--out", str(again)]
    merged = bench.main([*more, *where, "--previous", str(marked), str(out.with_suffix(".json"))])
    assert trained == ["current_s0"]
    assert [(r["candidate"], r["seed"]) for r in merged["results"]] == [
        ("bf16_ema_lr_decay", 0),
        ("bf16_ema_lr_decay", 1),
        ("current", 0),
    ]
    assert merged["results"][0]["fmnist_fid"] == {"w0.5": 1.25, "w1.0": 2.5}  # the first file wins a repeat
    text = again.read_text()
    assert "| current | 0 | 2 |" in text and "| bf16_ema_lr_decay | 1 | 2 |" in text
    assert "| bf16_ema_lr_decay | 0 | 2 | 1.25 | 2.50 |" in text  # the first file's values in the table
    assert merged["results"][2]["quick"] is True and merged["results"][2]["overrides"] == []  # as run
    # refused before anything trains, naming the file: a malformed store, an unknown candidate, a full
    # run's results in a --quick table
    for content, message in [
        ("{not json", "bad.json: not the .json of a demo_recipe run"),
        ('{"results": [{"candidate": "nope"}]}', "bad.json.*unknown candidate 'nope'"),
        ('{"results": [{"candidate": "current", "fmnist_fid": {}}]}', "bad.json.*not the .json"),
        (json.dumps({"results": [{**first["results"][1], "quick": False}]}), "bad.json holds results of a full run"),
    ]:
        bad = tmp_path / "bad.json"
        bad.write_text(content)
        with pytest.raises(SystemExit, match=f"--previous .*{message}"):
            bench.main([*more, *where, "--previous", str(bad)])
    assert trained == ["current_s0"]
