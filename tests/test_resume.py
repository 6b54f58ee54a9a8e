"""Exact resume: a run killed (SIGKILL) or stopped by a signal (SIGTERM) after a checkpoint and restarted
with resume=auto in the same directory ends with the same weights as an uninterrupted run."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from slimgan_pl.data.resumable import resumable_loader
from slimgan_pl.resume import resume_checkpoint
from slimgan_pl.train import ConfigError, build

WORKER = Path(__file__).parent / "helpers" / "train_worker.py"
# 40 images, batch 8: 5 iterations per epoch, so iteration 3's checkpoint is mid-epoch and the
# 12 iterations cross two epoch boundaries.
RUN = [
    "trainer.accelerator=cpu",
    "trainer.deterministic=true",
    "callbacks.progress_bar=null",
    "trainer.enable_model_summary=false",
    "model.generator.ngf=16",
    "model.discriminator.ndf=16",
    "data.batch_size=8",
    "data.limit=40",
    "train.g_steps=12",
    "train.checkpoint_every=3",
    "evaluate.after_training=false",
    "callbacks.fid=null",
    "callbacks.sample_grid.every_n_iterations=2",
    "callbacks.sample_grid.n_samples=8",
    "trainer.log_every_n_steps=1",
    "seed=7",
    # the EMA generator must come back too (decaying from iteration 2; grids use standing statistics)
    "ema=default",
    "ema.start=2",
    "ema.decay=0.9",
    "ema.standing_batches=2",
    "ema.standing_batch_size=8",
    # and the learning rates, decaying linearly over the 12 iterations (optim=dcgan: 2e-4 for G and D)
    "optim.lr_decay=linear",
]


def start(out: Path, pause_at: int = 0, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1])}
    return subprocess.Popen(
        [sys.executable, str(WORKER), str(out), str(pause_at), *RUN, *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(proc: subprocess.Popen, timeout: float = 240) -> str:
    output, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, output[-3000:]
    return output


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            pytest.fail(f"training ended before {path.name} appeared:\n{proc.stdout.read()[-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"{path} did not appear within {timeout}s")
        time.sleep(0.1)


def weights(run: Path) -> dict[str, torch.Tensor]:
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 12 * 2  # 12 iterations of n_dis=1 D step + 1 G step
    return ckpt["state_dict"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, torch.Tensor]:
    out = tmp_path_factory.mktemp("reference")
    finish(start(out))
    return weights(out)


def assert_same_weights(run: Path, reference: dict[str, torch.Tensor]) -> None:
    resumed = weights(run)
    assert resumed.keys() == reference.keys()
    different = [k for k in reference if not torch.equal(resumed[k], reference[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"
    for prefix in ("generator.", "discriminator.", "generator_ema."):
        assert any(k.startswith(prefix) for k in reference), prefix


@pytest.mark.slow
def test_sigkill_after_checkpoint_then_resume_auto_matches_uninterrupted_run(tmp_path, reference):
    out = tmp_path / "run"
    proc = start(out, 3)  # pauses after iteration 3 (checkpoint iter_000003 written), mid-epoch
    wait_for(out / "paused", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert (out / "checkpoints" / "iter_000003.ckpt").is_file() and not (out / "summary.json").exists()
    rows_before = (out / "csv" / "metrics.csv").read_text().splitlines()

    output = finish(start(out))  # same directory, resume=auto (the default)
    assert f"Resuming from {out / 'checkpoints' / 'last.ckpt'}" in output
    assert_same_weights(out, reference)
    # Nothing written before the kill is lost: periodic checkpoints, samples, logged rows.
    for name in ("iter_000003.ckpt", "iter_000006.ckpt", "iter_000012.ckpt"):
        assert (out / "checkpoints" / name).is_file()
    assert (out / "samples" / "w0.25" / "iter_000002.png").is_file()
    with open(out / "csv" / "metrics.csv", newline="") as f:
        iterations = {float(r["iteration"]) for r in csv.DictReader(f) if r.get("iteration")}
    assert {1.0, 2.0, 3.0, 12.0} <= iterations and len(rows_before) > 1
    assert_linear_lr_decay(out)


def assert_linear_lr_decay(run: Path, lr: float = 2e-4, total: int = 12) -> None:
    """Every logged step, before and after the resume, ran at the official schedule's lr:
    iteration k (0-based; the log's ``iteration`` is k + 1) at lr * (1 - k / total)."""
    with open(run / "csv" / "metrics.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("train/lr_g")]
    assert {float(r["iteration"]) for r in rows} == {float(i) for i in range(1, total + 1)}
    for r in rows:
        k = float(r["iteration"]) - 1
        assert float(r["train/lr_g"]) == pytest.approx(lr * (1 - k / total), rel=1e-6), r
        assert float(r["train/lr_d"]) == pytest.approx(lr * (1 - k / total), rel=1e-6), r


@pytest.mark.slow
def test_sigterm_saves_at_the_next_iteration_and_exits_cleanly_then_resumes_exactly(tmp_path, reference):
    out = tmp_path / "run"
    proc = start(out, 3)
    wait_for(out / "paused", proc)
    proc.send_signal(signal.SIGTERM)
    output = finish(proc)  # exit status 0, no summary: the run is not finished
    assert "Stopped by a signal after 4 iterations" in output
    assert not (out / "summary.json").exists()
    assert torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 4 * 2

    output = finish(start(out))
    assert_same_weights(out, reference)
    summary = eval(output.split("SUMMARY", 1)[1].strip())  # the worker prints train()'s dict
    assert summary["resumed_at_iteration"] == 4 and summary["iterations"] == 12


def test_loader_resumes_mid_epoch_with_the_same_sequence():
    data = torch.utils.data.TensorDataset(torch.arange(20))
    full = resumable_loader(data, 4, seed=3)
    full.sampler.set_epoch(2)
    expected = [b[0].tolist() for b in full]
    assert sorted(sum(expected, [])) == list(range(20))

    first = resumable_loader(data, 4, seed=3)
    first.sampler.set_epoch(2)
    it = iter(first)
    consumed = [next(it)[0].tolist() for _ in range(2)]
    state = first.state_dict()
    assert state["epoch"] == 2 and state["consumed_batches"] == 2

    resumed = resumable_loader(data, 4, seed=3)
    resumed.load_state_dict(state)
    assert consumed + [b[0].tolist() for b in resumed] == expected
    assert len([b for b in resumed]) == 5  # the next pass is a whole epoch again
    other = resumable_loader(data, 4, seed=3)
    other.sampler.set_epoch(3)
    assert [b[0].tolist() for b in other] != expected  # a new permutation per epoch


def test_loader_resumed_after_an_epochs_last_batch_starts_the_next_epoch_whole():
    # A checkpoint written after the last batch holds the whole epoch as consumed; Lightning resumes with
    # set_epoch(epoch + 1). That epoch used to skip the old epoch's count too: an empty epoch, then epoch + 2.
    data = torch.utils.data.TensorDataset(torch.arange(20))
    first = resumable_loader(data, 4, seed=3)
    assert len(list(first)) == 5
    state = first.state_dict()
    assert state["epoch"] == 0 and state["consumed_batches"] == 5

    resumed = resumable_loader(data, 4, seed=3)
    resumed.load_state_dict(state)
    resumed.sampler.set_epoch(1)  # what Lightning's fit loop does next
    expected = resumable_loader(data, 4, seed=3)
    expected.sampler.set_epoch(1)
    assert [b[0].tolist() for b in resumed] == [b[0].tolist() for b in expected]


def test_resume_settings_are_checked(make_cfg, tmp_path):
    with pytest.raises(ConfigError, match=r"resume must be one of \('auto', 'never'\), got 'always'"):
        build(make_cfg("resume=always"))
    with pytest.raises(ConfigError, match=r"ckpt_path='/nonexistent.ckpt' is not a file"):
        build(make_cfg("ckpt_path=/nonexistent.ckpt"))
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert resume_checkpoint("auto", None, tmp_path) is None
    last.parent.mkdir()
    torch.save({"state_dict": {}, "hyper_parameters": {}, "global_step": 2}, last)
    assert resume_checkpoint("auto", None, tmp_path) == str(last)
    assert resume_checkpoint("never", None, tmp_path) is None
    assert resume_checkpoint("auto", str(last), "/elsewhere") == str(last)


# ----------------------------------------------------------------------------- signals at every point
# Tiny run in this process (one torch thread): n_dis 2, 48 images = 3 iterations per epoch, 8 iterations,
# a periodic checkpoint at 5, sample grids every 2, an in-training FID every 3, EMA and linear lr decay.
EXACT = [
    "debug=smoke",
    "trainer.accelerator=cpu",
    "trainer.enable_model_summary=false",
    "callbacks.progress_bar=null",
    "optim.n_dis=2",
    "data.limit=48",
    "train.g_steps=8",
    "train.checkpoint_every=5",
    "callbacks.sample_grid.n_samples=4",
    "callbacks.sample_grid.nrow=2",
    "+callbacks.fid._target_=slimgan_pl.callbacks.PerWidthFIDCallback",
    "+callbacks.fid.every_n_iterations=3",
    "+callbacks.fid.n_fake=8",
    "+callbacks.fid.n_real=8",
    "ema=default",
    "ema.start=2",
    "ema.decay=0.9",
    "optim.lr_decay=linear",
    "seed=5",
]


def exact_cfg(out: Path):
    from hydra import compose, initialize_config_dir

    from slimgan_pl.config import config_dir

    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose("config", overrides=[f"paths.output_dir={out}", *EXACT])


def train_in_process(out: Path, *callbacks) -> dict:
    """slimgan-train's train() in this process, with test callbacks appended, on one torch thread."""
    import slimgan_pl.train as train_module

    build, threads = train_module.build, torch.get_num_threads()

    def build_with(cfg):
        model, datamodule, trainer = build(cfg)
        trainer.callbacks.extend(callbacks)
        return model, datamodule, trainer

    train_module.build = build_with
    torch.set_num_threads(1)
    try:
        return train_module.train(exact_cfg(out))
    finally:
        train_module.build = build
        torch.set_num_threads(threads)


def same(a, b) -> bool:
    return torch.equal(a, b) if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) else a == b


def final_state(run: Path) -> dict[str, torch.Tensor]:
    """Every tensor that decides how training goes on: weights and buffers (EMA generator included),
    both Adam states, the RNG states; keyed by their place in the checkpoint."""
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 8 * 3  # 8 iterations of 2 D steps + 1 G step
    flat: dict[str, torch.Tensor] = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, torch.Tensor):
            flat[prefix] = value
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}", v)
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                walk(f"{prefix}.{i}", v)
        else:
            flat[prefix] = torch.tensor(float(value)) if isinstance(value, (int, float)) else value

    for key in ("state_dict", "optimizer_states", "rng_states"):
        walk(key, ckpt[key])
    assert any(k.startswith("state_dict.generator_ema.") for k in flat)
    return flat


