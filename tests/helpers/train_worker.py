"""Run slimgan-train's ``train()`` in a subprocess for the resume/preemption tests.

Usage: python tests/helpers/train_worker.py OUTPUT_DIR PAUSE_AT [override ...]

PAUSE_AT > 0: before the iteration after PAUSE_AT completed iterations (its checkpoint is on disk),
write OUTPUT_DIR/paused and sleep in short steps for up to a minute, so the test can kill or signal
the process at a known point. Every phase runs in such a process with one thread, so the reference
and the resumed runs do the same arithmetic.

PAUSE_IN_SAVE_AT_STEP=N (environment): the save of the checkpoint with Lightning global_step N writes
half of its bytes, then writes OUTPUT_DIR/saving and sleeps, so the test can kill the run inside a save.
"""

import io
import os
import sys
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir

import slimgan_pl.train as train_module
from slimgan_pl.config import config_dir, register_resolvers


class PauseAfter(pl.Callback):
    def __init__(self, out: Path, iteration: int) -> None:
        self.out, self.iteration = out, iteration

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if pl_module.iteration == self.iteration and not (self.out / "paused").exists():
            (self.out / "paused").write_text(str(self.iteration))
            for _ in range(600):  # a signal handler only sets a flag: keep the loop going after it
                time.sleep(0.1)
                if trainer.received_sigterm or any(getattr(c, "received", None) for c in trainer.callbacks):
                    return


def pause_inside_save(out: Path, step: int) -> None:
    real_save = torch.save

    def slow_save(obj, f, *args, **kwargs):
        if isinstance(obj, dict) and obj.get("global_step") == step and not isinstance(f, io.BytesIO):
            data = io.BytesIO()
            real_save(obj, data, *args, **kwargs)
            f.write(data.getvalue()[: len(data.getvalue()) // 2])
            f.flush()
            (out / "saving").write_text(str(step))
            time.sleep(120)
        return real_save(obj, f, *args, **kwargs)

    torch.save = slow_save


def main() -> None:
    torch.set_num_threads(1)
    out, pause_at, overrides = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
    if os.environ.get("PAUSE_IN_SAVE_AT_STEP"):
        pause_inside_save(out, int(os.environ["PAUSE_IN_SAVE_AT_STEP"]))
    register_resolvers()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("config", overrides=[f"paths.output_dir={out}", *overrides])
    build = train_module.build

    def build_with_pause(cfg):
        model, datamodule, trainer = build(cfg)
        if pause_at > 0:
            trainer.callbacks.insert(0, PauseAfter(out, pause_at))
        return model, datamodule, trainer

    train_module.build = build_with_pause
    summary = train_module.train(cfg)
    print("SUMMARY", summary)


if __name__ == "__main__":
    main()
