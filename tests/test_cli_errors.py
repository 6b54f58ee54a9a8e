"""Errors, help and start-up of the console scripts, on the user's path (installed scripts, a folder outside
the checkout): a mistyped key, a ``+key`` nothing reads, ``sweep=`` without ``-m``, a checkpoint of other
networks, a finished run resumed, RGB data without Inception weights, ``--help`` and its start-up time."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from PIL import Image

from slimgan_pl.config import config_dir
from slimgan_pl.overrides import check_added_keys, closest_key
from slimgan_pl.resume import network_differences

from helpers.user_path import run_user

SMOKE = "debug=smoke trainer.accelerator=cpu callbacks.progress_bar=null logger=none"
SCRIPTS_AND_FLAGS = {  # every [project.scripts] entry and flags its --help must show
    "slimgan-train": ["--resume", "--debug", "-m", "debug=smoke", "experiment", "--hydra-help", "--cfg job"],
    "slimgan-eval": ["--protocol", "--backbone", "--inception-weights"],
    "slimgan-sample": ["--width", "--grid", "--weights"],
    "slimgan-export": ["--width", "--formats"],
    "slimgan-pick": ["--budget-ms", "--budget-macs"],
    "slimgan-collect": ["PATH", "--compare", "--out"],
}


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a refused command (exit status 2)."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, (result.returncode, result.stdout[-2000:], result.stderr[-3000:])
    return lines[0]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ----------------------------------------------------------------------------- keys
def test_a_mistyped_key_names_the_close_key_instead_of_advising_plus(tmp_path):
    line = one_error_line(run_user(f"slimgan-train {SMOKE} train.gsteps=10", cwd=tmp_path, timeout=300))
    assert line.startswith("slimgan-train: error: train.gsteps is not a config key")
    assert "did you mean train.g_steps=10?" in line and "+train" not in line


def test_a_plus_key_that_nothing_reads_is_refused_before_training(tmp_path):
    run = tmp_path / "run"
    line = one_error_line(run_user(f"slimgan-train {SMOKE} +train.gsteps=10 hydra.run.dir={run}", tmp_path, 300))
    assert line.startswith("slimgan-train: config error: +train.gsteps=10 adds a key that nothing reads")
    assert "did you mean train.g_steps=10 (no +)?" in line
    assert not (run / "checkpoints").exists() and not (run / "summary.json").exists()  # nothing trained


@pytest.mark.parametrize(
    ("override", "refused"),
    [
        ("+trainer.enable_checkpointing=false", None),  # a pytorch_lightning.Trainer argument: read
        ("+note=baseline-rerun", None),  # a new top-level key: a tag in the saved config
        ("+model.generator.ngff=48", "model.generator.ngf"),
        ("+evaluate.n_fakes=100", "evaluate.n_fake"),
        ("+callbacks.fid.every_n_iteration=10", "callbacks.fid.every_n_iterations"),
        ("+slim.widthz=[0.5,1.0]", "slim.widths"),
        ("+data.downlaod=true", None),  # refused; no close key
    ],
)
def test_plus_keys_are_allowed_only_where_something_reads_them(override, refused):
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("config", overrides=[override])
    if override.startswith(("+trainer.", "+note")):
        check_added_keys(cfg, [override])
        return
    with pytest.raises(ValueError, match="adds a key that nothing reads") as error:
        check_added_keys(cfg, [override])
    if refused is not None:
        assert f"did you mean {refused}=" in str(error.value)


def test_a_new_callback_with_its_arguments_is_allowed():
    """``+callbacks.NAME._target_=...`` adds a callback (every node of callbacks/logger is instantiated), and
    its arguments are checked against that class; the SLURM and run-folder tests add theirs this way."""
    added = ["+callbacks.slow._target_=helpers.slow_iterations.SlowIterations", "+callbacks.slow.seconds=0.3"]
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("config", overrides=added)
        check_added_keys(cfg, added)
        typo = [*added[:1], "+callbacks.slow.secnds=0.3"]
        cfg = compose("config", overrides=typo)
    with pytest.raises(ValueError, match="adds a key that nothing reads"):
        check_added_keys(cfg, typo)


def test_closest_key_prefers_siblings_and_never_the_section_above():
    keys = ["train", "train.g_steps", "seed", "model", "model.generator", "model.generator.ngf", "callbacks.fid"]
    assert closest_key("train.gsteps", keys) == "train.g_steps"
    assert closest_key("trian.g_steps", keys) == "train.g_steps"
    assert closest_key("model.generator.ngff", keys) == "model.generator.ngf"
    assert closest_key("callbacks.fid.foo", keys) is None  # not its own section, callbacks.fid


def test_sweep_without_multirun_is_refused_before_anything_runs(tmp_path):
    line = one_error_line(run_user(f"slimgan-train {SMOKE} sweep=width_sets", cwd=tmp_path, timeout=120))
    assert line == (
        "slimgan-train: error: sweep=width_sets is a multirun sweep: add -m (slimgan-train -m sweep=width_sets ...); "
        "without it one base run would train and the sweep's values would be ignored"
    )
    assert list(tmp_path.iterdir()) == []  # no outputs/ folder: nothing started


# ----------------------------------------------------------------------------- resume
def test_network_differences_name_network_settings_only():
    saved = {
        "generator": {"arch": "sndcgan32", "ngf": 16, "init": "xavier"},
        "discriminator": {"arch": "sndcgan32", "ndf": 16},
        "widths": [0.25, 1.0],
        "ema_decay": None,
        "g_lr": 2e-4,
    }
    now = {
        "generator": {"arch": "sndcgan32", "ngf": 48, "init": "ortho", "upsample": "nearest"},
        "discriminator": {"arch": "sndcgan32", "ndf": 16},
        "widths": (0.25, 1.0),  # a tuple from the config: the same widths
        "n_share": 2,  # not recorded in the checkpoint: not compared
        "ema_decay": 0.999,
        "g_lr": 1e-3,  # not a network setting
    }
    assert network_differences(saved, now) == [
        "model.generator.ngf: 16 in the checkpoint, 48 now",
        "ema: none in the checkpoint, default now",
    ]
    assert network_differences(saved, {**saved, "g_lr": 1.0}) == []


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A finished smoke run (4 iterations), shared by the resume tests (none of them may change it)."""
    home = tmp_path_factory.mktemp("finished")
    run = home / "run"
    run_user(f"slimgan-train {SMOKE} callbacks.sample_grid=null hydra.run.dir={run}", cwd=home, timeout=600, check=True)
    return run


