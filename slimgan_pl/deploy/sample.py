"""``slimgan-sample CHECKPOINT --width W -n N [outputs]``: images from a SlimGAN checkpoint at one width.

Outputs (any combination, at least one): ``--grid samples.png`` (torchvision grid), ``--folder DIR``
(one PNG per image), ``--npz samples.npz`` (``images`` uint8 (N, H, W, C), ``labels`` int64 (N,)
with -1 for unconditional models, ``width``, ``seed``, ``truncation`` (NaN if none), ``weights``,
``bn_statistics``). The generator normalises with the BN statistics ``slimgan-eval`` and
``slimgan-export`` use (standing statistics of the EMA generator when the run uses them; see
:mod:`slimgan_pl.inference`), so the same z gives the same images in all three tools.
The same checkpoint, seed, width, truncation and weights give the same images; the same seed gives
the same latents at every width, as :meth:`SlimGAN.sample`. Class-conditional models take
``--labels``/``--class-id``, or draw uniform labels from the seeded stream when neither is given.

The command line lives here, the library in :mod:`slimgan_pl.deploy.images`; every name of the library is
importable from this module too, loaded on first use so that ``slimgan-sample --help`` answers before
torch loads.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from slimgan_pl.choices import WEIGHTS
from slimgan_pl.cli import cli_main
from slimgan_pl.deploy.common import fail, library_attribute

PROG = "slimgan-sample"


def __getattr__(name: str) -> Any:
    return library_attribute(__name__, "slimgan_pl.deploy.images", name)  # the library (torch), on first use


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=PROG, description="Generate images from a SlimGAN checkpoint at one width.")
    p.add_argument("checkpoint", help="Lightning checkpoint, e.g. outputs/<run>/checkpoints/last.ckpt")
    p.add_argument("-n", "--num", type=int, default=64, help="number of images (default 64)")
    p.add_argument(
        "--width",
        type=float,
        default=None,
        help="a trained width, or any width in slim.range of a universal model (default: the widest)",
    )
    p.add_argument(
        "--labels",
        default=None,
        help="class ids, comma-separated, repeated to fill -n "
        "(class-conditional models only; default: uniform random labels from --seed)",
    )
    p.add_argument("--class-id", type=int, default=None, help="one class id for every image (conditional models)")
    p.add_argument(
        "--truncation",
        type=float,
        default=None,
        help="resample latent entries with |z| above this threshold (default: no truncation)",
    )
    p.add_argument("--seed", type=int, default=0, help="latent seed (default 0)")
    p.add_argument(
        "--weights",
        choices=WEIGHTS,
        default="auto",
        help="EMA or live generator weights (default auto: EMA when the checkpoint has it)",
    )
    p.add_argument("--grid", default=None, help="write a PNG grid here")
    p.add_argument("--nrow", type=int, default=None, help="images per grid row (default: ceil(sqrt(n)))")
    p.add_argument("--folder", default=None, help="write one PNG per image into this folder")
    p.add_argument("--npz", default=None, help="write uint8 images (N, H, W, C), labels, width, seed here")
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    return p.parse_args(argv)


@cli_main("slimgan-sample")  # one-line errors, --debug for the traceback (slimgan_pl/cli.py)
def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    from slimgan_pl.checkpoint import CheckpointError
    from slimgan_pl.deploy.images import parse_labels, sample_checkpoint

    try:
        labels = parse_labels(args.labels, args.class_id, args.num)
        summary = sample_checkpoint(
            args.checkpoint,
            n=args.num,
            width=args.width,
            labels=labels,
            seed=args.seed,
            truncation=args.truncation,
            weights=args.weights,
            grid=args.grid,
            folder=args.folder,
            npz=args.npz,
            nrow=args.nrow,
            batch_size=args.batch_size,
            device=args.device,
        )
    except (CheckpointError, ValueError) as e:
        fail(PROG, e)
    for note in summary["notes"]:
        print(note)
    print(
        f"{summary['n']} images at width {summary['width']} ({summary['weights']} weights, seed "
        f"{summary['seed']}, BN {summary['bn_statistics']} statistics) -> {', '.join(summary['outputs'])}"
    )


if __name__ == "__main__":
    main()
