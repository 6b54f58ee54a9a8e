"""Collect sweeps into an ablation table: ``slimgan-collect SWEEP_DIR [SWEEP_DIR ...] [--compare KEY=A,B]``.

Reads every run directory (``.hydra/``, ``config_resolved.yaml`` or ``summary.json``) under the given
folders - Hydra sweep folders ``multirun/<sweep>/<date_time>``, a parent folder (searched recursively)
or single runs - and pools them: launches of one sweep on different days (seeds 0-1, then 2-4) fall into
the same configurations. A configuration is a set of values of the overrides that differ between runs
(``.hydra/overrides.yaml``; ``seed``, ``hydra.*``, ``paths.*``, ``evaluate.*`` and path-like keys are no
part of it). Per configuration and width: n, mean, sd and the Student-t interval over seeds
(:func:`slimgan_pl.metrics.paired.mean_interval`) of every metric of the run's evaluations
(``metrics*.json``: FID, IS, KID, mIC with their protocol and sample counts in the column name; params,
MACs, latency), the last FID logged during training (``csv/metrics.csv``) and the final losses
(``summary.json``). Writes ``collect.md``, ``collect.csv``, ``collect.json`` and ``collect.png`` (a
metric against MACs, one line per configuration). ``--compare`` pairs two values of one key by seed
(:func:`slimgan_pl.metrics.paired.paired_comparison`).

Library: :func:`collect_runs` (one dict per run), :func:`aggregate`, :func:`compare`,
:func:`plot_metric`; the per-run table of earlier versions stays as :func:`format_table` / :func:`write_tables`.
Nothing heavy at import time (SciPy and matplotlib load inside the functions that use them).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from slimgan_pl.cli import cli_main

PROG = "slimgan-collect"
WIDTH_KEY = re.compile(r"^(fid|fid_train|d_loss|g_loss)_w(\d+(?:\.\d+)?)$")
FID_LOG_PREFIX = "val/fmnist_fid_w"  # callbacks.fid's CSV columns: val/fmnist_fid_w0.25, ...
RUN_MARKERS = (".hydra", "config_resolved.yaml", "summary.json")
SKIP_DIRS = {"checkpoints", "samples", "csv", "wandb", ".hydra", "__pycache__"}  # never hold run directories
# Overrides that say where or how a run was evaluated, not what was trained: never part of a configuration.
IGNORED_PREFIXES = ("hydra.", "paths.", "evaluate.")
IGNORED_KEYS = {"seed", "ckpt_path", "resume", "task_name", "data.root"}
PATH_LIKE = re.compile(r"(^|[._])(dir|path|root)$")
DEFAULT_MARGIN = 0.10  # the project's non-inferiority rule: within 10% of B's mean
LEVEL = 0.95


# ----------------------------------------------------------------------------- one run
@dataclass
class Evaluation:
    """One evaluation of a run: a ``metrics*.json`` (or summary.json's after-training FIDs when their file is
    gone or older), with the protocol identity that decides which column its numbers go to."""

    protocol_key: tuple[Any, ...]
    protocol_text: str  # "fmnist, 10k fake / 10k real"
    details: dict[str, Any]  # every protocol field, to disambiguate two protocols with the same text
    label_prefix: str  # "FMNIST-" or ""
    mtime: float
    source: str  # file name in the run directory
    widths: dict[float, dict[str, float]] = field(default_factory=dict)  # width -> {"FID": .., "params": ..}
    run_values: dict[str, float] = field(default_factory=dict)  # {"mIC": ..}: over all widths of the run


def _si_count(n: Any) -> str:
    """10000 -> 10k, 1500 -> 1.5k, 200 -> 200."""
    if not isinstance(n, (int, float)):
        return "?"
    return f"{n / 1000:g}k" if n >= 1000 else f"{n:g}"


def _protocol(data: dict[str, Any]) -> tuple[tuple[Any, ...], str, dict[str, Any], str]:
    """Identity, display text, fields and metric prefix of the protocol a metrics file was evaluated with."""
    proto, settings = data.get("protocol") or {}, data.get("settings") or {}
    backbone = data.get("backbone") or {"key_prefix": "fmnist_", "kind": "fmnist_classifier"}  # older files
    reference = data.get("reference") or {}

    def pick(name: str) -> Any:
        return proto.get(name, settings.get(name))

    details = {
        "name": proto.get("name", "unknown protocol"),
        "split": pick("split"),
        "n_fake": pick("n_fake"),
        "n_real": pick("n_real"),
        "is_n_fake": pick("is_n_fake"),
        "is_splits": pick("is_splits"),
        "kid_subsets": pick("kid_subsets"),
        "kid_subset_size": pick("kid_subset_size"),
        "backbone": backbone.get("kind"),
        "extractor": (data.get("extractor") or {}).get("sha256"),
        "reference": "computed" if reference.get("source", "computed") == "computed" else reference.get("source"),
    }
    text = f"{details['name']}, "
    if details["split"] not in (None, "test"):
        text += f"{details['split']} split, "
    text += f"{_si_count(details['n_fake'])} fake / {_si_count(details['n_real'])} real"
    if details["is_n_fake"] not in (None, details["n_fake"]):
        text += f", IS {_si_count(details['is_n_fake'])} fake"
    prefix = backbone.get("key_prefix", "fmnist_")
    label = "FMNIST-" if prefix == "fmnist_" else ""
    return tuple(sorted(details.items())), text, details, label


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _evaluation_from_metrics(data: dict[str, Any], path: Path) -> Evaluation:
    key, text, details, label = _protocol(data)
    prefix = (data.get("backbone") or {}).get("key_prefix", "fmnist_")
    ev = Evaluation(key, text, details, label, path.stat().st_mtime, path.name)
    for entry in data.get("widths") or []:
        values: dict[str, float] = {}
        for name, src in (("FID", f"{prefix}fid"), ("IS", f"{prefix}is"), ("KID", f"{prefix}kid")):
            if isinstance(entry.get(src), (int, float)):
                values[name] = float(entry[src])
        for name in ("params", "macs"):
            if isinstance(entry.get(name), (int, float)):
                values["MACs" if name == "macs" else name] = float(entry[name])
        for batch, ms in sorted((entry.get("latency_ms") or {}).items(), key=lambda kv: int(kv[0])):
            values[f"latency b{batch} (ms)"] = float(ms)
        ev.widths[float(entry["width"])] = values
    mic = (data.get("consistency") or {}).get("mIC")
    if isinstance(mic, (int, float)):
        ev.run_values["mIC"] = float(mic)
    return ev


def _summary_fids(summary: dict[str, Any]) -> tuple[str, dict[float, float]] | None:
    """summary.json's after-training FIDs per width (``fmnist_fid`` or ``fid``: ``{"w0.25": 14.6, ...}``)."""
    for prefix, label in (("fmnist_", "FMNIST-"), ("", "")):
        fids = summary.get(f"{prefix}fid")
        if isinstance(fids, dict) and fids:
            return label, {float(tag.lstrip("w")): float(v) for tag, v in fids.items() if v is not None}
    return None


