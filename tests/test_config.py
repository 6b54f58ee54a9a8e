"""Config habits: no experiment by default, experiments hold only their deltas, presets inherit presets."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from slimgan_pl.config import config_dir, register_resolvers

register_resolvers()
CONF = Path(config_dir())
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


def composed(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def test_a_run_without_experiment_inherits_no_experiments_values():
    base, sweep, demo = composed(), composed("sweep=distillation"), composed("experiment=fmnist_demo")
    for cfg in (base, sweep):  # the base values: the sndcgan32 preset's channels, not the demo's 128
        assert (cfg.task_name, cfg.model.generator.ngf, cfg.model.discriminator.ndf) == ("train", 512, 512)
        assert cfg.train.g_steps == 1000
    assert (demo.task_name, demo.model.generator.ngf, demo.model.discriminator.ndf) == ("fmnist_demo", 128, 128)
    assert demo.train.g_steps == 1500 and demo.slim == base.slim and demo.optim == base.optim
    assert "experiment=fmnist_demo" in (Path(__file__).parents[1] / "Makefile").read_text()  # make demo names it


def _leaves(node, prefix=""):
    if isinstance(node, dict) and node:
        for key, value in node.items():
            yield from _leaves(value, f"{prefix}{key}.")
    else:
        yield prefix[:-1], node


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_states_only_what_differs(experiment):
    """Every value an experiment sets differs from what its preset choices (data, model, optim, ema) give."""
    spec = yaml.safe_load((CONF / "experiment" / f"{experiment}.yaml").read_text())
    choices = [
        f"{group.split('/')[-1].strip()}={option}"
        for entry in spec.pop("defaults", [])
        for group, option in entry.items()
    ]  # {"override /data": "cifar10"} -> data=cifar10
    base = composed(*choices)
    same = [
        key
        for key, value in _leaves(spec)
        if key != "task_name"
        and OmegaConf.to_container(OmegaConf.create({"v": OmegaConf.select(base, key)}))["v"] == value
    ]
    assert not same, f"{experiment} repeats base values: {same}"
    assert composed(f"experiment={experiment}").task_name == experiment


@pytest.mark.parametrize("preset, base_preset", [("sndcgan32_cond", "sndcgan32"), ("cgan_pd32", "snresgan32")])
def test_conditional_presets_extend_their_base_preset(preset, base_preset):
    cond, base = composed(f"model={preset}").model, composed(f"model={base_preset}").model
    text = (CONF / "model" / f"{preset}.yaml").read_text()
    assert f"  - {base_preset}\n" in text and "arch:" not in text  # inherited, not copied
    for part in ("generator", "discriminator"):
        extra = set(cond[part]) - set(base[part])
        assert {k: cond[part][k] for k in set(base[part])} == dict(base[part])
        assert extra == ({"num_classes", "cond_norm"} if part == "generator" else {"num_classes"})


def test_cond_norm_sweep_trains_the_fmnist_cond_model():
    params = yaml.safe_load((CONF / "sweep" / "cond_norm.yaml").read_text())["hydra"]["sweeper"]["params"]
    assert params["experiment"] == "fmnist_cond" and "model" not in params  # the experiment's own model
    job = composed("sweep=cond_norm", *(f"{k}={str(v).split(',')[-1]}" for k, v in params.items()))
    assert job.model.generator.arch == "sndcgan32" and job.task_name == "fmnist_cond"
    assert job.model.generator.ngf == 128 and job.model.generator.cond_norm == "switchable"


def test_data_limit_needs_no_plus():
    assert composed().data.limit is None
    assert composed("data=image_folder", "data.root=x", "data.limit=16").data.limit == 16
