"""Test-only callback (importable from SLURM jobs via PYTHONPATH): sleep after every iteration, so a
test can act while a short job is still running."""

import time

import pytorch_lightning as pl


class SlowIterations(pl.Callback):
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_train_batch_end(self, *args, **kwargs) -> None:
        time.sleep(self.seconds)
