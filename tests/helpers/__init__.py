"""Shared test helpers: workers that tests run as subprocesses (``python tests/helpers/train_worker.py``) and
callbacks that SLURM jobs import (``helpers.slow_iterations.SlowIterations``, with tests/ on PYTHONPATH)."""
