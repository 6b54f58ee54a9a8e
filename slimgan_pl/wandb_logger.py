"""Lightning's wandb logger with the per-width metrics arranged by metric, for the dashboard only.

The module and the callbacks log one key per metric and width (``train/d_loss_w0.25``,
``val/fmnist_fid_w0.25``, ``eval/fmnist_fid_w0.25``); the CSV log keeps these names (``slimgan-collect``
and the reproduction study read them). wandb puts a key's panel in the section named by the part before
the first ``/`` and draws one chart per key, so these names would scatter one metric over four charts
among unrelated ones. :class:`WidthWandbLogger` renames them on the way to wandb only:

* ``train/d_loss_w0.25`` -> ``d_loss/w0.25``, ``val/fmnist_fid_w0.25`` -> ``fmnist_fid/w0.25``,
  ``eval/fmnist_fid_w0.25`` -> ``eval_fmnist_fid/w0.25``: one section per metric, the widths side by side;
* one chart per metric with the widths as its lines: ``widths/d_loss``, ``widths/fmnist_fid``, ... (a
  ``wandb.plot.line_series`` custom chart over SlimGAN iterations, redrawn from the whole history at every
  evaluation row, every ``chart_every_n_steps`` logging steps and at the end of training), and
  ``widths/eval_fmnist_fid``: the final FID against the width.

wandb's SDK has no other way to put several keys in one chart (``define_metric`` sets a key's x axis and
summary, not its chart; multi-key line plots are made in the web UI or with the online-only workspace API);
a custom chart is a table plus a chart spec, written to the offline run like any other record.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities import rank_zero_only

# <stage>/<metric>_<width tag>: w0.25, w1.0; wmin/wmax in universal mode.
PER_WIDTH_KEY = re.compile(r"^(?P<stage>train|val|eval)/(?P<metric>.+)_(?P<width>w(?:\d+(?:\.\d+)?|min|max))$")
CHART_SECTION = "widths"


def wandb_metric_name(key: str) -> tuple[str, str | None, str | None]:
    """(the name wandb gets, the metric's chart name, the width tag) of a logged key; per-width keys
    become ``<metric>/<width>`` (``eval_<metric>/<width>`` after training), others stay as they are
    with no chart."""
    match = PER_WIDTH_KEY.match(key)
    if match is None:
        return key, None, None
    metric = match["metric"] if match["stage"] != "eval" else f"eval_{match['metric']}"
    return f"{metric}/{match['width']}", metric, match["width"]


def _width_order(tag: str) -> float:
    """w0.25 -> 0.25; wmin first, wmax last."""
    special = {"wmin": float("-inf"), "wmax": float("inf")}
    return special[tag] if tag in special else float(tag[1:])


def thinned(points: list[tuple[float, float]], max_points: int) -> list[tuple[float, float]]:
    """At most ``max_points`` of ``points``, evenly spaced, the first and the last kept."""
    if len(points) <= max_points:
        return points
    keep = np.unique(np.linspace(0, len(points) - 1, max_points).round().astype(int))
    return [points[i] for i in keep]


class WidthWandbLogger(WandbLogger):
    """:class:`~pytorch_lightning.loggers.WandbLogger` with the per-width names of this module's docstring.

    ``chart_every_n_steps``: logging steps between redraws of the per-metric charts (besides evaluation
    rows and the end of training); 0 draws them only then. Each redraw writes a new table of the metric's
    history, thinned to ``chart_points`` points per width (the ``<metric>/<width>`` panels keep every
    logged value): at most 4 * 200 rows per metric and redraw, about 25 kB.
    """

    def __init__(self, *args: Any, chart_every_n_steps: int = 500, chart_points: int = 200, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if chart_every_n_steps < 0:
            raise ValueError(f"logger.wandb.chart_every_n_steps must be >= 0, got {chart_every_n_steps}")
        if chart_points < 2:
            raise ValueError(f"logger.wandb.chart_points must be >= 2, got {chart_points}")
        self.chart_every_n_steps, self.chart_points = chart_every_n_steps, chart_points
        # metric -> width tag -> [(iteration, value)]
        self._history: dict[str, dict[str, list[tuple[float, float]]]] = {}
        self._last_chart_step = 0
        self._charted_rows = 0  # history rows already drawn: no redraw when nothing is new

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        renamed: dict[str, Any] = {}
        evaluation_row = False
        final: dict[str, dict[str, float]] = {}  # eval/ metric -> width tag -> value
        # The module and the FID callback log the SlimGAN iteration in the same row; their step is
        # Lightning's 0-based batch counter.
        iteration = float(metrics.get("iteration", (step or 0) + 1))
        for key, value in metrics.items():
            name, metric, width = wandb_metric_name(key)
            renamed[name] = value
            if metric is None or not _is_number(value):
                continue
            if key.startswith("eval/"):
                final.setdefault(metric, {})[width] = float(value)
                continue
            evaluation_row |= key.startswith("val/")
            self._history.setdefault(metric, {}).setdefault(width, []).append((iteration, float(value)))
        super().log_metrics(renamed, step)
        every = self.chart_every_n_steps
        if evaluation_row or (every > 0 and step is not None and step - self._last_chart_step >= every):
            if step is not None:
                self._last_chart_step = step
            self.log_width_charts(step)
        if final:
            self._log_final_charts(final, step)

    @rank_zero_only
    def log_width_charts(self, step: int | None = None) -> None:
        """One line-series chart per metric, ``widths/<metric>``: x the SlimGAN iteration, one line per width."""
        rows = sum(len(points) for widths in self._history.values() for points in widths.values())
        if rows == self._charted_rows:
            return
        self._charted_rows = rows
        import wandb

        charts = {}
        for metric, widths in self._history.items():
            tags = sorted(widths, key=_width_order)
            series = [thinned(widths[t], self.chart_points) for t in tags]
            charts[f"{CHART_SECTION}/{metric}"] = wandb.plot.line_series(
                xs=[[x for x, _ in points] for points in series],
                ys=[[y for _, y in points] for points in series],
                keys=tags,
                title=f"{metric} per width",
                xname="iteration",
                split_table=True,  # its data table in wandb's "Custom Chart Tables" section, not beside the chart
            )
        super().log_metrics(charts, step)

    def _log_final_charts(self, final: dict[str, dict[str, float]], step: int | None) -> None:
        """``widths/eval_<metric>``: the evaluation after training against the width."""
        import wandb

        charts = {}
        for metric, values in final.items():
            widths = sorted((_width_order(t), v) for t, v in values.items())
            table = wandb.Table(data=[[w, v] for w, v in widths], columns=["width", metric])
            charts[f"{CHART_SECTION}/{metric}"] = wandb.plot.line(
                table, "width", metric, title=f"{metric} vs width", split_table=True
            )
        super().log_metrics(charts, step)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        if self._experiment is not None:
            self.log_width_charts()  # the last points
        super().finalize(status)


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True
