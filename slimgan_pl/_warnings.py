"""Third-party console messages that are known to be harmless for this suite, silenced in one place.

Each filter names the message and the module that emits it, so anything else (a new warning from the
same module, the same words from our code) still shows.
"""

from __future__ import annotations

import logging
import warnings

# (message regex, module regex, category, why it is harmless here)
WARNING_FILTERS: tuple[tuple[str, str, type[Warning], str], ...] = (
    (
        r"The `srun` command is available on your system but is not used",
        r"lightning_fabric\.plugins\.environments\.slurm",
        Warning,
        "SLURM jobs are started by hydra/launcher=slurm (submitit), not by prefixing srun",
    ),
    (
        r"Using ModelCheckpoint with manual optimization and every_n_train_steps",
        r"pytorch_lightning\.callbacks\.model_checkpoint",
        Warning,
        "checkpoints are taken at iteration boundaries (every_n_train_steps is a multiple of n_dis + 1), "
        "after the G step: the post-optimization state is the one to save",
    ),
    (
        r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        r"pytorch_lightning\.utilities\._pytree",
        FutureWarning,
        "Lightning's own use of a torch API; nothing for a user to change",
    ),
)

# Lightning's advertisement for its hosted logger (an info record, not a warning).
LOG_FILTERS: tuple[tuple[str, str], ...] = (("pytorch_lightning.utilities.rank_zero", "try installing [litlogger]"),)


class _DropMessages(logging.Filter):
    def __init__(self, fragments: list[str]) -> None:
        super().__init__()
        self.fragments = fragments

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(fragment in message for fragment in self.fragments)


def silence_third_party_noise() -> None:
    """Install the filters above (idempotent); called by ``slimgan-train`` before anything is built."""
    for message, module, category, _why in WARNING_FILTERS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)
    by_logger: dict[str, list[str]] = {}
    for logger_name, fragment in LOG_FILTERS:
        by_logger.setdefault(logger_name, []).append(fragment)
    for logger_name, fragments in by_logger.items():
        logger = logging.getLogger(logger_name)
        if not any(isinstance(f, _DropMessages) for f in logger.filters):
            logger.addFilter(_DropMessages(fragments))