def run_evaluations(run: str | Path, summary: dict[str, Any] | None = None) -> tuple[list[Evaluation], list[str]]:
    """The newest evaluation of ``run`` per protocol (newest first) and notes on what was set aside.

    Every ``metrics*.json`` is an evaluation (slimgan-eval writes ``metrics.json`` for the default protocol
    at full counts, ``metrics-<protocol>-<counts>.json`` otherwise); of two with the same protocol and counts
    the later file wins. summary.json repeats the FIDs of the after-training evaluation and names its file:
    when that file is gone, or is older than summary.json and disagrees with it, the summary's FIDs stand for
    that protocol (FID only); when the file is newer (a later slimgan-eval overwrote it), the file wins."""
    run = Path(run)
    found: dict[tuple[Any, ...], Evaluation] = {}
    by_file: dict[str, Evaluation] = {}
    notes: list[str] = []
    for path in sorted(run.glob("metrics*.json")):
        data = _read_json(path)
        if data is None or not isinstance(data.get("widths"), list):
            notes.append(f"{run}: {path.name} is not a readable metrics file (skipped)")
            continue
        ev = _evaluation_from_metrics(data, path)
        by_file[path.name] = ev
        if ev.protocol_key not in found or ev.mtime > found[ev.protocol_key].mtime:
            found[ev.protocol_key] = ev
    summary_path = run / "summary.json"
    fids = _summary_fids(summary) if summary else None
    if fids is not None:
        label, per_width = fids
        mtime = summary_path.stat().st_mtime if summary_path.is_file() else 0.0
        named = Path(str(summary.get("metrics") or "")).name  # the file evaluate_after_training wrote
        file_ev = by_file.get(named)
        if file_ev is None:
            stem = Path(named).stem or "metrics"
            key: tuple[Any, ...] = (("summary.json", stem),)
            ev = Evaluation(key, f"after training, {stem} (file missing)", {"name": stem}, label, mtime, "summary.json")
            ev.widths = {w: {"FID": v} for w, v in per_width.items()}
            found[key] = ev
        else:
            current = found[file_ev.protocol_key]
            current_fids = {w: vals.get("FID") for w, vals in current.widths.items()}
            same = all(
                current_fids.get(w) is not None and math.isclose(current_fids[w], v, rel_tol=1e-9)
                for w, v in per_width.items()
            )
            if mtime > current.mtime and not same:
                notes.append(
                    f"{run}: summary.json is newer than {current.source} and disagrees with it: its FIDs are used "
                    f"for {current.protocol_text} (no IS/KID/mIC)"
                )
                ev = Evaluation(
                    current.protocol_key, current.protocol_text, current.details, label, mtime, "summary.json"
                )
                ev.widths = {w: {"FID": v} for w, v in per_width.items()}
                found[current.protocol_key] = ev
    return sorted(found.values(), key=lambda e: -e.mtime), notes


def _overrides(run: Path) -> dict[str, str]:
    path = run / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return {}
    items = yaml.safe_load(path.read_text()) or []
    return dict(item.lstrip("+~").split("=", 1) for item in items if "=" in item)


def _resolved_config(run: Path) -> dict[str, Any]:
    path = run / "config_resolved.yaml"
    if not path.is_file():
        return {}
    try:
        loaded = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError:
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _dotted(config: dict[str, Any], key: str) -> Any:
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


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


def _training_fid_label(resolved: dict[str, Any]) -> str:
    fid = _dotted(resolved, "callbacks.fid") or {}
    counts = ""
    if isinstance(fid, dict) and "n_fake" in fid:
        counts = f", {_si_count(fid.get('n_fake'))} fake / {_si_count(fid.get('n_real'))} real"
    return f"FMNIST-FID during training (last logged{counts})"


