"""``slimgan-eval CHECKPOINT [options]``: per-width evaluation of a SlimGAN checkpoint (the command line;
the metric library is :mod:`slimgan_pl.metrics.evaluation`).

Works for a checkpoint of any data module: the data config is read from the checkpoint (older
checkpoints: the run's ``config_resolved.yaml``), ``--data-root`` points it elsewhere. For every
width (or ``--widths``): G in eval mode with that width's BN statistics, the same fixed seed (hence
the same z at every width). With an EMA generator the numbers are the EMA generator's, with standing
BN statistics when ``ema.standing_batches`` > 0; ``metrics.json`` records which.

The feature network (backbone, :mod:`slimgan_pl.metrics.backbones`) is chosen per dataset and can
be overridden (``--backbone``):

* RGB datasets: Inception-v3 (torch-fidelity's TF-compatible port, local weights file), giving
  FID, IS, KID and mIC (keys ``fid``, ``is``, ``kid``);
* Fashion-MNIST: the project's classifier shipped with the package, giving FMNIST-FID, FMNIST-IS,
  FMNIST-KID, FMNIST-mIC (keys ``fmnist_fid`` ...), which are not Inception numbers.

Counts follow a protocol preset (``--protocol``, ``conf/eval/protocols.yaml``: ``slimgan``,
``cifar10_train50k``, ``fmnist``), written into metrics.json; ``--n-fake`` etc. override it.
A run's full evaluation (its dataset's default protocol at full counts) is ``metrics.json`` in the
run directory; any other protocol or count goes to ``metrics-<protocol>[-counts].json`` there (or
to ``--out``), so a quick evaluation never replaces the full one (``slimgan-pick`` reads
``metrics.json``).

Also: active parameters, MACs of one image (FlopCounterMode / 2), median CPU latency at batch 1
and 64; ``--truncation T ...`` scores every width with latents truncated at each threshold
(``truncation.png``); a sanity row compares two real splits. Real features are cached per
(dataset, split, size, count, backbone) with a ``mu``/``sigma`` statistics file next to them;
``--ref-stats FILE.npz`` uses published statistics instead (FID only).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from slimgan_pl.choices import BACKBONES, CACHE_ENV_VAR, DEFAULT_CACHE_DIR, protocol_names
from slimgan_pl.cli import cli_main

if TYPE_CHECKING:
    from slimgan_pl.metrics.evaluation import evaluate_checkpoint, extract, real_features

# The library names that callers of ``slimgan_pl.evaluate`` (tests, experiments) import from here, loaded
# on first use (with torch): --help answers without them.
__all__ = ["evaluate_checkpoint", "extract", "main", "parse_args", "real_features", "run"]
_LIBRARY = {"evaluate_checkpoint", "extract", "real_features"}


def __getattr__(name: str) -> Any:
    if name in _LIBRARY:
        from slimgan_pl.metrics import evaluation

        return getattr(evaluation, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def eval_errors() -> tuple[type[BaseException], ...]:
    """The errors slimgan-eval reports in one line (their modules load torch)."""
    from slimgan_pl.checkpoint import CheckpointError
    from slimgan_pl.data.fashion_mnist import DataNotFoundError
    from slimgan_pl.metrics.fmnist_classifier import ClassifierCacheError
    from slimgan_pl.metrics.inception import InceptionWeightsError

    return (
        CheckpointError,
        ClassifierCacheError,
        InceptionWeightsError,
        DataNotFoundError,
        FileNotFoundError,
        ValueError,
    )


# ----------------------------------------------------------------------------- CLI
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="slimgan-eval",
        description="Evaluate every width of a SlimGAN checkpoint "
        "(FID/IS/KID/mIC with Inception-v3 for RGB data, FMNIST-FID/IS/KID/mIC with the "
        "project's classifier for Fashion-MNIST; params, MACs, CPU latency).",
    )
    p.add_argument("checkpoint", help="Lightning checkpoint, e.g. outputs/<run>/checkpoints/last.ckpt")
    p.add_argument(
        "--widths",
        type=float,
        nargs="+",
        default=None,
        help="subset of the trained widths; any widths in slim.range for a universal model",
    )
    p.add_argument(
        "--protocol",
        default=None,
        choices=protocol_names(),
        help="counts preset (conf/eval/protocols.yaml); default: fmnist for Fashion-MNIST, else slimgan",
    )
    p.add_argument("--n-fake", type=int, default=None, help="fakes per width for FID/KID/mIC (default: protocol)")
    p.add_argument("--n-real", type=int, default=None, help="real images of --split (default: protocol)")
    p.add_argument("--is-n-fake", type=int, default=None, help="fakes per width for IS (default: protocol)")
    p.add_argument("--split", default=None, help="real split (default: protocol; train | test | ...)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root", default=None, help="dataset folder (default: the one in the checkpoint's config)")
    p.add_argument(
        "--backbone",
        default="auto",
        choices=("auto", *BACKBONES),
        help="feature network (auto: fmnist_classifier for Fashion-MNIST, inception otherwise)",
    )
    p.add_argument(
        "--inception-weights",
        default=None,
        help="Inception-v3 weights file (default "
        "$SLIMGAN_INCEPTION_WEIGHTS or torch-fidelity's cache weights-inception-2015-12-05-6726825d.pth)",
    )
    p.add_argument(
        "--classifier",
        default=None,
        help="FMNIST classifier file (default $SLIMGAN_FMNIST_CLASSIFIER or the file shipped with the package)",
    )
    p.add_argument(
        "--ref-stats",
        default=None,
        help="reference statistics .npz (mu, sigma) instead of real images (FID only; torch-fidelity / TTUR format)",
    )
    p.add_argument(
        "--cache-dir", default=None, help=f"real-feature cache (default ${CACHE_ENV_VAR} or {DEFAULT_CACHE_DIR})"
    )
    p.add_argument(
        "--out",
        default=None,
        help="output folder, files metrics.json/.md (default: the run directory, "
        "metrics.json for the full default protocol, metrics-<protocol>-<counts>.json otherwise)",
    )
    p.add_argument("--is-splits", type=int, default=None)
    p.add_argument("--kid-subsets", type=int, default=None)
    p.add_argument("--kid-subset-size", type=int, default=None)
    p.add_argument("--latency-batches", type=int, nargs="+", default=[1, 64])
    p.add_argument("--latency-repeats", type=int, default=20, help="timed forwards per width and round")
    p.add_argument("--latency-warmup", type=int, default=3)
    p.add_argument(
        "--latency-threads", type=int, default=1, help="torch threads of the latency timing (default 1; slimgan-pick)"
    )
    p.add_argument("--batch-size", type=int, default=500, help="batch for sampling and feature extraction")
    p.add_argument("--device", default=None, help="device for sampling and features (default: cuda if available)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--no-sanity", action="store_true", help="skip the real-vs-real sanity row")
    p.add_argument(
        "--truncation",
        type=float,
        nargs="+",
        default=None,
        metavar="T",
        help="also score FID/IS per width with |z| > T resampled, for each threshold T, "
        "and plot IS against FID (truncation.png)",
    )
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """slimgan-eval with parsed arguments."""
    import torch

    from slimgan_pl.metrics.evaluation import evaluate_checkpoint

    if args.threads:
        torch.set_num_threads(args.threads)
    return evaluate_checkpoint(
        args.checkpoint,
        widths=args.widths,
        protocol=args.protocol,
        n_fake=args.n_fake,
        n_real=args.n_real,
        is_n_fake=args.is_n_fake,
        split=args.split,
        seed=args.seed,
        data_root=args.data_root,
        backbone=args.backbone,
        classifier_path=args.classifier,
        inception_weights=args.inception_weights,
        ref_stats=args.ref_stats,
        cache_dir=args.cache_dir,
        out_dir=args.out,
        is_splits=args.is_splits,
        kid_subsets=args.kid_subsets,
        kid_subset_size=args.kid_subset_size,
        latency_batches=args.latency_batches,
        latency_repeats=args.latency_repeats,
        latency_warmup=args.latency_warmup,
        latency_threads=args.latency_threads,
        batch_size=args.batch_size,
        device=args.device,
        sanity=not args.no_sanity,
        truncation=args.truncation,
    )


@cli_main("slimgan-eval")  # --debug for the traceback (slimgan_pl/cli.py)
def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        run(args)
    except eval_errors() as e:
        print(f"slimgan-eval: error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
