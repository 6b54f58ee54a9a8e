"""What the command-line tools offer as choices (argparse ``choices`` and help text), in a module that
imports no torch: every tool's ``--help`` answers before torch, Lightning and the models load (about 5 s).
The modules that use these names import them from here (and keep exporting them)."""

from __future__ import annotations

from pathlib import Path

BACKBONES = ("inception", "fmnist_classifier")  # slimgan_pl.metrics.backbones: feature networks of the metrics
WEIGHTS = ("auto", "ema", "live")  # slimgan_pl.inference: which generator weights to sample with
EXPORT_FORMATS = ("state_dict", "torchscript", "onnx")  # slimgan_pl.deploy.dense: files slimgan-export writes
CACHE_ENV_VAR = "SLIMGAN_METRICS_CACHE"  # slimgan_pl.metrics.reference: the real-feature cache
DEFAULT_CACHE_DIR = Path("~/.cache/slimgan_pl/real_features")


def protocols_file() -> dict:
    """conf/eval/protocols.yaml: the evaluation presets."""
    import yaml

    from slimgan_pl.config import config_dir

    return yaml.safe_load((Path(config_dir()) / "eval" / "protocols.yaml").read_text())


def protocol_names() -> list[str]:
    """The evaluation presets (``slimgan-eval --protocol``)."""
    return sorted(protocols_file()["protocols"])