def read_run(run: str | Path) -> dict[str, Any]:
    """Everything known about one run directory, as a dict: ``overrides``, ``seed``, ``status``,
    ``iterations``, ``evaluations`` (newest first), ``values`` (``{column: {width: value}}``, every number
    the ablation table aggregates) and the flat per-width keys of the per-run table (``fid_w0.25``: FID
    of the newest evaluation, ``fid_train_w0.25``, ``d_loss_w0.25``, ``g_loss_w0.25``)."""
    run = Path(run)
    resolved = _resolved_config(run)
    overrides = _overrides(run)
    seed = overrides.get("seed", resolved.get("seed"))
    row: dict[str, Any] = {
        "run": run.name,
        "path": str(run),
        "overrides": overrides,
        "seed": None if seed is None else str(seed),
        "_resolved": resolved,
        "notes": [],
    }
    summary = _read_json(run / "summary.json") if (run / "summary.json").is_file() else None
    if summary is None:
        row["status"] = "incomplete" if (run / "checkpoints" / "last.ckpt").is_file() else "no output"
    else:
        row["status"] = "preempted" if summary.get("preempted") else "finished"
        row["iterations"] = summary.get("iterations")
    values: dict[str, dict[float, float]] = {}
    columns: dict[str, dict[str, Any]] = {}

    def put(column: str, width: float, value: Any, info: dict[str, Any]) -> None:
        if isinstance(value, (int, float)) and math.isfinite(value):
            values.setdefault(column, {})[float(width)] = float(value)
            columns.setdefault(column, info)
        elif isinstance(value, (int, float)):  # a diverged run: said, not averaged
            row["notes"].append(f"{run}: {column} at width {width:g} is {value} (left out)")

    evaluations, eval_notes = run_evaluations(run, summary)
    row["notes"] += eval_notes
    row["evaluations"] = [{"source": e.source, "protocol": e.protocol_text, "mtime": e.mtime} for e in evaluations]
    row["_evaluations"] = evaluations
    widths: set[float] = set()
    for ev in evaluations:
        widths |= set(ev.widths)
    for tag in (summary or {}).get("final_losses") or {}:
        widths.add(float(tag.lstrip("w")))
    for rank, ev in enumerate(evaluations):
        for width, metrics in ev.widths.items():
            for name, value in metrics.items():
                if name in ("FID", "IS", "KID"):
                    info = {"metric": f"{ev.label_prefix}{name}", "kind": "evaluation", "protocol": ev.protocol_key}
                    put(f"{ev.label_prefix}{name} ({ev.protocol_text})", width, value, info)
                elif rank == 0 or name not in values:  # cost columns: from the newest evaluation that has them
                    put(name, width, value, {"metric": name, "kind": "cost", "protocol": None})
        for name, value in ev.run_values.items():  # mIC: one number per run, shown at each of its widths
            for width in ev.widths:
                info = {"metric": f"{ev.label_prefix}{name}", "kind": "evaluation", "protocol": ev.protocol_key}
                put(f"{ev.label_prefix}{name} ({ev.protocol_text})", width, value, info)
    train_label = _training_fid_label(resolved)
    for width, points in logged_fid_curves(run).items():
        if points:
            put(train_label, width, points[-1][1], {"metric": "FMNIST-FID during training", "kind": "training"})
    for tag, losses in ((summary or {}).get("final_losses") or {}).items():
        width = float(tag.lstrip("w"))
        put("D loss (final)", width, (losses or {}).get("d"), {"metric": "D loss", "kind": "loss"})
        put("G loss (final)", width, (losses or {}).get("g"), {"metric": "G loss", "kind": "loss"})
    distill = (summary or {}).get("distill_loss")
    for width in widths:
        put("distill loss (final)", width, distill, {"metric": "distill loss", "kind": "loss"})
    row["values"] = values
    row["_columns"] = columns
    row["evaluated_at"] = evaluations[0].mtime if evaluations else None

    # the flat keys of the per-run table (format_table, write_tables)
    if evaluations:
        for width, metrics in evaluations[0].widths.items():
            if "FID" in metrics:
                row[f"fid_w{width}"] = metrics["FID"]
    for tag, losses in ((summary or {}).get("final_losses") or {}).items():
        row[f"d_loss_{tag}"], row[f"g_loss_{tag}"] = (losses or {}).get("d"), (losses or {}).get("g")
    for tag, fid in _last_logged_fids(run).items():
        row[f"fid_train_{tag}"] = fid
    return row


# ----------------------------------------------------------------------------- finding and grouping runs
def _is_run_dir(path: Path) -> bool:
    return path.is_dir() and any((path / name).exists() for name in RUN_MARKERS)


def _natural(text: str) -> list[Any]:
    """Sort key that orders job numbers and dates as numbers: 2 before 10."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", text)]


def find_runs(root: str | Path) -> list[Path]:
    """Run directories at or under ``root``: ``root`` itself when it is one (and no sweep folder), else every
    run directory found recursively (a run directory's own subfolders are not searched)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a directory")
    if _is_run_dir(root) and not (root / "multirun.yaml").exists():
        return [root]
    runs: list[Path] = []
    for folder, subfolders, _ in os.walk(root):
        path = Path(folder)
        if path != root and _is_run_dir(path):
            runs.append(path)
            subfolders[:] = []
            continue
        subfolders[:] = [d for d in subfolders if d not in SKIP_DIRS and not d.startswith(".")]
    return sorted(runs, key=lambda p: _natural(str(p.relative_to(root))))


def ignored_key(key: str, extra: Iterable[str] = ()) -> bool:
    """Overrides that are no part of a configuration: the seed, where things are written or read, how the
    run was evaluated (evaluate.*: its protocol and counts label the columns instead), and ``extra``."""
    extra = set(extra)
    return (
        key in IGNORED_KEYS
        or key in extra
        or any(key.startswith(p) for p in IGNORED_PREFIXES)
        or any(key.startswith(f"{e}.") for e in extra)
        or bool(PATH_LIKE.search(key))
    )


def _normalized(value: Any) -> str:
    """One spelling per value: ``0`` and ``0.0``, ``True`` and ``true`` compare equal."""
    if value is None:
        return ""
    try:
        parsed = yaml.safe_load(str(value)) if isinstance(value, str) else value
    except yaml.YAMLError:
        return str(value)
    if isinstance(parsed, bool):
        return str(parsed).lower()
    if isinstance(parsed, (int, float)) and math.isfinite(parsed):
        return f"{float(parsed):g}"
    return str(value)


def swept_keys(rows: Sequence[dict[str, Any]], ignore: Iterable[str] = ()) -> list[str]:
    """Override keys whose value is not the same in every run (all of them for a single run); ``seed`` and
    the keys of :func:`ignored_key` excluded."""
    ignore = list(ignore)
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row["overrides"] if k not in keys and not ignored_key(k, ignore)]
    if len(rows) <= 1:
        return keys
    return [k for k in keys if len({_value_of(row, k) for row in rows}) > 1]


