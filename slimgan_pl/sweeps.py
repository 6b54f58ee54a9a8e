"""Collect a sweep's runs into one table: ``slimgan-collect MULTIRUN_DIR``.

One row per run directory of a Hydra multirun (``<sweep dir>/<job number>/``): the swept keys (the
run's command-line overrides that differ between runs, from ``.hydra/overrides.yaml``), its status
and iterations, then per width the FMNIST-FID of the evaluation after training (``summary.json`` /
``metrics.json``), the last FMNIST-FID logged during training (``csv/metrics.csv``, callbacks.fid)
and the final D/G losses. Other scripts import :func:`collect_runs`, :func:`format_table` and
:func:`write_tables`.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from slimgan_pl.cli import cli_main

WIDTH_KEY = re.compile(r"^(fid|fid_train|d_loss|g_loss)_w(\d+(?:\.\d+)?)$")


def _overrides(run: Path) -> dict[str, str]:
    path = run / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return {}
    items = yaml.safe_load(path.read_text()) or []
    return dict(item.lstrip("+~").split("=", 1) for item in items if "=" in item)


FID_LOG_PREFIX = "val/fmnist_fid_w"  # callbacks.fid's CSV columns: val/fmnist_fid_w0.25, ...


def logged_fid_curves(run: str | Path) -> dict[float, list[tuple[int, float]]]:
    """FMNIST-FID logged during training (callbacks.fid) per width: ``{width: [(iteration, fid), ...]}``
    sorted by iteration, from ``<run>/csv/metrics.csv``. A resumed run that evaluated an iteration
    twice keeps the later value. Empty without a CSV log."""
    path = Path(run) / "csv" / "metrics.csv"
    if not path.is_file():
        return {}
    curves: dict[float, dict[int, float]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            for key, value in row.items():
                if key and key.startswith(FID_LOG_PREFIX) and value not in ("", None):
                    # the callback logs "iteration" with its values; else Lightning's 0-based step + 1
                    it = row.get("iteration") or ""
                    iteration = int(float(it)) if it else int(row["step"]) + 1
                    curves.setdefault(float(key.removeprefix(FID_LOG_PREFIX)), {})[iteration] = float(value)
    return {w: sorted(points.items()) for w, points in sorted(curves.items())}


def _last_logged_fids(run: Path) -> dict[str, float]:
    """Last non-empty ``val/fmnist_fid_w*`` per width in the CSV log."""
    return {f"w{w}": points[-1][1] for w, points in logged_fid_curves(run).items() if points}


def read_run(run: str | Path) -> dict[str, Any]:
    """Everything known about one run directory, as a flat dict (width-keyed metrics as
    ``fid_w0.25``, ``fid_train_w0.25``, ``d_loss_w0.25``, ``g_loss_w0.25``)."""
    run = Path(run)
    row: dict[str, Any] = {"run": run.name, "path": str(run), "overrides": _overrides(run)}
    summary_path, metrics_path = run / "summary.json", run / "metrics.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else None
    if summary is None:
        row["status"] = "incomplete" if (run / "checkpoints" / "last.ckpt").is_file() else "no output"
    else:
        row["status"] = "preempted" if summary.get("preempted") else "finished"
        row["iterations"] = summary.get("iterations")
        for tag, losses in (summary.get("final_losses") or {}).items():
            row[f"d_loss_{tag}"], row[f"g_loss_{tag}"] = losses.get("d"), losses.get("g")
        for tag, fid in (summary.get("fmnist_fid") or {}).items():
            row[f"fid_{tag}"] = fid
    if metrics_path.is_file() and not any(k.startswith("fid_w") for k in row):
        for entry in json.loads(metrics_path.read_text()).get("widths", []):
            row[f"fid_w{float(entry['width'])}"] = entry.get("fmnist_fid")
    for tag, fid in _last_logged_fids(run).items():
        row[f"fid_train_{tag}"] = fid
    return row


def _is_run_dir(path: Path) -> bool:
    return path.is_dir() and any((path / name).exists() for name in (".hydra", "config_resolved.yaml", "summary.json"))


def collect_runs(root: str | Path) -> list[dict[str, Any]]:
    """One dict per run directory under ``root`` (a Hydra sweep dir; a single run dir also works),
    ordered by job number. The overrides that differ between runs become top-level keys, the ones
    shared by all runs stay in ``row["overrides"]`` only."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"slimgan-collect: {root} is not a directory")
    runs = (
        [root]
        if _is_run_dir(root) and not (root / "multirun.yaml").exists()
        else sorted(
            (p for p in root.iterdir() if _is_run_dir(p)),
            key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name),
        )
    )
    rows = [read_run(run) for run in runs]
    for key in swept_keys(rows):
        for row in rows:
            row[key] = row["overrides"].get(key, "")
    return rows


def swept_keys(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Override keys whose value is not the same in every run (all of them for a single run)."""
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row["overrides"] if k not in keys]
    if len(rows) <= 1:
        return keys
    return [k for k in keys if len({row["overrides"].get(k) for row in rows}) > 1]


def table_columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Swept keys, run, status, iterations, then per width (narrowest first) the FMNIST-FIDs when any run
    has them (after training, then during training), else the final D and G losses."""
    widths: set[float] = set()
    kinds: set[str] = set()
    for row in rows:
        for key in row:
            if m := WIDTH_KEY.match(key):
                kinds.add(m.group(1))
                widths.add(float(m.group(2)))
    columns = [*swept_keys(rows), "run", "status", "iterations"]
    shown = [k for k in ("fid", "fid_train") if k in kinds] or [k for k in ("d_loss", "g_loss") if k in kinds]
    for kind in shown:
        columns += [f"{kind}_w{w}" for w in sorted(widths)]
    return columns


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """Markdown table of ``rows`` (default columns: :func:`table_columns`)."""
    columns = list(columns or table_columns(rows))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def write_tables(rows: Sequence[dict[str, Any]], out_dir: str | Path, stem: str = "results") -> list[Path]:
    """``<stem>.md`` (table), ``<stem>.csv`` (same columns) and ``<stem>.json`` (full rows) in ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    columns = table_columns(rows)
    md, csv_path, js = out_dir / f"{stem}.md", out_dir / f"{stem}.csv", out_dir / f"{stem}.json"
    md.write_text(format_table(rows, columns) + "\n")
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    js.write_text(json.dumps(list(rows), indent=2))
    return [md, csv_path, js]


@cli_main("slimgan-collect")  # one-line errors, --debug for the traceback (slimgan_pl/cli.py)
def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="slimgan-collect", description=__doc__.split("\n\n")[0])
    parser.add_argument("root", help="a multirun sweep directory (multirun/<sweep>/<date_time>) or one run directory")
    parser.add_argument("--out", help="folder for results.md/.csv/.json (default: the sweep directory)")
    args = parser.parse_args(argv)
    try:
        rows = collect_runs(args.root)
    except FileNotFoundError as e:
        parser.exit(2, f"{e}\n")
    if not rows:
        parser.exit(2, f"slimgan-collect: no run directories (with .hydra/ or summary.json) under {args.root}\n")
    print(format_table(rows))
    for path in write_tables(rows, args.out or args.root):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