@pytest.fixture(scope="module")
def exact_reference(tmp_path_factory) -> dict[str, torch.Tensor]:
    os.environ["SLIMGAN_METRICS_CACHE"] = str(tmp_path_factory.mktemp("feature_cache"))
    out = tmp_path_factory.mktemp("exact_reference")
    summary = train_in_process(out)
    assert summary["iterations"] == 8 and not summary.get("preempted")
    return final_state(out)


@pytest.mark.parametrize(
    "iteration, point, d_step, saved_at",
    [
        (4, "d_step", 1, 4),  # inside the first D step (before opt_d.step), no periodic checkpoint yet
        (3, "d_step", 2, 3),  # inside the last D step of the epoch's last iteration
        (4, "between", 0, 4),  # after the D steps, before the G step
        (4, "g_step", 0, 4),  # inside the G step (before opt_g.step)
        (5, "checkpoint", 0, 6),  # inside the periodic checkpoint's save (after the preemption check)
        (4, "sample_grid", 0, 5),  # inside a sample grid's rendering
        (3, "fid", 0, 4),  # inside the in-training FID evaluation
    ],
    ids=["d-step-1", "d-step-2-epoch-end", "between-d-and-g", "g-step", "checkpoint-write", "sample-grid", "fid"],
)
def test_sigterm_anywhere_in_an_iteration_resumes_bit_exactly(
    tmp_path, exact_reference, iteration, point, d_step, saved_at, capsys
):
    from helpers.signal_at import SignalAt

    out = tmp_path / "run"
    signal_at = SignalAt(iteration, point, d_step=max(d_step, 1))
    stopped = train_in_process(out, signal_at)
    assert signal_at.sent, f"the {point} point was never reached"
    assert stopped["preempted"] and stopped["iterations"] == saved_at, stopped
    assert f"preemption signal: saved {out / 'checkpoints' / 'last.ckpt'} at iteration {saved_at}; stopping" in (
        capsys.readouterr().out
    )
    assert torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == saved_at * 3

    resumed = train_in_process(out)
    assert resumed["resumed_at_iteration"] == saved_at and resumed["iterations"] == 8
    state = final_state(out)
    assert state.keys() == exact_reference.keys()
    different = [k for k in state if not same(state[k], exact_reference[k])]
    assert not different, f"{len(different)} values differ from the uninterrupted run, e.g. {different[:4]}"


