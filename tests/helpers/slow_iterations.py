"""Test-only callbacks (importable from SLURM jobs via PYTHONPATH): sleep after every iteration, or hold
a run at one iteration until a file appears, so a test can act while a short job is still running."""

import time

import pytorch_lightning as pl


class SlowIterations(pl.Callback):
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_train_batch_end(self, *args, **kwargs) -> None:
        time.sleep(self.seconds)


class HoldAt(pl.Callback):
    """After iteration ``iteration``: write ``<folder>/held``, then wait (up to ``limit_s``) until
    ``<folder>/release`` exists, so a test acts while the run is certainly still training."""

    def __init__(self, iteration: int, folder: str, limit_s: float = 300.0) -> None:
        self.iteration, self.folder, self.limit_s = iteration, folder, limit_s

    def on_train_batch_end(self, trainer, pl_module, *args, **kwargs) -> None:
        from pathlib import Path

        folder = Path(self.folder)
        if pl_module.iteration == self.iteration:
            (folder / "held").write_text(str(self.iteration))
            deadline = time.monotonic() + self.limit_s
            while not (folder / "release").exists() and time.monotonic() < deadline:
                time.sleep(0.1)
