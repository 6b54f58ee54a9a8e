"""``slimgan-export CHECKPOINT --width W``: cut the slimmable generator at one width into a dense model
(how the cut works, the files and their inputs: :mod:`slimgan_pl.deploy.dense`).

The command line lives here, the library in :mod:`slimgan_pl.deploy.dense`; every name of the library is
importable from this module too (``from slimgan_pl.deploy.export import load_dense``), loaded on first use
so that ``slimgan-export --help`` answers before torch loads.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from slimgan_pl.choices import EXPORT_FORMATS as FORMATS
from slimgan_pl.choices import WEIGHTS
from slimgan_pl.cli import cli_main
from slimgan_pl.deploy.common import fail, library_attribute

PROG = "slimgan-export"


def __getattr__(name: str) -> Any:
    return library_attribute(__name__, "slimgan_pl.deploy.dense", name)  # the library (torch), on first use


# ----------------------------------------------------------------------------- CLI
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Cut a SlimGAN generator at one width into a dense model (state dict, TorchScript, ONNX).",
    )
    p.add_argument("checkpoint", help="Lightning checkpoint, e.g. outputs/<run>/checkpoints/last.ckpt")
    p.add_argument(
        "--width", type=float, required=True, help="a trained width, or any width in slim.range (universal model)"
    )
    p.add_argument("--out", default=None, help="output folder (default: <run dir>/export)")
    p.add_argument("--name", default=None, help="file stem (default: <arch>_w<width>)")
    p.add_argument("--formats", nargs="+", default=list(FORMATS), help=f"any of {list(FORMATS)} (default: all)")
    p.add_argument(
        "--weights",
        choices=WEIGHTS,
        default="auto",
        help="EMA or live generator weights (default auto: EMA when the checkpoint has it)",
    )
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: torch's choice)")
    return p.parse_args(argv)


@cli_main("slimgan-export")  # one-line errors, --debug for the traceback (slimgan_pl/cli.py)
def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    from slimgan_pl.checkpoint import CheckpointError, load_slimgan, run_directory
    from slimgan_pl.deploy.dense import ExportError, check_files, export_files, export_model

    try:
        bad = [f for f in args.formats if f not in FORMATS]
        if bad:
            raise ValueError(f"--formats must be among {list(FORMATS)}, got {bad}")
        model = load_slimgan(args.checkpoint)
        model.generator.check_width(args.width)
        dense = export_model(model, args.width, args.weights, source=str(Path(args.checkpoint).resolve()))
        out = Path(args.out) if args.out else run_directory(args.checkpoint) / "export"
        stem = args.name or f"{dense.meta['arch']}_w{dense.width}"
        written = export_files(dense, out, stem, args.formats, args.opset)
        diffs = check_files(dense, written)
    except (CheckpointError, ExportError, ValueError) as e:
        fail(PROG, e)
    for fmt, paths in written.items():
        diff = diffs.get(fmt)
        check = "not checked (onnxruntime missing)" if diff is None else f"max abs diff {diff:.2e}"
        print(f"{fmt}: {', '.join(str(p) for p in paths)} ({check})")
    for note in dense.meta.get("notes", []):
        print(note)
    print(
        f"width {dense.width} ({dense.meta['weights']} weights, BN {dense.meta['bn_statistics']} statistics) "
        f"of {dense.meta['arch']}; "
        f"load with slimgan_pl.deploy.export.load_dense or torch.jit.load / onnxruntime"
    )


if __name__ == "__main__":
    main()