def test_ddp_ranks_agree_on_a_signal_every_poll_every_iterations_only(tmp_path, monkeypatch):
    """Under DDP the agreement (a collective and a host sync) runs every poll_every iterations, at the
    same iterations on every rank; one process reads its flag after every iteration without any sync."""
    from types import SimpleNamespace

    from slimgan_pl.resume import PreemptionCheckpoint

    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    polls, saves = [], []
    module = SimpleNamespace(iteration=0)
    strategy = SimpleNamespace(reduce_boolean_decision=lambda flag, all: polls.append(module.iteration) or flag)
    trainer = SimpleNamespace(
        world_size=2,
        global_step=0,
        max_steps=-1,
        strategy=strategy,
        received_sigterm=False,
        is_global_zero=True,
        should_stop=False,
        save_checkpoint=lambda path: saves.append((module.iteration, path)),
    )
    callback = PreemptionCheckpoint(str(tmp_path), poll_every=4)
    for iteration in range(1, 13):
        module.iteration = iteration
        if iteration == 5:
            callback.received = signal.SIGTERM  # what the handler does
        callback.on_train_batch_end(trainer, module, None, None, 0)
        if trainer.should_stop:
            break
    assert polls == [4, 8] and saves == [(8, tmp_path / "last.ckpt")] and callback.preempted

    single = PreemptionCheckpoint(str(tmp_path), poll_every=4)
    trainer.world_size, trainer.should_stop, polls[:], saves[:] = 1, False, [], []
    module.iteration = 5
    single.received = signal.SIGTERM
    single.on_train_batch_end(trainer, module, None, None, 0)
    assert polls == [] and saves == [(5, tmp_path / "last.ckpt")] and trainer.should_stop
    with pytest.raises(ValueError, match=r"callbacks\.preemption\.poll_every must be an integer >= 1, got 0"):
        PreemptionCheckpoint(str(tmp_path), poll_every=0)
