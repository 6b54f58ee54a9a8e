"""Model zoo: active parameters and MACs per image of every generator architecture at every width.

Every preset in ``conf/model/*.yaml`` (its ngf/nz/... as configured, RGB images, ``${data.num_classes}``
= ``--num-classes`` for presets that read it: class-conditional ones) is built at each width of
``--widths``; archs of the ``GENERATORS`` registry that no preset uses are built with their
constructor defaults and marked so. New archs and presets appear without changes here.

Figures (random weights; they do not depend on the weights) come from
:mod:`slimgan_pl.metrics.cost`: ``active_parameters`` (the width's weight slices, its own BNs) and
``generator_macs`` (``torch.utils.flop_counter``: conv, transposed conv and matmul MACs of one image;
normalisation and activations not counted). Writes ``<out>.md`` and ``<out>.json``, prints the table.

    python experiments/model_zoo.py [--widths 0.25 0.5 0.75 1.0] [--models sndcgan32 ...]
        [--out experiments/results/model_zoo]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from slimgan_pl.config import config_dir
from slimgan_pl.metrics.cost import active_parameters, generator_macs
from slimgan_pl.models import GENERATORS, build_generator

WIDTHS = [0.25, 0.5, 0.75, 1.0]
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "model_zoo"


def model_presets(num_classes: int, img_channels: int = 3) -> dict[str, dict[str, Any]]:
    """``{preset name: generator kwargs incl. arch}`` of conf/model/*.yaml, with the data-dependent
    interpolations (``${data.img_channels}``, ``${data.num_classes}``) filled in."""
    presets = {}
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):  # a preset may extend another
        for path in sorted(Path(config_dir(), "model").glob("*.yaml")):
            cfg = compose(
                "config",
                overrides=[
                    f"model={path.stem}",
                    f"data.img_channels={img_channels}",
                    f"data.num_classes={num_classes}",
                ],
            )
            presets[path.stem] = OmegaConf.to_container(cfg.model.generator, resolve=True)
    for arch in sorted(set(GENERATORS) - {g["arch"] for g in presets.values()}):
        presets[arch] = {"arch": arch, "img_channels": img_channels, "defaults": True}
    return presets


@torch.no_grad()
def zoo_rows(presets: dict[str, dict[str, Any]], widths: Sequence[float]) -> list[dict[str, Any]]:
    rows = []
    for name, kwargs in presets.items():
        kwargs = dict(kwargs)
        arch, defaults = kwargs.pop("arch"), kwargs.pop("defaults", False)
        torch.manual_seed(0)
        generator = build_generator(arch, widths, **kwargs)
        for w in widths:
            params, macs = active_parameters(generator, w), generator_macs(generator, w, generator.nz)
            rows.append(
                {
                    "model": name,
                    "arch": arch,
                    "img_size": generator.img_size,
                    "num_classes": generator.num_classes,
                    "ngf": kwargs.get("ngf"),
                    "constructor_defaults": defaults,
                    "width": w,
                    "params": params,
                    "macs": macs,
                }
            )
        top = rows[-1]
        for row in rows[-len(widths) :]:
            row["macs_vs_widest"] = row["macs"] / top["macs"]
    return rows


def markdown(rows: list[dict[str, Any]], widths: Sequence[float]) -> str:
    head = ["model", "arch", "image", "ngf"] + [f"params {w}x (M)" for w in widths] + [f"MACs {w}x (M)" for w in widths]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in dict.fromkeys(r["model"] for r in rows):
        group = [r for r in rows if r["model"] == name]
        first = group[0]
        label = name + (" (cond., %d classes)" % first["num_classes"] if first["num_classes"] else "")
        label += " (no preset: constructor defaults)" if first["constructor_defaults"] else ""
        size = f"{first['img_size']}x{first['img_size']}"
        lines.append(
            "| "
            + " | ".join(
                [label, first["arch"], size, str(first["ngf"] or "default")]
                + [f"{r['params'] / 1e6:.2f}" for r in group]
                + [f"{r['macs'] / 1e6:.1f}" for r in group]
            )
            + " |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--widths", type=float, nargs="+", default=WIDTHS)
    parser.add_argument("--models", nargs="+", help="preset names (conf/model/<name>.yaml) or archs; default: all")
    parser.add_argument("--num-classes", type=int, default=10, help="classes of conditional presets (CIFAR-10: 10)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="writes <out>.md and <out>.json")
    args = parser.parse_args(argv)
    presets = model_presets(args.num_classes)
    if args.models:
        unknown = sorted(set(args.models) - set(presets))
        if unknown:
            parser.error(f"--models: unknown {unknown}; choose from {sorted(presets)}")
        presets = {k: v for k, v in presets.items() if k in args.models}
    rows = zoo_rows(presets, args.widths)
    table = markdown(rows, args.widths)
    intro = (
        "Generator cost per width: active parameters (the width's weight slices and its own BNs) and "
        "MACs of one image (torch.utils.flop_counter: conv, transposed conv, matmul), RGB, "
        "presets of conf/model/. Regenerate: `python experiments/model_zoo.py`.\n\n"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text("# Model zoo\n\n" + intro + table)
    args.out.with_suffix(".json").write_text(json.dumps({"widths": args.widths, "rows": rows}, indent=2) + "\n")
    print(table, end="")
    print(f"\nwritten: {args.out.with_suffix('.md')}, {args.out.with_suffix('.json')}")
    return rows


if __name__ == "__main__":
    main()