def _value_of(row: dict[str, Any], key: str) -> str:
    """The run's value of an override key: its override, else its resolved config's value (so a run that
    relied on the default and one that named it are the same configuration), else empty."""
    if key in row["overrides"]:
        return _normalized(row["overrides"][key])
    resolved = _dotted(row.get("_resolved") or {}, key)
    return _normalized(resolved) if resolved is not None and not isinstance(resolved, (dict, list)) else ""


def collect_runs(roots: str | Path | Sequence[str | Path], ignore: Iterable[str] = ()) -> list[dict[str, Any]]:
    """One dict per run directory (:func:`read_run`) under ``roots`` (sweep folders, parent folders searched
    recursively, or run folders; pooled), in folder order. The swept keys (:func:`swept_keys` over all runs)
    become top-level keys with each run's value; overrides shared by all runs stay in ``row["overrides"]``."""
    roots = [roots] if isinstance(roots, (str, Path)) else list(roots)
    paths: list[Path] = []
    for root in roots:
        paths += [p for p in find_runs(root) if p.resolve() not in {q.resolve() for q in paths}]
    rows = [read_run(p) for p in paths]
    for key in swept_keys(rows, ignore):
        for row in rows:
            row[key] = _value_of(row, key)
    return rows


# ----------------------------------------------------------------------------- statistics
@dataclass
class Configuration:
    """Runs that share the values of every swept key; ``runs`` holds one run per seed."""

    values: dict[str, str]
    runs: list[dict[str, Any]]

    @property
    def name(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.values.items()) or "all runs"


def group_runs(rows: Sequence[dict[str, Any]], ignore: Iterable[str] = ()) -> tuple[list[Configuration], list[str]]:
    """Configurations (sorted by their values) and notes: runs without any number, and unfinished runs without
    an evaluation (their losses and logged FIDs are from some earlier iteration), are left out; of two runs of one
    configuration with the same seed (a sweep launched twice) only the newer is counted."""
    keys = swept_keys(rows, ignore)
    notes: list[str] = []
    usable = [r for r in rows if r["values"] and (r["status"] == "finished" or r["_evaluations"])]
    left_out = [f"{r['path']} ({r['status']})" for r in rows if r not in usable]
    if left_out:
        notes.append(f"{len(left_out)} run(s) without results or unfinished, left out: {', '.join(left_out)}")
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in usable:
        groups.setdefault(tuple(_value_of(row, k) for k in keys), []).append(row)
    configurations = []
    for values, members in sorted(groups.items(), key=lambda kv: [_natural(v) for v in kv[0]]):
        by_seed: dict[str | None, dict[str, Any]] = {}
        for row in members:
            seed = row["seed"]
            previous = by_seed.get(seed)
            if previous is not None and seed is not None:
                newer, older = sorted([previous, row], key=lambda r: r["evaluated_at"] or 0.0, reverse=True)
                notes.append(
                    f"seed {seed} ran twice with the same configuration: counted {newer['path']}, not {older['path']}"
                )
                by_seed[seed] = newer
            else:
                by_seed[seed if seed is not None else f"run {row['path']}"] = row
        runs = sorted(by_seed.values(), key=lambda r: _natural(str(r["seed"])))
        configurations.append(Configuration(dict(zip(keys, values)), runs))
    return configurations, notes


def column_order(rows: Sequence[dict[str, Any]]) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """Every column of the runs, ordered: MACs, params, then per protocol (newest first) FID, IS, KID, mIC,
    the FID during training, latency, losses; with each column's description (``metric``, ``kind``,
    ``protocol``, ``newest``: the latest evaluation time behind it)."""
    info: dict[str, dict[str, Any]] = {}
    for row in rows:
        for column, desc in row["_columns"].items():
            entry = info.setdefault(column, {**desc, "newest": 0.0})
            if desc.get("protocol") is not None:
                for ev in row["_evaluations"]:
                    if ev.protocol_key == desc["protocol"]:
                        entry["newest"] = max(entry["newest"], ev.mtime)
    newest = {d["protocol"]: 0.0 for d in info.values() if d.get("protocol")}
    for d in info.values():
        if d.get("protocol"):
            newest[d["protocol"]] = max(newest[d["protocol"]], d["newest"])
    protocols = sorted(newest, key=lambda p: (-newest[p], str(p)))  # newest first; ties in a fixed order
    metric_rank = {"FID": 0, "IS": 1, "KID": 2, "mIC": 3}

    def rank(column: str) -> tuple[Any, ...]:
        d = info[column]
        if d["kind"] == "cost":
            order = {"MACs": 0, "params": 1}.get(column, 9)
            return (0 if order < 9 else 3, order, _natural(column))
        if d["kind"] == "evaluation":
            return (1, protocols.index(d["protocol"]), metric_rank.get(d["metric"].removeprefix("FMNIST-"), 9), column)
        if d["kind"] == "training":
            return (2, 0, column)
        return (4, ["D loss", "G loss", "distill loss"].index(d["metric"]), column)

    return sorted(info, key=rank), info


