"""Long runs survive (issue 16): divergence, corrupt data, damaged checkpoints, full disks, kills inside
a save; every CLI error is one line."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from PIL import Image

import slimgan_pl.train as train_module
from slimgan_pl.checkpoint import CheckpointError
from slimgan_pl.checkpoint_io import (
    CheckpointSaveError,
    NonFiniteStateError,
    SafeCheckpointIO,
    atomic_save,
    newest_loadable_checkpoint,
)
from slimgan_pl.cli import one_line_errors
from slimgan_pl.data import preflight
from slimgan_pl.guard import NonFiniteError, NonFiniteGuard
from slimgan_pl.train import ConfigError

REPO = Path(__file__).parents[1]
WORKER = REPO / "tests" / "helpers" / "train_worker.py"
# smoke size (ngf/ndf 16, batch 8, 4 iterations, checkpoints every 2), one D step per iteration
SMOKE = [
    "debug=smoke",
    "optim.n_dis=1",
    "callbacks.sample_grid=null",
    "trainer.enable_model_summary=false",
    "trainer.accelerator=cpu",
]


@pytest.fixture(autouse=True)
def private_data_check_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SLIMGAN_DATA_CHECK_CACHE", str(tmp_path / "data_check_cache"))


def env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, env=env(), cwd=REPO)


def stderr_lines(proc: subprocess.CompletedProcess) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.strip()]


def step_of(path: Path) -> int:
    return torch.load(path, map_location="cpu", weights_only=True)["global_step"]


def all_finite(path: Path) -> bool:
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    return all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def train_with(cfg, *callbacks: pl.Callback, monkeypatch) -> dict:
    """train(cfg) with extra callbacks appended after build (after the guard)."""
    build = train_module.build

    def build_with(cfg):
        model, datamodule, trainer = build(cfg)
        trainer.callbacks[1:1] = list(callbacks)
        return model, datamodule, trainer

    monkeypatch.setattr(train_module, "build", build_with)
    return train_module.train(cfg)


class PoisonDiscriminator(pl.Callback):
    """Before iteration ``at`` + 1: record the whole state, then put a NaN into one D weight (once)."""

    def __init__(self, at: int) -> None:
        self.at, self.before, self.after = at, None, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if pl_module.iteration == self.at and self.before is None:
            self.before = snapshot(trainer, pl_module)
            with torch.no_grad():
                next(pl_module.discriminator.parameters()).view(-1)[0] = float("nan")
        elif pl_module.iteration == self.at + 1 and self.after is None:
            self.after = snapshot(trainer, pl_module)


def snapshot(trainer, pl_module) -> dict[str, torch.Tensor]:
    state = {f"model.{k}": v.detach().clone() for k, v in pl_module.state_dict().items()}
    for i, opt in enumerate(trainer.optimizers):
        for j, s in enumerate(opt.state_dict()["state"].values()):
            state.update({f"opt{i}.{j}.{k}": torch.as_tensor(v).clone() for k, v in s.items()})
    return state


# ----------------------------------------------------------------------------- non-finite guard
def test_divergence_stops_with_one_line_and_writes_no_nan_checkpoint(tmp_path):
    # issue 16, case 1: this trained to the end with d_loss nan, wrote NaN checkpoints and exited 0
    proc = cli(
        "-m",
        "slimgan_pl.train",
        *SMOKE,
        "callbacks.progress_bar=null",
        "train.g_steps=20",
        "optim.g_lr=1e38",
        "optim.d_lr=1e38",
        f"hydra.run.dir={tmp_path}",
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = stderr_lines(proc)[-1]
    assert last.startswith("slimgan-train: error: non-finite values at iteration 1: "), last
    assert "of width 0.25 = nan" in last and "train.on_nonfinite=stop" in last
    assert not list(tmp_path.glob("checkpoints/*.ckpt"))


def test_stop_keeps_last_ckpt_at_the_last_finite_iteration(make_cfg, monkeypatch):
    cfg = make_cfg(*SMOKE, "train.g_steps=6", "train.checkpoint_every=1")
    out = Path(cfg.paths.output_dir)
    with pytest.raises(
        NonFiniteError,
        match=r"non-finite values at iteration 3: d_loss of width 0\.25 = nan.*"
        r"last\.ckpt is the last finite state.*slimgan-train --resume ",
    ):
        train_with(cfg, PoisonDiscriminator(at=2), monkeypatch=monkeypatch)
    ckpts = sorted(p.name for p in (out / "checkpoints").glob("*.ckpt"))
    assert ckpts == ["iter_000001.ckpt", "iter_000002.ckpt", "last.ckpt"]
    assert step_of(out / "checkpoints" / "last.ckpt") == 2 * 2 and all_finite(out / "checkpoints" / "last.ckpt")


def test_skip_undoes_the_iteration_exactly_and_counts_it(make_cfg, monkeypatch):
    cfg = make_cfg(*SMOKE, "train.g_steps=5", "train.on_nonfinite=skip")
    poison = PoisonDiscriminator(at=2)
    summary = train_with(cfg, poison, monkeypatch=monkeypatch)
    assert summary["iterations"] == 5  # the skipped iteration consumed its batch, training went on
    # weights, buffers and Adam state after the skipped iteration = before it (minus the poison)
    assert poison.before.keys() == poison.after.keys()
    different = [k for k in poison.before if not torch.equal(poison.before[k], poison.after[k])]
    assert not different, different[:5]
    out = Path(cfg.paths.output_dir)
    assert all_finite(out / "checkpoints" / "last.ckpt")
    metrics = (out / "csv" / "metrics.csv").read_text()
    assert "train/nonfinite_skips" in metrics.splitlines()[0]


def test_skip_stops_after_k_non_finite_iterations_in_a_row(make_cfg):
    cfg = make_cfg(
        *SMOKE,
        "train.g_steps=20",
        "optim.g_lr=1e38",
        "optim.d_lr=1e38",
        "train.on_nonfinite=skip",
        "train.max_nonfinite_skips=3",
    )
    with pytest.raises(
        NonFiniteError,
        match=r"at iteration 3: .*3 non-finite iterations in a row, "
        r"train\.max_nonfinite_skips=3",
    ):
        train_module.train(cfg)


def test_guard_syncs_with_the_host_once_per_finite_iteration(monkeypatch):
    """One combined isfinite check -> one .item(); no other host conversion (GPU: one sync)."""
    from types import SimpleNamespace

    module = SimpleNamespace(
        generator=torch.nn.Linear(3, 3), discriminator=torch.nn.Linear(3, 1), device=torch.device("cpu"), iteration=1
    )
    trainer = SimpleNamespace(world_size=1, loggers=[], global_step=2)
    outputs = {
        "train/d_loss_w0.5": torch.tensor(1.0),
        "train/g_loss_w0.5": torch.tensor(-1.0),
        "train/distill_loss": torch.tensor(0.1),
    }
    conversions = []
    for name in ("item", "tolist", "__bool__", "__float__", "__int__"):
        real = getattr(torch.Tensor, name)
        monkeypatch.setattr(
            torch.Tensor, name, lambda self, *a, _n=name, _r=real: conversions.append(_n) or _r(self, *a)
        )
    guard = NonFiniteGuard("stop")
    guard.on_train_batch_end(trainer, module, outputs, None, 0)
    assert conversions == ["item"]
    outputs["train/g_loss_w0.5"] = torch.tensor(float("inf"))
    with pytest.raises(NonFiniteError, match=r"iteration 1: g_loss of width 0\.5 = inf; stopped"):
        guard.on_train_batch_end(trainer, module, outputs, None, 0)


def test_stop_policy_reads_the_flag_only_when_logs_or_checkpoints_are_due(monkeypatch):
    """Stop policy (issue 19: no host sync per step): the device flag is read every
    log_every_n_steps iterations and before checkpoint iterations; the error still names the FIRST
    non-finite iteration and its values, and the iteration where it was read."""
    from types import SimpleNamespace

    module = SimpleNamespace(
        generator=torch.nn.Linear(3, 3), discriminator=torch.nn.Linear(3, 1), device=torch.device("cpu"), iteration=0
    )
    checkpoint = SimpleNamespace(_every_n_train_steps=8)  # every 4 iterations of 2 optimizer steps
    trainer = SimpleNamespace(
        world_size=1, loggers=[], global_step=0, log_every_n_steps=10, max_steps=1000, checkpoint_callbacks=[checkpoint]
    )
    reads = []
    real_item = torch.Tensor.item
    monkeypatch.setattr(torch.Tensor, "item", lambda self: reads.append(module.iteration) or real_item(self))
    guard = NonFiniteGuard("stop")

    def step(d_loss: float) -> None:
        module.iteration += 1
        trainer.global_step += 2
        guard.on_train_batch_end(trainer, module, {"train/d_loss_w0.5": torch.tensor(d_loss)}, None, 0)

    for _ in range(5):
        step(1.0)
    assert reads == [4]  # the checkpoint iteration only
    step(float("nan"))  # iteration 6: not read yet
    step(2.0)  # iteration 7
    assert reads == [4]
    with pytest.raises(NonFiniteError, match=r"iteration 6: d_loss of width 0\.5 = nan \(read at iteration 8\)"):
        step(3.0)  # iteration 8: a checkpoint iteration, read before anything is saved


def test_guard_settings_are_checked(make_cfg):
    with pytest.raises(ConfigError, match=r"train\.on_nonfinite must be one of \['stop', 'skip'\], got 'ignore'"):
        train_module.build(make_cfg(*SMOKE, "train.on_nonfinite=ignore"))
    with pytest.raises(ValueError, match=r"train\.max_nonfinite_skips must be an integer >= 1"):
        NonFiniteGuard("skip", 0)


def test_a_non_finite_state_is_never_saved(tmp_path):
    path = tmp_path / "last.ckpt"
    atomic_save({"state_dict": {"w": torch.ones(2)}, "global_step": 1}, path)
    before = path.read_bytes()
    with pytest.raises(NonFiniteStateError, match=r"refused to save .*last\.ckpt: 1 weight tensors hold NaN/Inf \(w\)"):
        SafeCheckpointIO().save_checkpoint({"state_dict": {"w": torch.tensor([1.0, float("inf")])}}, path)
    assert path.read_bytes() == before


# ----------------------------------------------------------------------------- atomic saves
def test_disk_full_keeps_the_previous_checkpoint_and_stops_with_one_line(make_cfg, monkeypatch):
    cfg = make_cfg(*SMOKE)  # 4 iterations, checkpoints at 2 and 4
    out = Path(cfg.paths.output_dir)
    real_save = torch.save

    def full_disk(obj, f, *args, **kwargs):
        if isinstance(obj, dict) and obj.get("global_step", 0) >= 4 * 2:
            f.write(b"partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(CheckpointSaveError) as err:
        train_module.train(cfg)
    message = str(err.value)
    assert "cannot write checkpoint" in message
    assert "No space left on device (ENOSPC); existing checkpoints are intact" in message
    assert f"continue with: slimgan-train --resume {out}" in message and len(message.splitlines()) == 1
    monkeypatch.setattr(torch, "save", real_save)
    assert step_of(out / "checkpoints" / "last.ckpt") == 2 * 2  # intact, loads
    assert not list((out / "checkpoints").glob("*.tmp-*"))  # the partial file was removed


def test_permission_error_names_the_file(tmp_path, monkeypatch):
    def denied(obj, f, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(torch, "save", denied)
    with pytest.raises(
        CheckpointSaveError,
        match=r"cannot write checkpoint .*x\.ckpt: Permission denied \(EACCES\); "
        r"existing checkpoints are intact",
    ):
        atomic_save({}, tmp_path / "x.ckpt")


def test_kill_inside_a_save_leaves_the_previous_checkpoint(tmp_path):
    out = tmp_path / "run"
    # iteration 4 = global step 8 (n_dis 1): its save writes half the file, then the worker sleeps
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), str(out), "0", *SMOKE, "callbacks.progress_bar=null"],
        env={**env(), "PAUSE_IN_SAVE_AT_STEP": "8"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = 240
        while not (out / "saving").exists() and deadline > 0 and proc.poll() is None:
            subprocess.run(["sleep", "0.2"])
            deadline -= 0.2
        assert (out / "saving").exists(), proc.stdout.read()[-3000:] if proc.poll() is not None else "timeout"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    ckpts = out / "checkpoints"
    assert list(ckpts.glob("*.tmp-*")), "the kill did not happen inside a write"
    assert not (ckpts / "iter_000004.ckpt").exists()
    assert step_of(ckpts / "last.ckpt") == 2 * 2 and step_of(ckpts / "iter_000002.ckpt") == 2 * 2
    assert newest_loadable_checkpoint(ckpts) == ckpts / "last.ckpt"  # temp files are never candidates


# ----------------------------------------------------------------------------- resume
def fake_checkpoint(path: Path, step: int, mtime: int) -> None:
    torch.save({"state_dict": {}, "hyper_parameters": {}, "global_step": step}, path)
    os.utime(path, (mtime, mtime))


def test_resume_picks_the_newest_loadable_checkpoint_and_sets_damaged_ones_aside(tmp_path, capsys):
    fake_checkpoint(tmp_path / "iter_000002.ckpt", 4, 1000)
    fake_checkpoint(tmp_path / "iter_000004.ckpt", 8, 2000)
    fake_checkpoint(tmp_path / "last.ckpt", 8, 2000)
    data = (tmp_path / "last.ckpt").read_bytes()
    (tmp_path / "last.ckpt").write_bytes(data[: len(data) // 2])  # truncated
    os.utime(tmp_path / "last.ckpt", (3000, 3000))
    assert newest_loadable_checkpoint(tmp_path) == tmp_path / "iter_000004.ckpt"
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"resume: skipping checkpoint {tmp_path / 'last.ckpt'}: torch archive is truncated")
    assert line.endswith("kept aside as last.ckpt.damaged") and len(line.splitlines()) == 1
    assert (tmp_path / "last.ckpt.damaged").read_bytes() == data[: len(data) // 2]  # kept, not deleted
    (tmp_path / "iter_000004.ckpt").write_bytes(b"")
    assert newest_loadable_checkpoint(tmp_path, rename=False) == tmp_path / "iter_000002.ckpt"
    assert "file is empty" in capsys.readouterr().out and (tmp_path / "iter_000004.ckpt").exists()


def test_damaged_last_ckpt_falls_back_and_resume_dir_continues_a_finished_run(tmp_path):
    run = tmp_path / "run"
    first = cli("-m", "slimgan_pl.train", *SMOKE, "callbacks.progress_bar=null", f"hydra.run.dir={run}")
    assert first.returncode == 0, first.stderr[-2000:]
    last = run / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])  # issue 16, case 3: truncated last.ckpt blocked resume=auto

    # one command, the run folder's own overrides; a larger train.g_steps continues the finished run
    second = cli("-m", "slimgan_pl.train", "--resume", str(run), "train.g_steps=6")
    assert second.returncode == 0, second.stderr[-2000:]
    assert f"resume: skipping checkpoint {last}: torch archive is truncated" in second.stdout
    assert f"Resuming from {run / 'checkpoints' / 'iter_000004.ckpt'}" in second.stdout
    assert (run / "checkpoints" / "last.ckpt.damaged").is_file()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["iterations"] == 6 and summary["resumed_at_iteration"] == 4
    assert not (run.parent / "outputs").exists() and len(list(tmp_path.iterdir())) == 1  # in place

    third = cli("-m", "slimgan_pl.train", "--resume", str(run), "train.g_steps=8")
    assert third.returncode == 0, third.stderr[-2000:]
    assert f"Resuming from {last}" in third.stdout
    assert json.loads((run / "summary.json").read_text())["iterations"] == 8
    assert step_of(last) == 8 * 2


def test_resume_needs_a_run_folder(tmp_path):
    with pytest.raises(ValueError, match=r"--resume .*: not a slimgan-train run folder \(no \.hydra/overrides\.yaml\)"):
        train_module._resume_argv(["--resume", str(tmp_path)])
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "overrides.yaml").write_text("- debug=smoke\n- train.g_steps=4\n- resume=never\n")
    assert train_module._resume_argv(["--resume", str(tmp_path), "train.g_steps=9"]) == [
        "debug=smoke",
        "train.g_steps=9",
        f"hydra.run.dir={tmp_path}",
        "resume=auto",
    ]
    with pytest.raises(ValueError, match="do not combine it with ckpt_path="):
        train_module._resume_argv([f"--resume={tmp_path}", "ckpt_path=x.ckpt"])


class Evil:
    def __reduce__(self):
        return os.system, ("touch pwned",)


def test_unsafe_checkpoint_is_refused_in_one_line(tmp_path):
    # issue 16, case 4: a multi-line UnpicklingError traceback before
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {}, "payload": Evil()}, evil)
    proc = cli("-m", "slimgan_pl.train", *SMOKE, f"ckpt_path={evil}", f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 2
    lines = stderr_lines(proc)
    assert len(lines) == 1, proc.stderr[-2000:]
    assert lines[0].startswith(f"slimgan-train: error: checkpoint {evil}: contains a pickled posix")
    assert lines[0].endswith(
        "that safe loading (weights_only=True) refuses; load it unsafely only if you trust its source"
    )
    assert not (REPO / "pwned").exists() and not (tmp_path / "run" / "checkpoints").exists()


# ----------------------------------------------------------------------------- CLI errors
def test_every_cli_reports_a_bad_input_in_one_line(tmp_path):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    calls = {
        "slimgan-eval": ["slimgan_pl.evaluate", str(bad)],
        "slimgan-sample": ["slimgan_pl.deploy.sample", str(bad), "--grid", str(tmp_path / "grid.png")],
        "slimgan-export": ["slimgan_pl.deploy.export", str(bad), "--width", "1.0"],
        "slimgan-pick": ["slimgan_pl.deploy.pick", str(bad), "--budget-ms", "5"],
        "slimgan-collect": ["slimgan_pl.sweeps", str(tmp_path / "no_such_sweep")],
        # Hydra's own composition error (printed over several lines by Hydra itself)
        "slimgan-train": ["slimgan_pl.train", "model=no_such_model", f"hydra.run.dir={tmp_path / 'run'}"],
    }
    procs = {
        prog: subprocess.Popen(
            [sys.executable, "-m", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env(),
            cwd=REPO,
        )
        for prog, args in calls.items()
    }
    for prog, proc in procs.items():
        _, err = proc.communicate(timeout=240)
        lines = [line for line in err.splitlines() if line.strip()]
        assert proc.returncode == 2, (prog, err[-2000:])
        assert len(lines) == 1, (prog, err[-2000:])
        name = {"slimgan-collect": "no_such_sweep", "slimgan-train": "model/no_such_model"}.get(prog, "bad.ckpt")
        assert name in lines[0], (prog, lines)
        if prog == "slimgan-train":
            assert lines[0].startswith(
                "slimgan-train: error: In 'config': Could not find 'model/no_such_model' "
                "Available options in 'model': biggan32"
            )
        elif prog != "slimgan-collect":
            assert lines[0].startswith(f"{prog}: error: checkpoint {bad}: not a torch checkpoint file")


def test_debug_flag_and_hydra_full_error_show_the_traceback(tmp_path, capsys, monkeypatch):
    from slimgan_pl.deploy import sample

    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"x")
    monkeypatch.setenv("HYDRA_FULL_ERROR", "0")  # recorded, so the value --debug sets is undone too
    grid = ["--grid", str(tmp_path / "grid.png")]
    with pytest.raises(SystemExit) as exit_:
        sample.main([str(bad), *grid])
    assert exit_.value.code == 2 and capsys.readouterr().err.count("\n") == 1
    with pytest.raises(CheckpointError, match="not a torch checkpoint file"):
        sample.main([str(bad), *grid, "--debug"])  # the error itself, with its traceback
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(CheckpointError):
        sample.main([str(bad), *grid])


def test_one_line_errors_collapses_multi_line_messages(capsys, monkeypatch):
    monkeypatch.setenv("HYDRA_FULL_ERROR", "0")  # recorded, so the value --debug sets is undone too
    with pytest.raises(SystemExit) as exit_, one_line_errors("prog"):
        raise ValueError("first line\n  second line")
    assert exit_.value.code == 2 and capsys.readouterr().err == "prog: error: first line second line\n"
    with pytest.raises(ZeroDivisionError), one_line_errors("prog"):  # a bug keeps its traceback
        _ = 1 / 0


# ----------------------------------------------------------------------------- corrupt data
def image_folder(root: Path, n: int, bad: tuple[str, ...] = ()) -> list[Path]:
    root.mkdir(parents=True)
    for i in range(n):
        Image.new("RGB", (36, 36), (i * 3 % 255, 40, 90)).save(root / f"img_{i:03d}.png")
    for name in bad:
        (root / name).write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    return sorted(root.iterdir())


def test_one_corrupt_image_fails_before_training_with_one_line(make_cfg, tmp_path):
    # issue 16, case 2: trained until the loader reached the file, then died with a traceback
    image_folder(tmp_path / "imgs", 40, bad=("broken.png",))
    cfg = make_cfg(*SMOKE, "data=image_folder", f"data.root={tmp_path / 'imgs'}", "data.num_workers=0")
    with pytest.raises(
        ConfigError,
        match=r"data\.on_corrupt=error: 1 of 41 images cannot be decoded: "
        r".*imgs/broken\.png \(OSError\); delete or replace them, "
        r"or set data\.on_corrupt=skip",
    ) as err:
        train_module.train(cfg)
    assert len(str(err.value).splitlines()) == 1
    assert not (Path(cfg.paths.output_dir) / "checkpoints").exists()


def test_skip_leaves_corrupt_images_out_and_lists_them_in_the_run_folder(make_cfg, tmp_path):
    image_folder(tmp_path / "imgs", 40, bad=("broken.png", "cut.png"))
    cfg = make_cfg(
        *SMOKE, "data=image_folder", f"data.root={tmp_path / 'imgs'}", "data.num_workers=0", "data.on_corrupt=skip"
    )
    with pytest.warns(UserWarning, match=r"2 of 42 images cannot be decoded and are left out"):
        summary = train_module.train(cfg)
    assert summary["iterations"] == 4
    listed = (Path(cfg.paths.output_dir) / "corrupt_files.txt").read_text().splitlines()
    assert [line.split("\t")[0] for line in listed] == [str(tmp_path / "imgs" / n) for n in ("broken.png", "cut.png")]


def test_preflight_check_is_cached_per_file(tmp_path, monkeypatch):
    files = [str(p) for p in image_folder(tmp_path / "imgs", 5, bad=("broken.png",))]
    decoded = []
    real = preflight.decode_problem
    monkeypatch.setattr(preflight, "decode_problem", lambda path: decoded.append(path) or real(path))
    first = preflight.find_unreadable_images(files)
    assert [f for f, _ in first] == [str(tmp_path / "imgs" / "broken.png")] and len(decoded) == 6
    decoded.clear()
    assert preflight.find_unreadable_images(files) == first and decoded == []  # second run: nothing decoded
    Image.new("RGB", (8, 8)).save(tmp_path / "imgs" / "broken.png")  # fixed: size/mtime change, checked again
    assert preflight.find_unreadable_images(files) == [] and decoded == [str(tmp_path / "imgs" / "broken.png")]
    # a truncated JPEG is caught by the reduced-scale decode
    Image.new("RGB", (64, 64), (10, 200, 30)).save(tmp_path / "t.jpg")
    data = (tmp_path / "t.jpg").read_bytes()
    (tmp_path / "t.jpg").write_bytes(data[: len(data) // 2])
    assert "truncated" in preflight.decode_problem(str(tmp_path / "t.jpg")).lower()