def test_resume_with_other_network_settings_is_one_line_and_changes_nothing(finished_run, tmp_path):
    last, saved = finished_run / "checkpoints" / "last.ckpt", finished_run / ".hydra" / "overrides.yaml"
    before = digest(last), saved.read_text()
    line = one_error_line(run_user(f"slimgan-train --resume {finished_run} model.generator.ngf=48", tmp_path, 300))
    assert line.startswith(f"slimgan-train: config error: checkpoint {last} was trained with other network settings")
    assert "model.generator.ngf: 16 in the checkpoint, 48 now" in line and "no --resume" in line
    assert "size mismatch" not in line
    # the checkpoint and the overrides the next --resume re-runs are as they were (Hydra rewrote the latter)
    assert (digest(last), saved.read_text()) == before


def test_ckpt_path_of_other_networks_says_drop_ckpt_path(finished_run, tmp_path):
    last = finished_run / "checkpoints" / "last.ckpt"
    command = f"slimgan-train {SMOKE} ckpt_path={last} model.discriminator.ndf=32 hydra.run.dir={tmp_path / 'new'}"
    line = one_error_line(run_user(command, cwd=tmp_path, timeout=300))
    assert "model.discriminator.ndf: 16 in the checkpoint, 32 now" in line and "drop ckpt_path=" in line
    assert not (tmp_path / "new" / "checkpoints").exists()


def test_resuming_a_finished_run_trains_nothing_and_says_how_to_train_longer(finished_run, tmp_path):
    summary, last = finished_run / "summary.json", finished_run / "checkpoints" / "last.ckpt"
    before = digest(summary), summary.stat().st_mtime_ns, digest(last)
    result = run_user(f"slimgan-train --resume {finished_run}", cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (
        f"Nothing to train: already at train.g_steps=4 ({last}); add train.g_steps=8 to train longer: "
        f"slimgan-train --resume {finished_run} train.g_steps=8"
    ) in result.stdout
    assert "Trained" not in result.stdout and "samples" not in result.stdout
    assert (digest(summary), summary.stat().st_mtime_ns, digest(last)) == before


# ----------------------------------------------------------------------------- Inception weights
def test_rgb_data_without_inception_weights_is_one_short_line_naming_both_keys(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for i in range(4):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(
            images / f"{i}.png"
        )
    empty_cache = tmp_path / "cache"
    empty_cache.mkdir()
    env = {"TORCH_HOME": str(empty_cache), "XDG_CACHE_HOME": str(empty_cache), "SLIMGAN_INCEPTION_WEIGHTS": ""}
    command = (  # not debug=smoke: it turns both FID users off
        f"slimgan-train data=image_folder data.root={images} model.generator.ngf=16 model.discriminator.ndf=16 "
        f"trainer.accelerator=cpu logger=none hydra.run.dir={tmp_path / 'run'}"
    )
    line = one_error_line(run_user(command, cwd=tmp_path, timeout=300, env=env))
    message = line.removeprefix("slimgan-train: config error: ")
    assert len(message) < 300, len(message)
    for named in ("callbacks.fid=null", "evaluate.after_training=false", "$SLIMGAN_INCEPTION_WEIGHTS=PATH"):
        assert named in message
    assert "--inception-weights" not in message  # slimgan-eval's flag; slimgan-train has none


# ----------------------------------------------------------------------------- help
def test_train_help_describes_the_command_its_flags_groups_and_examples(tmp_path):
    result = run_user("slimgan-train --help", cwd=tmp_path, timeout=60)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    text = result.stdout
    assert text.startswith("usage: slimgan-train [--resume RUN_DIR] [-m] [--debug]")
    assert "Train a slimmable GAN" in text and "examples:" in text
    for group in ("data", "model", "experiment", "sweep", "debug", "hydra/launcher"):
        assert f"\n  {group} " in text
    assert "fmnist_demo" in text and "width_sets" in text  # options read from conf/
    assert not list(tmp_path.iterdir())  # Hydra did not run: no outputs/ folder


def test_every_console_script_answers_help_within_a_second_on_a_busy_machine(tmp_path):
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])  # another process wants the CPU
    try:
        times = {}
        for script, flags in SCRIPTS_AND_FLAGS.items():
            best = float("inf")
            for _ in range(3):  # the best of three: the import cost, not a scheduler hiccup of a shared machine
                start = time.perf_counter()
                result = run_user(f"{script} --help", cwd=tmp_path, timeout=60)
                best = min(best, time.perf_counter() - start)
                assert result.returncode == 0, result.stderr[-2000:]
                for flag in flags:
                    assert flag in result.stdout, (script, flag)
            times[script] = best
    finally:
        burner.kill()
        burner.wait()
    assert max(times.values()) < 1.5, times  # torch, Lightning and the models took ~5 s each before