def aggregate(rows: Sequence[dict[str, Any]], ignore: Iterable[str] = (), level: float = LEVEL) -> dict[str, Any]:
    """The ablation table: per configuration and width, n, the seeds and, per column, the run values and
    :func:`~slimgan_pl.metrics.paired.mean_interval` (``n``, ``mean``, ``sd``, ``low``, ``high``). Returns
    ``{"keys", "columns", "column_info", "configurations", "rows", "notes"}``."""
    from slimgan_pl.metrics.paired import mean_interval  # SciPy: loaded only when numbers are aggregated

    configurations, notes = group_runs(rows, ignore)
    notes += sorted({note for row in rows for note in row["notes"]})
    counted = [run for config in configurations for run in config.runs]  # a seed run twice counts once
    columns, info = column_order(counted)
    table = []
    for config in configurations:
        widths = sorted({w for run in config.runs for per_width in run["values"].values() for w in per_width})
        for width in widths:
            present = [run for run in config.runs if any(width in v for v in run["values"].values())]
            entry: dict[str, Any] = {
                "configuration": config.values,
                "name": config.name,
                "width": width,
                "n": len(present),
                "seeds": [run["seed"] for run in present],
                "runs": [run["path"] for run in present],
                "iterations": sorted({run.get("iterations") for run in present if run.get("iterations") is not None}),
                "metrics": {},
            }
            for column in columns:
                pairs = [
                    (run["seed"], run["values"][column][width])
                    for run in present
                    if width in run["values"].get(column, {})
                ]
                if pairs:
                    stats = mean_interval([v for _, v in pairs], level).as_dict()
                    entry["metrics"][column] = {
                        **stats,
                        "values": [v for _, v in pairs],
                        "seeds": [s for s, _ in pairs],
                    }
            table.append(entry)
    keys = list(configurations[0].values) if configurations else []
    mixed = [e for e in table if len(e["iterations"]) > 1]
    for e in mixed:
        notes.append(f"{e['name']} width {e['width']}: runs with different iterations pooled ({e['iterations']})")
    protocols: dict[Any, str] = {}
    for column in columns:
        if info[column]["kind"] == "evaluation":
            protocols.setdefault(info[column]["protocol"], column.split(" (", 1)[1].rstrip(")"))
    if len(protocols) > 1:
        per_protocol = [
            f"{text} ({sum(1 for r in counted if any(e.protocol_key == p for e in r['_evaluations']))} runs)"
            for p, text in protocols.items()
        ]
        notes.append(
            "runs evaluated with different protocols or sample counts, kept apart in separate columns: "
            + "; ".join(per_protocol)
        )
    return {
        "keys": keys,
        "columns": columns,
        "column_info": info,
        "configurations": configurations,
        "rows": table,
        "notes": notes,
    }


# ----------------------------------------------------------------------------- paired comparison
def parse_compare(spec: str, result: dict[str, Any]) -> tuple[str, str, str]:
    """``KEY=A,B`` checked against the configurations found: ``(key, a, b)`` as spelled in the runs."""
    found = "; ".join(c.name for c in result["configurations"]) or "none"
    key, sep, values = spec.partition("=")
    parts = [v.strip() for v in values.split(",")]
    if not sep or len(parts) != 2 or not all(parts):
        raise ValueError(f"--compare needs KEY=A,B (two values of one swept key), got {spec!r}")
    if key not in result["keys"]:
        keys = ", ".join(result["keys"]) or "none (every run has the same overrides but the seed)"
        raise ValueError(f"--compare key {key!r} is not a swept key; swept keys: {keys}; configurations: {found}")
    seen = sorted({c.values[key] for c in result["configurations"]}, key=_natural)
    a, b = (_normalized(v) for v in parts)
    missing = [v for v, n in zip(parts, (a, b)) if n not in seen]
    if missing:
        raise ValueError(
            f"--compare {key}: no runs with {key}={missing[0]}; values found: {', '.join(seen)}; "
            f"configurations: {found}"
        )
    if a == b:
        raise ValueError(f"--compare {key}: A and B are the same value {parts[0]!r}")
    return key, a, b


