"""The README's top picture from the demo's committed sample grids: one row per width, the same z in every
column (the sample-grid callback draws the same z at every width), 12 columns, 2x nearest-neighbour so the
README shows it at its own size, sharp, without the browser upscaling a 274-px image.

    python scripts/readme_picture.py   # -> experiments/results/fmnist_demo/widths_readme.png
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

RESULTS = Path(__file__).resolve().parents[1] / "experiments" / "results" / "fmnist_demo"
WIDTHS = ("0.25", "0.5", "0.75", "1.0")
ITERATION = 1500
PAD, TILE, NROW = 2, 32, 8  # torchvision make_grid's padding; 32-px images; the per-width grids are 8 x 8
COLUMNS, SCALE = 12, 2


def tiles(grid: np.ndarray) -> list[np.ndarray]:
    """The images of a make_grid picture, row by row."""
    step = TILE + PAD
    return [
        grid[PAD + r * step : PAD + r * step + TILE, PAD + c * step : PAD + c * step + TILE]
        for r in range(NROW)
        for c in range(NROW)
    ]


def main() -> Path:
    rows = []
    for width in WIDTHS:
        grid = np.asarray(Image.open(RESULTS / f"w{width}_iter_{ITERATION:06d}.png").convert("L"))
        rows.append(tiles(grid)[:COLUMNS])
    step = TILE + PAD
    canvas = np.zeros((PAD + len(rows) * step, PAD + COLUMNS * step), dtype=np.uint8)
    for r, images in enumerate(rows):
        for c, image in enumerate(images):
            canvas[PAD + r * step : PAD + r * step + TILE, PAD + c * step : PAD + c * step + TILE] = image
    out = RESULTS / "widths_readme.png"
    Image.fromarray(canvas.repeat(SCALE, 0).repeat(SCALE, 1)).save(out, optimize=True)
    return out


if __name__ == "__main__":
    path = main()
    print(f"wrote {path} {Image.open(path).size}")