def compare(
    result: dict[str, Any], key: str, a: str, b: str, margin_fraction: float = DEFAULT_MARGIN
) -> dict[str, Any]:
    """``A - B`` paired by seed, for every other configuration (the remaining swept keys), width and FID/KID
    column (lower is better; IS has no verdict here: its direction is the opposite). The non-inferiority
    margin is ``margin_fraction`` of B's mean over the paired seeds. Returns ``{"rows", "skipped"}``;
    ``rows`` hold :meth:`PairedResult.as_dict` plus the configuration, width, column, seeds and means."""
    from slimgan_pl.metrics.paired import paired_comparison

    if not margin_fraction >= 0:
        raise ValueError(f"--margin must be >= 0 (a fraction of B's mean, e.g. 0.10), got {margin_fraction}")
    info = result["column_info"]
    columns = [c for c in result["columns"] if info[c]["metric"].removeprefix("FMNIST-") in ("FID", "KID")]
    columns += [c for c in result["columns"] if info[c]["kind"] == "training"]
    cells = {(tuple(sorted(e["configuration"].items())), e["width"]): e for e in result["rows"]}
    others = sorted(
        {tuple((k, v) for k, v in sorted(e["configuration"].items()) if k != key) for e in result["rows"]},
        key=lambda t: [_natural(v) for _, v in t],
    )
    widths = sorted({e["width"] for e in result["rows"]})
    rows, skipped = [], []
    for other in others:
        name = ", ".join(f"{k}={v}" for k, v in other) or "-"
        for width in widths:
            cell_a = cells.get((tuple(sorted((*other, (key, a)))), width))
            cell_b = cells.get((tuple(sorted((*other, (key, b)))), width))
            if cell_a is None or cell_b is None:
                continue
            for column in columns:
                ma, mb = cell_a["metrics"].get(column), cell_b["metrics"].get(column)
                if not ma or not mb:
                    continue
                va, vb = dict(zip(ma["seeds"], ma["values"])), dict(zip(mb["seeds"], mb["values"]))
                seeds = sorted((s for s in va if s in vb and s is not None), key=_natural)
                if len(seeds) < 2:
                    skipped.append(f"{name}, width {width:g}, {column}: {len(seeds)} paired seed(s)")
                    continue
                xs, ys = [va[s] for s in seeds], [vb[s] for s in seeds]
                mean_b = sum(ys) / len(ys)
                paired = paired_comparison(xs, ys, margin_fraction * abs(mean_b))
                rows.append(
                    {
                        "other": dict(other),
                        "other_name": name,
                        "width": width,
                        "column": column,
                        "seeds": seeds,
                        "mean_a": sum(xs) / len(xs),
                        "mean_b": mean_b,
                        **paired.as_dict(),
                    }
                )
    return {"key": key, "a": a, "b": b, "margin_fraction": margin_fraction, "rows": rows, "skipped": skipped}


# ----------------------------------------------------------------------------- output
def _num(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    size = abs(value)
    if size >= 1e4 or (size >= 1e3 and float(value).is_integer()):  # counts (params, MACs): 8.45k, 1.78M
        for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
            if size >= scale:
                return f"{value / scale:.2f}{suffix}"
    if size >= 100:
        return f"{value:.1f}"
    if size >= 1 or value == 0:
        return f"{value:.2f}"
    if size >= 0.01:
        return f"{value:.3f}"
    return f"{value:.3g}"


def _signed(value: float) -> str:
    text = _num(abs(value))
    return f"-{text}" if value < 0 else f"+{text}"


def _decimals(reference: float) -> int:
    """Decimals that show about 4 significant digits of ``reference`` (a cell's mean)."""
    size = abs(reference)
    if size == 0 or size >= 100:
        return 1 if size < 1000 else 0
    return max(0, 3 - math.floor(math.log10(size)))


def format_cell(stats: dict[str, Any] | None, n: int) -> str:
    """``mean ± sd [low, high]`` with the decimals of the mean; a constant (params, MACs) or a single run as its
    value; ``(n=k)`` when fewer runs than the row's n have this number."""
    if not stats:
        return ""
    mean = stats["mean"]
    if stats["sd"] is None or stats["sd"] == 0:
        text = _num(mean)
    else:
        d = _decimals(mean)
        sd = f"{stats['sd']:.{d}f}"
        if float(sd) == 0:  # a spread below the mean's last digit: its own two digits
            sd = f"{stats['sd']:.2g}"
        text = f"{mean:.{d}f} ± {sd} [{stats['low']:.{d}f}, {stats['high']:.{d}f}]"
    return text + (f" (n={stats['n']})" if stats["n"] != n else "")


def ablation_markdown(result: dict[str, Any]) -> str:
    """The table: swept keys, width, n, seeds, then every column."""
    keys, columns = result["keys"], result["columns"]
    header = [*keys, "width", "n", "seeds", *columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for e in result["rows"]:
        seeds = ",".join(str(s) for s in e["seeds"] if s is not None)
        cells = [*(e["configuration"][k] for k in keys), f"{e['width']:g}", str(e["n"]), seeds]
        cells += [format_cell(e["metrics"].get(c), e["n"]) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def notes_markdown(result: dict[str, Any], plotted: str | None = None) -> str:
    level = f"{LEVEL:.0%}"
    lines = [
        f"Cells: mean ± sd [{level} Student-t interval of the mean] over seeds (slimgan_pl.metrics.paired."
        "mean_interval); one value when the runs agree or n=1. n: runs (seeds) per configuration and width.",
        "Configurations: the overrides that differ between runs; seed, hydra.*, paths.*, evaluate.* and path-like "
        "keys are no part of them. Each run counts with its newest evaluation per protocol; evaluations with other "
        "protocols or sample counts are separate columns.",
    ]
    if plotted:
        x = "MACs per image (log scale)" if plots_macs(result, plotted) else "the width (no MACs measured)"
        lines.append(f"Plot (collect.png): {plotted} against {x}, one line per configuration.")
    lines += [f"Note: {n}" for n in result["notes"]]
    return "\n".join(f"- {line}" for line in lines)


def compare_markdown(comparison: dict[str, Any]) -> str:
    key, a, b = comparison["key"], comparison["a"], comparison["b"]
    lines = [
        f"### {key}={a} vs {key}={b}: A - B paired by seed (lower is better; FID/KID only, IS has no verdict)",
        "",
        f'Verdict of "{key}={a} matches or beats {key}={b}": held when the whole {LEVEL:.0%} paired t interval of '
        f"A - B lies below the margin ({comparison['margin_fraction']:.0%} of B's mean), not held when wholly above, "
        "else undecided (slimgan_pl.metrics.paired.paired_comparison).",
        "",
        "| other overrides | width | metric | n | seeds | A mean | B mean | A - B | interval | margin | verdict "
        "| p (sign-flip) | seeds to decide |",
        "|" + "---|" * 13,
    ]
    for r in comparison["rows"]:
        lines.append(
            f"| {r['other_name']} | {r['width']:g} | {r['column']} | {r['n']} | {','.join(r['seeds'])} "
            f"| {_num(r['mean_a'])} | {_num(r['mean_b'])} | {_signed(r['mean'])} "
            f"| [{_signed(r['low'])}, {_signed(r['high'])}] "
            f"| {_num(r['margin'])} | {r['verdict']} | {r['p_permutation']:.3g} | {r['seeds_to_decide'] or '-'} |"
        )
    if comparison["skipped"]:
        lines += ["", "Not compared (fewer than 2 seeds run with both values): " + "; ".join(comparison["skipped"])]
    return "\n".join(lines)


def default_metric(result: dict[str, Any]) -> str | None:
    """The FID of the newest protocol; else the FID during training; else the first column."""
    info = result["column_info"]
    fids = [c for c in result["columns"] if info[c]["kind"] == "evaluation" and info[c]["metric"].endswith("FID")]
    if fids:
        return max(fids, key=lambda c: info[c]["newest"])
    training = [c for c in result["columns"] if info[c]["kind"] == "training"]
    return (training or [c for c in result["columns"] if info[c]["kind"] != "cost"] or [None])[0]


def choose_metric(result: dict[str, Any], wanted: str | None) -> str | None:
    """``wanted``: a column name, or a part of one (the newest protocol's column when several match)."""
    if wanted is None:
        return default_metric(result)
    if wanted in result["columns"]:
        return wanted
    matches = [c for c in result["columns"] if wanted.lower() in c.lower()]
    if not matches:
        raise ValueError(f"--metric {wanted!r} matches no column; columns: {'; '.join(result['columns'])}")
    info = result["column_info"]
    return max(matches, key=lambda c: (info[c].get("newest", 0.0), -result["columns"].index(c)))


def plots_macs(result: dict[str, Any], column: str) -> bool:
    """Whether :func:`plot_metric` puts MACs on x (every plotted point has them) or the width."""
    return all("MACs" in e["metrics"] for e in result["rows"] if column in e["metrics"])


def plot_metric(result: dict[str, Any], column: str, path: str | Path) -> Path:
    """``column`` against MACs per image (log x; the width where no MACs were measured), one line per
    configuration through its widths, with t-interval error bars (none at n=1)."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no display backend needed

    path = Path(path)
    use_macs = plots_macs(result, column)
    fig = Figure(figsize=(8, 5), layout="constrained")
    ax = fig.add_subplot()
    ns: set[int] = set()
    configs = [
        c
        for c in result["configurations"]
        if any(e["name"] == c.name and column in e["metrics"] for e in result["rows"])
    ]
    labelled: set[float] = set()
    for i, config in enumerate(configs):
        points = [e for e in result["rows"] if e["name"] == config.name and column in e["metrics"]]
        # lines side by side: each configuration shifted by 1.5% so their error bars do not hide each other
        shift = 1.0 + 0.015 * (i - (len(configs) - 1) / 2)
        xs = [(e["metrics"]["MACs"]["mean"] if use_macs else e["width"]) * shift for e in points]
        stats = [e["metrics"][column] for e in points]
        ys = [s["mean"] for s in stats]
        low = [s["mean"] - s["low"] if s["low"] is not None else 0.0 for s in stats]
        high = [s["high"] - s["mean"] if s["high"] is not None else 0.0 for s in stats]
        ns |= {s["n"] for s in stats}
        ax.errorbar(xs, ys, yerr=[low, high], marker="o", capsize=3, label=config.name)
        for x, y, e in zip(xs, ys, points):
            if e["width"] not in labelled:  # each width named once
                labelled.add(e["width"])
                ax.annotate(f"w={e['width']:g}", (x, y), textcoords="offset points", xytext=(4, 6), fontsize=7)
    if use_macs:
        ax.set_xscale("log")
    ax.set_xlabel("generator MACs per image (log scale)" if use_macs else "width")
    lower_better = result["column_info"][column]["metric"].endswith(("FID", "KID", "FID during training"))
    ax.set_ylabel(column + (" (lower is better)" if lower_better else ""), fontsize=9)
    n_text = f"n={min(ns)}" if len(ns) == 1 else f"n={min(ns)}-{max(ns)}"
    ax.set_title(f"mean over seeds with {LEVEL:.0%} t intervals ({n_text})", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=120)
    return path


def _json_ready(result: dict[str, Any], comparison: dict[str, Any] | None, rows: Sequence[dict[str, Any]]) -> dict:
    info = {c: {k: v for k, v in d.items() if k != "protocol"} for c, d in result["column_info"].items()}
    runs = [
        {k: v for k, v in r.items() if not k.startswith("_") and k != "values"}
        | {"values": {c: {f"{w:g}": v for w, v in per.items()} for c, per in r["values"].items()}}
        for r in rows
    ]
    return {
        "keys": result["keys"],
        "columns": result["columns"],
        "column_info": info,
        "rows": result["rows"],
        "comparison": comparison,
        "notes": result["notes"],
        "runs": runs,
    }


def write_collect(
    result: dict[str, Any],
    rows: Sequence[dict[str, Any]],
    out_dir: str | Path,
    comparison: dict[str, Any] | None = None,
    metric: str | None = None,
) -> tuple[str, list[Path]]:
    """``collect.md`` (the table, the comparison, notes and the runs behind it), ``collect.csv`` (one row per
    configuration x width: n, mean, sd, low, high of every column), ``collect.json`` and ``collect.png``.
    Returns the Markdown shown on stdout and the files."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    plotted = choose_metric(result, metric)
    if plotted is not None:
        files.append(plot_metric(result, plotted, out_dir / "collect.png"))
    text = ablation_markdown(result)
    if comparison is not None:
        text += "\n\n" + compare_markdown(comparison)
    text += "\n\n" + notes_markdown(result, plotted)
    runs = ["| run | seed | status | iterations | evaluations (newest first) |", "|---|---|---|---|---|"]
    runs += [
        f"| {r['path']} | {r['seed'] if r['seed'] is not None else ''} | {r['status']} | {r.get('iterations') or ''} | "
        + "; ".join(f"{e['source']} ({e['protocol']})" for e in r["evaluations"])
        + " |"
        for r in rows
    ]
    md = out_dir / "collect.md"
    md.write_text(f"# slimgan-collect\n\n{text}\n\n## Runs\n\n" + "\n".join(runs) + "\n")
    csv_path = out_dir / "collect.csv"
    with open(csv_path, "w", newline="") as f:
        writer = csv.writer(f)
        stats = ("n", "mean", "sd", "low", "high")
        writer.writerow(
            [*result["keys"], "width", "n", "seeds", *(f"{c} {s}" for c in result["columns"] for s in stats)]
        )
        for e in result["rows"]:
            cells = [
                *(e["configuration"][k] for k in result["keys"]),
                e["width"],
                e["n"],
                " ".join(map(str, e["seeds"])),
            ]
            for c in result["columns"]:
                m = e["metrics"].get(c) or {}
                cells += ["" if m.get(s) is None else m[s] for s in stats]
            writer.writerow(cells)
    js = out_dir / "collect.json"
    js.write_text(json.dumps(_json_ready(result, comparison, rows), indent=2) + "\n")
    return text, [md, csv_path, js, *files]


# ----------------------------------------------------------------------------- the per-run table
def table_columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Per-run table: swept keys, run, status, iterations, then per width (narrowest first) the FMNIST-FIDs when
    any run has them (newest evaluation, then during training), else the final D and G losses."""
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
    """Markdown table of ``rows``, one per run (default columns: :func:`table_columns`)."""
    columns = list(columns or table_columns(rows))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def write_tables(rows: Sequence[dict[str, Any]], out_dir: str | Path, stem: str = "results") -> list[Path]:
    """Per-run ``<stem>.md`` (table), ``<stem>.csv`` (same columns) and ``<stem>.json`` (full rows) in ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    columns = table_columns(rows)
    md, csv_path, js = out_dir / f"{stem}.md", out_dir / f"{stem}.csv", out_dir / f"{stem}.json"
    md.write_text(format_table(rows, columns) + "\n")
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    plain = [{k: v for k, v in row.items() if not k.startswith("_")} for row in rows]
    js.write_text(json.dumps(plain, indent=2, default=str))
    return [md, csv_path, js]


# ----------------------------------------------------------------------------- command line
@cli_main(PROG)  # one-line errors (ValueError, OSError), --debug for the traceback (slimgan_pl/cli.py)
def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Collect sweeps into an ablation table: runs pooled into configurations (the overrides that "
        "differ between runs, seed excluded); per configuration and width n, mean, sd and the Student-t interval over "
        "seeds of every metric, labelled with its protocol and sample counts; collect.md/.csv/.json and a plot "
        "against MACs (collect.png); --compare pairs two values of one key by seed.",
        epilog="Example: slimgan-collect multirun/distillation/2026-11-25_10-00-00 multirun/distillation/"
        "2026-11-26_09-00-00 --compare slim.alpha=0,20 --out tables/distillation",
    )
    parser.add_argument(
        "roots",
        nargs="+",
        metavar="PATH",
        help="sweep folders (multirun/<sweep>/<date_time>), parent folders (searched recursively) or run folders; "
        "all runs are pooled",
    )
    parser.add_argument(
        "--out", help="folder for collect.md/.csv/.json/.png (default: the one PATH given; with several: ./collect)"
    )
    parser.add_argument(
        "--compare", metavar="KEY=A,B", help="pair the runs of KEY=A and KEY=B by seed, e.g. slim.alpha=0,20"
    )
    parser.add_argument(
        "--margin",
        type=float,
        default=DEFAULT_MARGIN,
        help="non-inferiority margin of --compare as a fraction of B's mean (default: %(default)s)",
    )
    parser.add_argument("--metric", help="column to plot, or a part of its name (default: the newest protocol's FID)")
    parser.add_argument(
        "--ignore",
        action="append",
        default=[],
        metavar="KEY",
        help="an override that is no part of a configuration (repeatable)",
    )
    parser.add_argument("--runs", action="store_true", help="also write the per-run table results.md/.csv/.json")
    args = parser.parse_args(argv)
    rows = collect_runs(args.roots, args.ignore)
    if not rows:
        raise ValueError(f"no run directories (with {', '.join(RUN_MARKERS)}) under {', '.join(args.roots)}")
    result = aggregate(rows, args.ignore)
    if not result["rows"]:
        raise ValueError(f"{len(rows)} run director{'y' if len(rows) == 1 else 'ies'} found, none with results yet")
    comparison = None
    if args.compare:
        key, a, b = parse_compare(args.compare, result)
        comparison = compare(result, key, a, b, args.margin)
        if not comparison["rows"]:
            raise ValueError(
                f"--compare {args.compare}: fewer than 2 seeds run with both {key}={a} and {key}={b} in every "
                f"configuration and width ({'; '.join(comparison['skipped'][:3]) or 'no FID or KID to compare'})"
            )
    out = Path(args.out) if args.out else Path(args.roots[0]) if len(args.roots) == 1 else Path("collect")
    text, files = write_collect(result, rows, out, comparison, args.metric)
    print(text)
    if args.runs:
        files += write_tables(rows, out)
    for path in files:
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
