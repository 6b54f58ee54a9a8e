"""SlimGAN reproduction study on Fashion-MNIST (issue 15): SlimGAN vs the official individually trained
baseline, decided per width by a paired Student-t interval over seeds (``slimgan_pl.metrics.paired``).

    python experiments/reproduce_fmnist/run_study.py --plan          # planned runs, done/pending, estimated time
    python experiments/reproduce_fmnist/run_study.py                 # full study (resumable)
    python experiments/reproduce_fmnist/run_study.py --workers 2     # two runs side by side (2 cores: ~1.6x runs/h)
    python experiments/reproduce_fmnist/run_study.py --mode quick    # whole pipeline, toy sizes (CI)
    python experiments/reproduce_fmnist/run_study.py --report-only   # tabulate what has finished
    python experiments/reproduce_fmnist/run_study.py --g-steps 3000  # another budget (G steps per run)
    python experiments/reproduce_fmnist/run_study.py --seeds auto --max-seeds 8 --arm fast --workers 2
                                     # paired seeds added to the bf16 arm until its verdicts are decided

Arms (``study.yaml``): SlimGAN (4 widths, stepwise distillation) against the official baseline
(``examples/baseline.py``): one native generator of ngf*w channels per width (``model.baseline.g_width``),
same recipe, same data order (same seed), same G steps and batch size, with a full-size D (the main
comparison, every seed) and with a narrow D of ndf*w channels (``model.baseline.d_width``, first seed).
Fast training modes (every seed): the SlimGAN arm again in e.g. bf16-mixed, paired by seed with the fp32
SlimGAN arm: the speed issue's quality-parity rule (every width within 10% of fp32 or better), decided
by the same paired t interval. Ablations (first seed): alpha 0 / 5 (/ 20 = the main run), plain
distillation, n_share 0 / max / -1 (/ 2 = the main run), 8 widths, scBN vs switchable CBN (conditional).

Every run trains in this process (or in one of ``--workers`` processes that claim runs from the same
plan) through ``slimgan_pl.train.train`` with the FMNIST-FID callback on
(``val/fmnist_fid_w<width>`` every ``fid_every`` G steps, read back from the run's CSV log as curves),
then is evaluated once with slimgan-eval's ``evaluate_checkpoint`` (10k fakes) and leaves
``study_record.json``: a run with that file is skipped when the study is launched again, a run
interrupted during training resumes from its ``checkpoints/last.ckpt``. The report's ``records.json``
(committed with it) carries the finished runs to another machine: a launch adopts each record whose run
has no folder yet and whose name, mode, G steps and overrides match the plan (``--committed-records``;
a record that no longer matches is retrained, and the launch says why), so a study can be finished over
several sittings on machines that do not keep their disks. Adopted runs have no checkpoint here: their
mIC comes from the committed ``consistency.json`` and their same-z grid from the committed image.
A run whose config is refused (e.g. ``slim.n_share=-1`` before that option exists) is skipped with
the reason in ``refused.json`` and tried again at the next launch.

``--seeds auto --max-seeds N`` adds paired seeds (the integer after the arm's last) to one arm, the main
comparison (``--arm main``) or the fast modes (``--arm fast``, each new seed with its fp32 SlimGAN partner),
one seed per round, recomputing that arm's verdicts after each round, until every one is decided or the arm
has N seeds; nothing else is trained. The added seeds are kept in the runs folder's ``extra_seeds.json``
(and found again from the run names of committed records), so workers and later sittings plan them too.

Order: the main comparison seed by seed, then the narrow-D variant, the fast modes, the ablations, so that an
interrupted study has its most important results first. The report is written to
``experiments/results/fmnist_reproduction.md`` only in full mode once the main comparison has
finished (the committed report of the earlier study stays until then); otherwise to
``<runs-dir>/report.md``.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import math
import os
import re
import shutil
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from slimgan_pl.metrics.paired import METHOD, paired_comparison

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
STUDY_FILE = HERE / "study.yaml"
CONCLUSIONS_FILE = HERE / "conclusions.md"  # hand-written reading of the full study, included in the report
TEMPLATE_MARK = "<!-- TEMPLATE"  # conclusions.md not written yet: the report says so instead
FULL_REPORT = REPO / "experiments" / "results" / "fmnist_reproduction.md"
COMMITTED_RECORDS = FULL_REPORT.with_suffix("") / "records.json"  # written by build_report, committed
VERDICTS = ("held", "not held", "undecided")
ARMS = ("main", "fast")  # the comparisons --seeds auto adds seeds to: SlimGAN vs native | fast modes vs fp32
EXTRA_SEEDS_FILE = "extra_seeds.json"  # in the runs folder: the seeds --seeds auto added, per arm


# ---------------------------------------------------------------------- statistics (unit-tested)
def aggregate_curves(curves: Sequence[Sequence[tuple[int, float]]]) -> list[tuple[int, float, float, float]]:
    """[(iteration, mean, min, max)] over the given runs' curves, at the iterations every run has."""
    if not curves:
        return []
    common = set.intersection(*(set(it for it, _ in c) for c in curves))
    values = [dict(c) for c in curves]
    return [
        (it, statistics.mean(v[it] for v in values), min(v[it] for v in values), max(v[it] for v in values))
        for it in sorted(common)
    ]


# ---------------------------------------------------------------------- the plan
@dataclass
class Run:
    """One training run of the study."""

    name: str  # folder name, unique in the study
    arm: str  # slimgan | native | native_narrow_d | <ablation name>
    kind: str  # main | narrow_d | ablation | conditional
    seed: int
    g_steps: int
    widths: list[float]  # the widths it trains (a native run: its one width)
    overrides: list[str]
    width: float | None = None  # a native run's width

    def folder(self, root: Path) -> Path:
        return root / self.name


@dataclass
class Study:
    mode: str
    spec: dict[str, Any]
    root: Path  # run folders
    g_steps: int
    ablation_g_steps: int
    # seeds --seeds auto added beyond the mode's, per arm (main: SlimGAN + native networks; fast: fp32 +
    # fast-mode SlimGAN); read from the runs folder's extra_seeds.json and the committed records' names
    extra_seeds: dict[str, list[int]] = field(default_factory=lambda: {arm: [] for arm in ARMS})

    @classmethod
    def load(
        cls,
        mode: str,
        root: Path,
        g_steps: int | None = None,
        ablation_g_steps: int | None = None,
        path: Path = STUDY_FILE,
    ) -> Study:
        spec = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
        if mode not in spec["modes"]:
            raise SystemExit(f"run_study: --mode must be one of {sorted(spec['modes'])}, got {mode!r}")
        m = spec["modes"][mode]
        g = int(g_steps if g_steps is not None else m["g_steps"])
        ga = int(ablation_g_steps if ablation_g_steps is not None else (g_steps or m["ablation_g_steps"]))
        for key, value in (("--g-steps", g), ("--ablation-g-steps", ga)):
            if value < 1:
                raise SystemExit(f"run_study: {key} must be >= 1, got {value}")
        study = cls(mode, spec, root, g, ga)
        saved = root / EXTRA_SEEDS_FILE
        if saved.is_file():
            for arm, seeds in json.loads(saved.read_text()).items():
                study.add_seeds(arm, seeds)
        return study

    @property
    def mode_spec(self) -> dict[str, Any]:
        return self.spec["modes"][self.mode]

    @property
    def seeds(self) -> list[int]:
        """The mode's seeds (study.yaml): every arm has them; narrow D and ablations use the first."""
        return list(self.mode_spec["seeds"])

    @property
    def main_seeds(self) -> list[int]:
        """The seeds of the main comparison: the mode's, then those --seeds auto added to it."""
        return self.seeds + self.extra_seeds["main"]

    @property
    def fast_seeds(self) -> list[int]:
        """The seeds of the fast-mode arm (each with its fp32 SlimGAN partner)."""
        return self.seeds + self.extra_seeds["fast"]

    def arm_seeds(self, arm: str) -> list[int]:
        return self.main_seeds if arm == "main" else self.fast_seeds

    def add_seeds(self, arm: str, seeds: Sequence[int]) -> None:
        """Add seeds beyond the mode's to an arm (kept sorted; the mode's own seeds are ignored)."""
        if arm not in ARMS:
            raise SystemExit(f"run_study: {EXTRA_SEEDS_FILE} names an unknown arm {arm!r}; known: {list(ARMS)}")
        self.extra_seeds[arm] = sorted({*self.extra_seeds[arm], *(int(s) for s in seeds)} - set(self.seeds))

    def next_seed(self, arm: str) -> int:
        """The seed --seeds auto adds next to ``arm``: the integer after its last one."""
        return max(self.arm_seeds(arm)) + 1

    def save_extra_seeds(self) -> None:
        """Written before a round trains, so --workers' processes and a later sitting plan the same seeds."""
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / EXTRA_SEEDS_FILE).write_text(json.dumps(self.extra_seeds, indent=1))

    def seeds_named_in(self, names: Sequence[str]) -> dict[str, list[int]]:
        """The extra seeds that run names show (e.g. a records.json with the runs of an auto launch):
        ``native_w<w>_seed<s>`` -> main, ``slimgan_<fast mode>_seed<s>`` -> fast."""
        found: dict[str, set[int]] = {arm: set() for arm in ARMS}
        for name in names:
            if m := re.fullmatch(r"native_w[0-9.]+_seed(\d+)", name):
                found["main"].add(int(m.group(1)))
            elif (m := re.fullmatch(r"slimgan_(.+)_seed(\d+)", name)) and m.group(1) in self.fast_mode_names():
                found["fast"].add(int(m.group(2)))
        return {arm: sorted(seeds - set(self.seeds)) for arm, seeds in found.items()}

    @property
    def widths(self) -> list[float]:
        return [float(w) for w in self.mode_spec.get("widths", self.spec["widths"])]

    def _unconditional(self, g_steps: int, *extra: str) -> list[str]:
        s, m = self.spec["slimgan"], self.mode_spec
        return [
            *self.spec["recipe"],
            *m["overrides"],
            *self._budget(g_steps),
            f"slim.alpha={s['alpha']}",
            f"slim.stepwise={str(s['stepwise']).lower()}",
            f"slim.n_share={s['n_share']}",
            f"slim.widths={_list(self.widths)}",
            *extra,
        ]

    def _budget(self, g_steps: int) -> list[str]:
        m = self.mode_spec
        return [
            f"train.g_steps={g_steps}",
            f"callbacks.fid.every_n_iterations={m['fid_every']}",
            f"callbacks.fid.n_fake={m['fid']['n_fake']}",
            f"callbacks.fid.n_real={m['fid']['n_real']}",
        ]

    # ------------------------------------------------------------------ the runs
    def slimgan_run(self, seed: int) -> Run:
        """The fp32 SlimGAN run of ``seed``: the main comparison's arm and the fast modes' partner."""
        overrides = self._unconditional(self.g_steps)
        return Run(f"slimgan_seed{seed}", "slimgan", "main", seed, self.g_steps, self.widths, overrides)

    def main_runs(self) -> list[Run]:
        """Per seed: SlimGAN, then one native generator per width with a full-size D."""
        d_width = float(self.spec["baseline"]["d_width_main"])
        runs = []
        for s in self.main_seeds:
            runs.append(self.slimgan_run(s))
            runs += [
                Run(
                    f"native_w{w:g}_seed{s}",
                    "native",
                    "main",
                    s,
                    self.g_steps,
                    [w],
                    self._unconditional(
                        self.g_steps, f"model.baseline.g_width={w}", f"model.baseline.d_width={d_width}"
                    ),
                    width=w,
                )
                for w in self.widths
            ]
        return runs

    def narrow_d_runs(self) -> list[Run]:
        """The official script's other knob: D with ndf*w channels too (first seed). The width whose
        narrow D is the main comparison's D (1.0) is that run already: not trained twice."""
        d_main = float(self.spec["baseline"]["d_width_main"])
        return [
            Run(
                self.narrow_d_name(w, s),
                "native_narrow_d",
                "narrow_d",
                s,
                self.g_steps,
                [w],
                self._unconditional(self.g_steps, f"model.baseline.g_width={w}", f"model.baseline.d_width={w}"),
                width=w,
            )
            for s in self.seeds[: int(self.spec["baseline"]["narrow_d_seeds"])]
            for w in self.widths
            if not same_width(w, d_main)
        ]

    def narrow_d_name(self, width: float, seed: int) -> str:
        """The run that has the native network of ``width`` with a D of ndf*width channels."""
        if same_width(width, self.spec["baseline"]["d_width_main"]):
            return f"native_w{width:g}_seed{seed}"
        return f"native_narrowd_w{width:g}_seed{seed}"

    def _chosen(self, key: str, names: list[str]) -> list[str]:
        """The names the mode's ``key`` (all | a list) picks from ``names``, in plan order."""
        chosen = self.mode_spec.get(key, "all")
        if chosen == "all":
            return names
        unknown = [n for n in chosen if n not in names]
        if unknown:
            raise SystemExit(f"run_study: modes.{self.mode}.{key} names unknown arms {unknown}; known: {names}")
        return [n for n in names if n in chosen]

    def fast_mode_names(self) -> list[str]:
        return self._chosen("fast_modes", list(self.spec.get("fast_modes", {})))

    def fast_mode_runs(self) -> list[Run]:
        """The SlimGAN arm of every seed in each fast training mode (its overrides added last); a seed
        added to this arm alone is preceded by its fp32 SlimGAN partner."""
        if not self.fast_mode_names():
            return []
        partners = [self.slimgan_run(s) for s in self.fast_seeds if s not in self.main_seeds]
        return partners + [
            Run(
                f"slimgan_{name}_seed{s}",
                name,
                "fast_mode",
                s,
                self.g_steps,
                self.widths,
                self._unconditional(self.g_steps, *self.spec["fast_modes"][name]),
            )
            for name in self.fast_mode_names()
            for s in self.fast_seeds
        ]

    def arm_runs(self, arm: str) -> list[Run]:
        """The runs an arm's verdicts are computed from (main: SlimGAN and the native networks; fast: each
        fast mode and the fp32 SlimGAN run of every seed of that arm)."""
        if arm == "main":
            return self.main_runs()
        names = {f"slimgan_seed{s}" for s in self.fast_seeds}
        names |= {f"slimgan_{m}_seed{s}" for m in self.fast_mode_names() for s in self.fast_seeds}
        return [r for r in self.all_runs() if r.name in names]

    def ablation_names(self) -> list[str]:
        return self._chosen("ablations", [*self.spec["ablations"], *self.spec["conditional"]])

    def ablation_runs(self) -> list[Run]:
        s, g, m = self.seeds[0], self.ablation_g_steps, self.mode_spec
        runs = []
        for name in self.ablation_names():
            if name in self.spec["ablations"]:
                overrides = self._unconditional(g, *self.spec["ablations"][name])
                widths = _widths_of(overrides) or self.widths
                runs.append(Run(f"abl_{name}_seed{s}", name, "ablation", s, g, widths, overrides))
            else:
                overrides = [
                    *self.spec["conditional_recipe"],
                    *m["conditional_overrides"],
                    *self._budget(g),
                    *self.spec["conditional"][name],
                ]
                runs.append(Run(f"{name}_seed{s}", name, "conditional", s, g, self.widths_of_conditional(), overrides))
        return runs

    def widths_of_conditional(self) -> list[float]:
        return [float(w) for w in self.spec["conditional_widths"]]

    def all_runs(self) -> list[Run]:
        runs = self.main_runs() + self.narrow_d_runs() + self.fast_mode_runs() + self.ablation_runs()
        unique: dict[str, Run] = {}
        for run in runs:  # a run two arms share (an added seed's fp32 SlimGAN): planned once, at its first place
            unique.setdefault(run.name, run)
        return list(unique.values())

    # ------------------------------------------------------------------ time
    def estimate_seconds(self, run: Run) -> float:
        """Planned wall time of one run from study.yaml's ``cost`` (training, FID points, final evaluation)."""
        c, m = self.spec["cost"], self.mode_spec
        if run.arm in ("native", "native_narrow_d"):
            per_step = _nearest(c["native_per_step"], run.width)
            if run.kind == "narrow_d":
                per_step *= float(c["narrow_d_factor"])
        else:
            per_step = float(c["slimgan_per_step"]) * len(run.widths) / 4
            if run.kind == "conditional":
                per_step *= float(c["conditional_factor"])
            if run.kind == "fast_mode":
                per_step *= float(c["fast_mode_factor"].get(run.arm, 1.0))
        n_w = len(run.widths)
        fid_points = run.g_steps // int(m["fid_every"])
        return (
            float(c["startup"])
            + per_step * run.g_steps
            + fid_points * n_w * float(c["fid_per_width"])
            + n_w * float(c["eval_per_width"])
        )

    def plan_lines(self, adoptable: Sequence[str] = ()) -> list[str]:
        """The planned runs (done / adoptable / pending / refused), per-stage and total estimated hours, and
        whether it fits the issue's limit (if not: what does)."""
        lines, stages = [], {}
        for run in self.all_runs():
            est = self.estimate_seconds(run)
            status = "adopt" if run.name in adoptable else run_status(run, self.root)
            stages.setdefault(run.kind, [0.0, 0.0])
            stages[run.kind][0] += est
            if status not in ("done", "adopt"):
                stages[run.kind][1] += est
            lines.append(f"{status:<8} {run.name:<32} {run.g_steps:>6} G steps  ~{est / 60:5.1f} min")
        total = sum(v[0] for v in stages.values())
        left = sum(v[1] for v in stages.values())
        limit = float(self.spec["cost"]["limit_hours"]) * 3600
        lines.append("")
        lines += [f"{kind:<12} ~{v[0] / 3600:.2f} h planned, ~{v[1] / 3600:.2f} h left" for kind, v in stages.items()]
        lines.append(
            f"total        ~{total / 3600:.2f} h planned ({len(self.all_runs())} runs, mode {self.mode}, "
            f"{self.g_steps} G steps main / {self.ablation_g_steps} ablations), ~{left / 3600:.2f} h left"
        )
        two = float(self.spec["cost"]["two_workers_throughput"])
        lines.append(f"with --workers 2 (measured {two:g}x the runs per hour on 2 cores): ~{total / two / 3600:.2f} h "
                     f"planned, ~{left / two / 3600:.2f} h left")  # fmt: skip
        if total <= limit:
            lines.append(f"fits the {limit / 3600:g} h limit")
        else:
            core = stages.get("main", [0.0])[0] + stages.get("narrow_d", [0.0])[0]
            lines.append(
                f"does NOT fit the {limit / 3600:g} h limit in one sitting: the main comparison and the "
                f"narrow-D variant take ~{core / 3600:.2f} h"
                + (" (they fit)" if core <= limit else "")
                + f", the fast modes and ablations ~{(total - core) / 3600:.2f} h "
                f"more; the study is resumable, so launch it again for the rest, or lower "
                f"--ablation-g-steps (each ablation G step costs "
                f"~{stages.get('ablation', [0.0])[0] / max(1, self.ablation_g_steps) / 60:.2f} min in all)"
            )
        return lines


def _list(values: Sequence[float]) -> str:
    return "[" + ",".join(str(v) for v in values) + "]"


def _widths_of(overrides: Sequence[str]) -> list[float] | None:
    """The widths a list of overrides sets last (slim.widths=[...]), or None."""
    found = None
    for o in overrides:
        if o.startswith("slim.widths="):
            found = [float(v) for v in o.split("=", 1)[1].strip("[]").split(",")]
    return found


def _nearest(table: dict[Any, float], width: float | None) -> float:
    key = min(table, key=lambda k: abs(float(k) - float(width or 1.0)))
    return float(table[key])


def read_record(folder: Path) -> dict[str, Any] | None:
    path = folder / "study_record.json"
    return json.loads(path.read_text()) if path.is_file() else None


RECORD_KEYS = ("mode", "overrides", "iterations", "widths", "train_seconds", "eval_seconds", "evaluate", "extractor")
ADOPTED_GRID = "adopted_slimgan_vs_native.png"  # the same-z grid of adopted runs, kept in the runs folder


def load_store(store: Path) -> dict[str, dict[str, Any]]:
    """A report's records.json ({run name: study record}), checked; a clear SystemExit otherwise."""
    where = f"run_study: --committed-records {store}"
    if not store.is_file():
        raise SystemExit(f"{where} is not a file (a report's records.json, or none)")
    try:
        stored = json.loads(store.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SystemExit(f"{where} cannot be read as JSON ({e})") from e
    if not isinstance(stored, dict) or not all(isinstance(r, dict) for r in stored.values()):
        raise SystemExit(f"{where} must map run names to study records (a report's records.json)")
    for name, rec in stored.items():
        missing = [k for k in RECORD_KEYS if k not in rec]
        if missing or not isinstance(rec["iterations"], int) or not isinstance(rec["overrides"], list):
            problem = f"lacks {missing}" if missing else "has a non-integer iterations or non-list overrides"
            raise SystemExit(f"{where}: the record of {name!r} {problem}")
    return stored


def adoptable_records(
    study: Study, stored: dict[str, dict[str, Any]], classifier_sha: str | None, log=print
) -> dict[str, dict[str, Any]]:
    """The stored records that stand for a planned run with no record in the runs folder: same name,
    mode, overrides, G steps, evaluation settings and classifier (``classifier_sha``; None: not
    checked). A stored record that differs is left out (that run is trained), and the log says why."""
    adoptable = {}
    for run in study.all_runs():
        rec = stored.get(run.name)
        if rec is None or read_record(run.folder(study.root)) is not None:
            continue
        ev = rec["evaluate"]
        changed = [
            key
            for key, ok in (
                ("mode", rec["mode"] == study.mode),
                ("overrides", rec["overrides"] == run.overrides),
                ("G steps", rec["iterations"] == run.g_steps),
                ("evaluation", all(ev[k] == v for k, v in study.mode_spec["evaluate"].items() if k in ev)),
                ("classifier", classifier_sha is None or rec["extractor"].get("sha256") == classifier_sha),
            )
            if not ok
        ]
        if changed:
            log(f"[study] {run.name}: the stored record differs from the plan ({', '.join(changed)}): not adopted")
            continue
        adoptable[run.name] = rec
    return adoptable


def adopt_records(study: Study, store: Path, classifier_sha: str | None, log=print) -> list[str]:
    """Copy the finished runs of an earlier sitting (``store``: a report's records.json) into the runs
    folder (see :func:`adoptable_records`); return the adopted names. Adopted records have no checkpoint
    here (``checkpoint`` None; the other machine's path stays as ``checkpoint_elsewhere``). A seed whose
    main runs are all adopted also gets its mIC from the store's consistency.json (when it was computed
    from these very runs: same training seconds), and the first seed the store's same-z grid."""
    stored = load_store(store)
    adoptable = adoptable_records(study, stored, classifier_sha, log)
    for name, rec in adoptable.items():
        folder = study.root / name
        if (folder / "checkpoints").is_dir():
            log(f"[study] {name}: the unfinished run here is superseded by the stored record of the finished run")
        folder.mkdir(parents=True, exist_ok=True)
        adopted = {
            **rec,
            "checkpoint": None,
            "checkpoint_elsewhere": rec.get("checkpoint_elsewhere") or rec.get("checkpoint"),
            "adopted_from": rec.get("adopted_from") or _shown(store),
        }
        (folder / "study_record.json").write_text(json.dumps(adopted, indent=2))
    if adoptable:
        log(f"[study] adopted {len(adoptable)} finished runs from {store} (not retrained): {', '.join(adoptable)}")

    consistency_file = store.parent / "consistency.json"
    stored_mic = json.loads(consistency_file.read_text()) if consistency_file.is_file() else {}
    for seed in study.main_seeds:
        records = main_records(study, seed)
        if records is None or not all(r.get("adopted_from") for r in records):
            continue
        entry = stored_mic.get(str(seed))
        cache = study.root / f"consistency_seed{seed}.json"
        if isinstance(entry, dict) and entry.get("fingerprint") == fingerprint(records) and not cache.is_file():
            cache.write_text(json.dumps(entry, indent=2))
        grid = store.parent / "slimgan_vs_native.png"
        if seed == study.seeds[0] and grid.is_file() and not (study.root / ADOPTED_GRID).is_file():
            shutil.copyfile(grid, study.root / ADOPTED_GRID)
    return list(adoptable)


def main_records(study: Study, seed: int) -> list[dict[str, Any]] | None:
    """SlimGAN's record of ``seed`` followed by the native networks' (widths in order); None if any is missing."""
    records = [read_record(study.root / f"slimgan_seed{seed}")]
    records += [read_record(study.root / f"native_w{w:g}_seed{seed}") for w in study.widths]
    return None if any(r is None for r in records) else records


def fingerprint(records: Sequence[dict[str, Any]]) -> list[list[float]]:
    """Which trainings a result was computed from: iterations and training seconds of each run (a run
    retrained or trained further changes it)."""
    return [[r["iterations"], round(float(r["train_seconds"]), 3)] for r in records]


def _shown(path: Path) -> str:
    """A path as the report shows it: relative to the repository when inside it."""
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def has_checkpoints(*records: dict[str, Any]) -> bool:
    return all(r.get("checkpoint") and Path(r["checkpoint"]).is_file() for r in records)


def run_status(run: Run, root: Path) -> str:
    """done (a record of at least its planned G steps) | refused (the config refused it) | pending."""
    record = read_record(run.folder(root))
    if record is not None and record["iterations"] >= run.g_steps:
        return "done"
    if (run.folder(root) / "refused.json").is_file():
        return "refused"
    return "pending"


# ---------------------------------------------------------------------- executing one run
def compose_config(overrides: Sequence[str]):
    from hydra import compose, initialize_config_dir

    from slimgan_pl.config import config_dir, register_resolvers

    register_resolvers()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose("config", overrides=list(overrides))


class RunRefused(Exception):
    """The run's config is refused before training (e.g. an option another branch adds)."""


def execute(run: Run, study: Study, classifier: Path | None, data_root: str) -> dict[str, Any]:
    """Train (or resume) and evaluate one run; write and return its ``study_record.json``."""
    from slimgan_pl._warnings import silence_third_party_noise
    from slimgan_pl.evaluate import evaluate_checkpoint
    from slimgan_pl.sweeps import logged_fid_curves
    from slimgan_pl.train import ConfigError, train

    silence_third_party_noise()  # as slimgan-train does: train() is called here without its CLI
    out = run.folder(study.root)
    last = out / "checkpoints" / "last.ckpt"
    # Interrupted in an earlier sitting: resume=auto continues from the run folder's last.ckpt.
    resumed = last.is_file()
    overrides = [
        *run.overrides,
        f"seed={run.seed}",
        f"paths.output_dir={out}",
        f"data.root={data_root}",
        "resume=auto",
    ] + ([f"callbacks.fid.classifier={classifier}"] if classifier else [])
    start = time.perf_counter()
    try:
        summary = train(compose_config(overrides))
    except ConfigError as e:  # refused before anything was trained or written
        out.mkdir(parents=True, exist_ok=True)
        (out / "refused.json").write_text(json.dumps({"run": run.name, "error": str(e)}, indent=2))
        raise RunRefused(str(e)) from e
    train_seconds = time.perf_counter() - start
    if summary.get("preempted"):  # SIGTERM/USR1 saved last.ckpt: leave the run unfinished, resumable
        raise SystemExit(
            f"run_study: {run.name} stopped by a signal at iteration {summary['iterations']}; "
            "launch the study again to resume it"
        )
    (out / "refused.json").unlink(missing_ok=True)

    start = time.perf_counter()
    result = evaluate_checkpoint(
        last, data_root=data_root, classifier_path=classifier, out_dir=out, log=None, **study.mode_spec["evaluate"]
    )
    curves = logged_fid_curves(out)
    record = {
        **asdict(run),
        "mode": study.mode,
        "iterations": summary["iterations"],
        "resumed": resumed,
        "train_seconds": train_seconds,
        "eval_seconds": time.perf_counter() - start,
        "checkpoint": str(last),
        "widths": result["widths"],
        "consistency": result["consistency"],
        "extractor": result["extractor"],
        "evaluate": result["settings"],
        "fid_curves": {str(w): points for w, points in curves.items()},
    }
    (out / "study_record.json").write_text(json.dumps(record, indent=2))
    return record


def quick_classifier(root: Path, data_root: str) -> Path:
    """Quick mode: a small FMNIST classifier (seconds to train) so CI never trains the real one."""
    from slimgan_pl.metrics import fmnist_classifier as fc

    path = root / "quick_classifier.pt"
    if not path.is_file():
        model, acc, info = fc.train_classifier(root=data_root, epochs=1, limit=3000, test_limit=500, log=None)
        fc.save_classifier(model, path, acc, info)
    return path


def run_all(
    study: Study,
    classifier: Path | None,
    data_root: str,
    log=print,
    only: Sequence[str] = (),
    shared: bool = False,
) -> None:
    """Run every pending run in plan order; ``only``: run-name patterns (fnmatch) that restrict it.
    ``shared``: other processes work on the same runs folder (--workers): a run is trained by the
    process that claims it first (see :func:`claim_run`), the others go on to the next one."""
    for run in study.all_runs():
        if run_status(run, study.root) == "done":
            continue
        if only and not any(fnmatch.fnmatchcase(run.name, pattern) for pattern in only):
            continue
        if shared and not claim_run(run.folder(study.root)):
            continue
        try:
            if shared and run_status(run, study.root) == "done":  # finished by another worker meanwhile
                continue
            planned = study.estimate_seconds(run) / 60
            log(f"[study] {run.name}: training {run.g_steps} G steps (~{planned:.1f} min planned)")
            try:
                record = execute(run, study, classifier, data_root)
            except RunRefused as e:
                log(f"[study] {run.name}: skipped, the config refuses it ({e})")
                continue
            fids = ", ".join(f"{r['width']:g}: {r['fmnist_fid']:.2f}" for r in record["widths"])
            log(f"[study] {run.name}: {record['train_seconds']:.0f} s training; FMNIST-FID {fids}")
        finally:
            if shared:
                (run.folder(study.root) / CLAIM).unlink(missing_ok=True)


CLAIM = ".claim"  # in a run folder while a worker trains it: that worker's process id


def claim_run(folder: Path) -> bool:
    """Claim a run for this process (created atomically, so two workers never train the same run);
    False when a live process holds it. A claim whose process has died is taken over."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / CLAIM
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                holder = int(path.read_text().strip())
            except (OSError, ValueError):  # being written this instant, or gone: someone holds it
                return False
            if _alive(holder):
                return False
            path.unlink(missing_ok=True)  # left by a worker that was killed
            continue
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        return True
    return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    return True


def run_workers(argv: list[str], workers: int, log=print) -> int:
    """Train with ``workers`` processes side by side, each with an equal share of the CPU threads and
    claiming runs from the same plan (on a 2-core CPU two one-thread runs side by side finish about
    1.6x as many runs per hour as one two-thread run: small convolutions do not use two threads
    well). Returns the worst exit code."""
    import subprocess

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = max(1, cores // workers)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    log(f"[study] {workers} workers, {threads} torch thread(s) each")
    procs = [
        subprocess.Popen([sys.executable, str(Path(__file__).resolve()), *argv, "--worker", str(k)], env=env)
        for k in range(workers)
    ]
    codes = [proc.wait() for proc in procs]
    for k, code in enumerate(codes):
        if code:
            log(f"[study] worker {k} stopped with exit code {code}; launch the study again to resume")
    return max(codes)


# ---------------------------------------------------------------------- tabulating
def mean_std(values: Sequence[float]) -> tuple[float, float]:
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def fmt(values: Sequence[float], digits: int = 2) -> str:
    if not values:
        return "-"
    m, s = mean_std(values)
    return f"{m:.{digits}f} ± {s:.{digits}f}" if len(values) > 1 else f"{m:.{digits}f}"


def width_key(width: float | str) -> float:
    """Widths read back from JSON keys and configs (``"0.25"``, 0.25) compare as numbers, to float noise."""
    return round(float(width), 9)


def same_width(a: float | str, b: float | str) -> bool:
    return width_key(a) == width_key(b)


def fid_at(record: dict[str, Any] | None, width: float) -> float | None:
    if record is None:
        return None
    return next((r["fmnist_fid"] for r in record["widths"] if same_width(r["width"], width)), None)


def curve(record: dict[str, Any] | None, width: float) -> list[tuple[int, float]]:
    if record is None:
        return []
    points = next((p for w, p in record.get("fid_curves", {}).items() if same_width(w, width)), [])
    return [(int(it), float(v)) for it, v in points]


def main_comparison(study: Study, records: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Per width: paired FIDs (seeds with both arms finished), the paired t interval and the verdict."""
    return paired_rows(
        study, records, study.main_seeds, lambda s, w: f"slimgan_seed{s}", lambda s, w: f"native_w{w:g}_seed{s}"
    )


def fast_mode_comparison(study: Study, records: dict[str, dict[str, Any]], mode: str) -> list[dict[str, Any]]:
    """Per width: SlimGAN in a fast mode (``slimgan``/a) against the fp32 SlimGAN arm (``native``/b)."""
    return paired_rows(
        study, records, study.fast_seeds, lambda s, w: f"slimgan_{mode}_seed{s}", lambda s, w: f"slimgan_seed{s}"
    )


def paired_rows(
    study: Study, records: dict[str, dict[str, Any]], seeds: Sequence[int], name_a, name_b
) -> list[dict[str, Any]]:
    """Per width: FID of run ``name_a(seed, width)`` minus that of ``name_b(seed, width)`` over the ``seeds``
    with both finished, the paired t interval (:func:`slimgan_pl.metrics.paired.paired_comparison`), the
    sign-flip permutation p and the non-inferiority verdict (margin: a share of b's mean FID); ``pending``
    until every seed has both. The row keys say ``slimgan`` for a and ``native`` for b (the main
    comparison's arms)."""
    v = study.spec["verdict"]
    rows = []
    for w in study.widths:
        pairs = [(s, fid_at(records.get(name_a(s, w)), w), fid_at(records.get(name_b(s, w)), w)) for s in seeds]
        pairs = [(s, a, b) for s, a, b in pairs if a is not None and b is not None]
        row: dict[str, Any] = {
            "width": w,
            "seeds": [s for s, _, _ in pairs],
            "slimgan": [a for _, a, _ in pairs],
            "native": [b for _, _, b in pairs],
            "verdict": "pending",
        }
        if len(pairs) >= 2:  # an interval needs a spread: two seeds at least
            margin = float(v["margin"]) * statistics.mean(row["native"])
            result = paired_comparison(row["slimgan"], row["native"], margin, level=float(v["level"]))
            row.update(
                diffs=[a - b for _, a, b in pairs],
                n=result.n,
                method=result.method,
                level=result.level,
                mean_diff=result.mean,
                low=result.low,
                high=result.high,
                margin=margin,
                p_permutation=result.p_permutation,
                seeds_to_decide=result.seeds_to_decide,
                to_decide=result.to_decide(),
                verdict=result.verdict if len(pairs) == len(seeds) else "pending",
            )
        rows.append(row)
    return rows


def consistency(study: Study, seed: int, classifier: Path | None, data_root: str, n: int) -> dict[str, Any] | None:
    """mIC of SlimGAN's widths and of the native networks of one seed, both from the same z (the same
    ``n`` seeded codes at every width) and the same classifier. Cached next to the runs."""
    from slimgan_pl.checkpoint import load_slimgan
    from slimgan_pl.evaluate import extract
    from slimgan_pl.metrics.consistency import mean_inconsistency
    from slimgan_pl.metrics.fmnist_classifier import FMNISTFeatureExtractor, load_classifier

    cache = study.root / f"consistency_seed{seed}.json"
    records = main_records(study, seed)
    if records is None or len(study.widths) < 2:
        return None
    slim, *natives = records
    trained = fingerprint(records)  # a run retrained or trained further since: recompute
    if cache.is_file() and (cached := json.loads(cache.read_text())).get("fingerprint") == trained:
        return cached
    if not has_checkpoints(*records):  # adopted without the result of these runs: nothing to compute from
        return None
    loaded = load_classifier(classifier, root=data_root, log=None)
    extractor = FMNISTFeatureExtractor(loaded.model, "features", sha256=loaded.sha256)
    slim_model = load_slimgan(slim["checkpoint"])
    slim_feats = [extract(extractor, slim_model.sample(n, w, seed=0)).features for w in study.widths]
    native_feats = [
        extract(extractor, load_slimgan(r["checkpoint"]).sample(n, w, seed=0)).features
        for w, r in zip(study.widths, natives)
    ]
    result = {
        "n": n,
        "fingerprint": trained,
        "slimgan": mean_inconsistency(study.widths, slim_feats).to_json(),
        "native": mean_inconsistency(study.widths, native_feats).to_json(),
    }
    cache.write_text(json.dumps(result, indent=2))
    return result


def side_by_side_grid(study: Study, seed: int, path: Path, n: int = 8) -> Path | None:
    """Rows: for each width, SlimGAN's samples, then the native network's, from the same z. Runs all
    adopted without their checkpoints: the grid adopted with them, if any."""
    import torch
    from torchvision.utils import save_image

    from slimgan_pl.checkpoint import load_slimgan

    records = main_records(study, seed)
    if records is None:
        return None
    slim, *natives = records
    if not has_checkpoints(*records):
        adopted = study.root / ADOPTED_GRID
        if not all(r.get("adopted_from") for r in records) or not adopted.is_file():
            return None
        if adopted.resolve() != path.resolve():
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(adopted, path)
        return path
    slim_model = load_slimgan(slim["checkpoint"])
    rows = []
    for w, native in zip(study.widths, natives):
        rows.append(slim_model.sample(n, w, seed=0))
        rows.append(load_slimgan(native["checkpoint"]).sample(n, w, seed=0))
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image((torch.cat(rows) + 1) / 2, path, nrow=n, padding=2, pad_value=1.0)
    return path


def curves_plot(study: Study, records: dict[str, dict[str, Any]], path: Path) -> Path | None:
    """FMNIST-FID during training, one panel per width: SlimGAN and the native networks (full D), mean
    over seeds with the min-max band; the narrow-D native network of the first seed dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import ScalarFormatter

    widths = study.widths
    if not any(rec.get("fid_curves") for rec in records.values()):
        return None
    cols = min(2, len(widths))
    rows_n = math.ceil(len(widths) / cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(5.5 * cols, 3.8 * rows_n), squeeze=False)
    drawn = False
    for ax, w in zip(axes.flat, widths):
        series = {
            "SlimGAN": [curve(records.get(f"slimgan_seed{s}"), w) for s in study.main_seeds],
            "native, full D": [curve(records.get(f"native_w{w:g}_seed{s}"), w) for s in study.main_seeds],
            **{
                f"SlimGAN {mode}": [curve(records.get(f"slimgan_{mode}_seed{s}"), w) for s in study.fast_seeds]
                for mode in study.fast_mode_names()
            },
        }
        for label, curves in series.items():
            agg = aggregate_curves([c for c in curves if c])
            if not agg:
                continue
            its, mean, low, high = zip(*agg)
            (line,) = ax.plot(its, mean, marker="o", ms=3, label=f"{label} (n={sum(1 for c in curves if c)})")
            ax.fill_between(its, low, high, color=line.get_color(), alpha=0.2)
            drawn = True
        narrow = curve(records.get(study.narrow_d_name(w, study.seeds[0])), w)
        if narrow:
            ax.plot(*zip(*narrow), ls="--", label=f"native, narrow D (seed {study.seeds[0]})")
        ax.set_title(f"width {w:g}")
        ax.set_xlabel("G steps")
        ax.set_ylabel(f"FMNIST-FID ({study.mode_spec['fid']['n_fake']} fakes; log scale)")
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.yaxis.set_minor_formatter(ScalarFormatter())
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(widths) :]:
        ax.set_visible(False)
    if not drawn:
        plt.close(fig)
        return None
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def mic_over(record: dict[str, Any], widths: Sequence[float]) -> float | None:
    """The run's FMNIST-mIC over the pairs of ``widths`` only: a run trained at more widths (e.g. 8) has
    an all-pairs mIC over other pairs, not comparable with a 4-width run's. None without consistency."""
    consistency = record.get("consistency")
    if not consistency:
        return None
    wanted = {width_key(w) for w in widths}
    if {width_key(r["width"]) for r in record["widths"]} == wanted:
        return consistency["mIC"]
    inside = [v for pair, v in consistency["pairs"].items() if {width_key(x) for x in pair.split("-")} <= wanted]
    return statistics.mean(inside) if inside else None


def run_row(name: str, record: dict[str, Any] | None, widths: Sequence[float], status: str = "pending") -> str:
    """One table row of a single run: FMNIST-FID per width, mIC, training seconds."""
    if record is None:
        return f"| {name} | " + " | ".join(status for _ in widths) + " | | |"
    fids = [fid_at(record, w) for w in widths]
    shared = mic_over(record, widths)
    mic = f"{shared:.2f}" if shared is not None else "-"
    return (
        f"| {name} | "
        + " | ".join(f"{f:.2f}" if f is not None else "-" for f in fids)
        + f" | {mic} | {record['train_seconds']:.0f} |"
    )


def verdict_basis(row: dict[str, Any]) -> str:
    """What a verdict rests on: the interval, the method and n, and for an undecided one the seeds
    estimated to decide it, e.g. ``[-2.89, +8.42], paired t, n=3; ~8 seeds to decide``."""
    text = f"[{row['low']:+.2f}, {row['high']:+.2f}], {row['method']}, n={row['n']}"
    return text + (f"; {row['to_decide']}" if row["verdict"] == "undecided" else "")


def decision_cells(row: dict[str, Any]) -> str:
    """The table cells of one paired comparison row: per-seed differences, mean, margin, the verdict with
    its interval, method, n (and seeds to decide), and the permutation p as a second opinion."""
    return (
        ", ".join(f"{d:+.2f}" for d in row["diffs"])
        + f" | {row['mean_diff']:+.2f} | {row['margin']:.2f} | **{row['verdict']}**: {verdict_basis(row)} "
        f"| {row['p_permutation']:.3g}"
    )


RULE_NOTE = (
    "interval: the {level:.0%} paired Student-t interval of the mean difference over seeds ({method}; "
    "mean ± t(n-1) sd / sqrt(n)). Seeds to decide: the n at which that interval's half-width, at the observed "
    "sd, would fall below the distance of the mean from the margin (the usual sample-size formula; an "
    "estimate, not a promise). Second opinion: the exact sign-flip permutation p-value of a zero mean "
    "difference (SciPy; with n seeds it cannot go below 2/2^n, 0.25 at 3 seeds)."
)


def build_report(study: Study, report: Path, classifier: Path | None, data_root: str) -> str:
    """Write the markdown report (tables, curves, same-z grid, computed verdicts) for the finished runs."""
    assets = report.with_suffix("")  # <report>/ folder beside <report>.md
    runs = study.all_runs()
    records = {r.name: rec for r in runs if (rec := read_record(r.folder(study.root)))}
    widths, seeds, s0 = study.widths, study.main_seeds, study.seeds[0]
    v = study.spec["verdict"]
    lines = [f"# SlimGAN vs the official individually trained baseline on Fashion-MNIST ({study.mode} mode)", ""]
    if study.mode != "full":
        lines += [
            "**Quick mode: toy sizes and a few iterations. These numbers check the pipeline and mean "
            "nothing about the method.**",
            "",
        ]
    lines += [
        "Generated by `python experiments/reproduce_fmnist/run_study.py"
        + (f" --mode {study.mode}" if study.mode != "full" else "")
        + "` from `study.yaml`. "
        "FMNIST-FID/IS/KID/mIC use the project's own Fashion-MNIST classifier, not Inception-v3: they are "
        "not comparable with published Inception numbers.",
        "",
    ]
    s = study.spec["slimgan"]
    lines += [
        f"Arms: **SlimGAN** ({len(widths)} widths {', '.join(f'{w:g}' for w in widths)}, stepwise="
        f"{s['stepwise']}, alpha {s['alpha']:g}, n_share {s['n_share']}) against the **official baseline**: one "
        "native generator per width, built and initialised with ngf*w channels (`model.baseline.g_width`), "
        f"with a full-size D (`model.baseline.d_width=1.0`, every seed; **the verdict rests on this one**) "
        f"and with a narrow D of ndf*w channels (seed {s0}). Same recipe (`{' '.join(study.spec['recipe'])}`), "
        f"same data order (same seed), {study.g_steps} G steps per run (ablations {study.ablation_g_steps}).",
        "",
    ]
    any_rec = next(iter(records.values()), None)
    if any_rec:
        ev = any_rec["evaluate"]
        lines += [
            f"Final evaluation: {ev['n_fake']} fakes per width vs {ev['n_real']} real {ev['split']} images "
            f"(classifier test accuracy {any_rec['extractor']['test_accuracy']:.3f}); curves: callbacks.fid "
            f"every {study.mode_spec['fid_every']} G steps with {study.mode_spec['fid']['n_fake']} fakes.",
            "",
        ]

    # main comparison and verdicts
    comparison = main_comparison(study, records)
    lines += [
        f"## Per-width verdict: SlimGAN vs native networks with a full-size D ({len(seeds)} seeds, paired)",
        "",
        "Difference = FID(SlimGAN) - FID(native) per seed; "
        + RULE_NOTE.format(level=float(v["level"]), method=METHOD)
        + ' The claim "SlimGAN matches or beats the native network" is **held** when the '
        f"whole interval is below the margin ({v['margin']:.0%} of the native mean FID), **not held** when it "
        "is wholly above, else **undecided**.",
        "",
        "| width | MACs | SlimGAN FID | native FID | per-seed differences | mean difference | margin | "
        "verdict: interval, method, n | sign-flip p |",
        "|---" * 9 + "|",
    ]
    for row in comparison:
        w = row["width"]
        macs = next(
            (
                r["macs"]
                for rec in records.values()
                for r in rec["widths"]
                if rec["arm"] == "native" and same_width(r["width"], w)
            ),
            None,
        )
        if "diffs" in row:
            lines.append(
                f"| {w:g} | {macs / 1e6:.2f}M | {fmt(row['slimgan'])} | {fmt(row['native'])} | {decision_cells(row)} |"
            )
        else:
            lines.append(f"| {w:g} | - | - | - | - | - | - | pending | - |")
    lines += [
        "",
        "Narrow-D variant (seed %d, one seed: no interval):" % s0,
        "",
        "| width | SlimGAN FID | native, full D | native, narrow D (ndf*w) |",
        "|---|---|---|---|",
    ]
    for w in widths:
        cells = [
            fid_at(records.get(n), w)
            for n in (f"slimgan_seed{s0}", f"native_w{w:g}_seed{s0}", study.narrow_d_name(w, s0))
        ]
        lines.append(f"| {w:g} | " + " | ".join(f"{c:.2f}" if c is not None else "pending" for c in cells) + " |")

    # fast training modes
    for mode in study.fast_mode_names():
        rows = fast_mode_comparison(study, records, mode)
        mode_runs = [r for r in study.fast_mode_runs() if r.arm == mode]
        lines += [
            "",
            f"## Fast training mode `{mode}` vs fp32 (SlimGAN, {len(study.fast_seeds)} seeds, paired)",
            "",
            f"The SlimGAN arm again with `{' '.join(study.spec['fast_modes'][mode])}`, same seeds (same initial "
            "weights and data order), steps and evaluation (fp32). Difference = FID(mode) - FID(fp32); the "
            f"speed issue's rule (within {v['margin']:.0%} of fp32 or better) is **held** when the whole "
            "interval is below the margin, **not held** when wholly above, else **undecided**; interval, seeds "
            "to decide and p as above.",
            "",
            "| width | fp32 FID | mode FID | per-seed differences | mean difference | margin | "
            "verdict: interval, method, n | sign-flip p |",
            "|---" * 8 + "|",
        ]
        for row in rows:
            if "diffs" in row:
                fids = f"{fmt(row['native'])} | {fmt(row['slimgan'])}"
                lines.append(f"| {row['width']:g} | {fids} | {decision_cells(row)} |")
            else:
                lines.append(f"| {row['width']:g} | - | - | - | - | - | pending | - |")
        done = [records[r.name] for r in mode_runs if r.name in records]
        if done:
            threads = sorted({rec["evaluate"].get("threads") for rec in done})
            lines.append(
                "\nTraining s per seed: " + ", ".join(f"{rec['train_seconds']:.0f}" for rec in done) + " "
                f"(torch threads {', '.join(map(str, threads))}; speed is measured by "
                "`experiments/benchmarks/train_step.py`, not by these runs)."
            )

    # curves
    lines += ["", "## FMNIST-FID during training", ""]
    plot = curves_plot(study, records, assets / "fid_curves.png")
    if plot:
        lines += [
            f"Mean over seeds, band: min to max over seeds; log scale. ![FMNIST-FID curves]({assets.name}/{plot.name})",
            "",
        ]
    else:
        lines += ["pending", ""]

    # consistency
    n_mic = min(int(study.mode_spec["evaluate"]["n_fake"]), 2000)
    mics = {sd: c for sd in seeds if (c := consistency(study, sd, classifier, data_root, n_mic))}
    lines += [
        "## Consistency between widths (FMNIST-mIC, same z at every width; lower = more consistent)",
        "",
        f"Both from the same {n_mic} seeded z and classifier.",
        "",
        "| generators | mIC (mean ± std over seeds) | per seed |",
        "|---|---|---|",
    ]
    for key, label in (
        ("slimgan", "SlimGAN (one network, all widths)"),
        ("native", "the native networks (one per width)"),
    ):
        values = [mics[sd][key]["mIC"] for sd in mics]
        lines.append(f"| {label} | {fmt(values)} | " + ", ".join(f"{x:.2f}" for x in values) + " |")

    # wall time
    lines += [
        "",
        "## Training wall time (this machine, seconds)",
        "",
        "| arm | per seed | mean ± std |",
        "|---|---|---|",
    ]
    slim_t = [records[n]["train_seconds"] for sd in seeds if (n := f"slimgan_seed{sd}") in records]
    native_t = [
        sum(records[f"native_w{w:g}_seed{sd}"]["train_seconds"] for w in widths)
        for sd in seeds
        if all(f"native_w{w:g}_seed{sd}" in records for w in widths)
    ]
    narrow_t = (
        [sum(records[study.narrow_d_name(w, s0)]["train_seconds"] for w in widths)]
        if all(study.narrow_d_name(w, s0) in records for w in widths)
        else []
    )
    for label, values in (
        ("SlimGAN (all widths, one run)", slim_t),
        ("native networks, full D (sum over widths)", native_t),
        ("native networks, narrow D (sum, first seed)", narrow_t),
    ):
        lines.append(f"| {label} | " + ", ".join(f"{x:.0f}" for x in values) + f" | {fmt(values, 0)} |")
    main_names = {r.name for r in study.main_runs()}  # not an added fast-mode seed's fp32 partner
    main_threads = sorted({str(rec["evaluate"].get("threads")) for name, rec in records.items() if name in main_names})
    if len(main_threads) > 1:
        lines.append(f"\nThe main runs ran with different torch thread counts ({', '.join(main_threads)}).")
    total_t = sum(r["train_seconds"] + r["eval_seconds"] for r in records.values())
    lines.append(f"\nWhole study so far: {total_t / 3600:.2f} h of training and evaluation ({len(records)} runs).")
    if any(r.get("resumed") for r in records.values()):
        lines.append("Runs resumed after an interruption count only their last sitting's time.")
    if adopted := [r for r in records.values() if r.get("adopted_from")]:
        lines.append(
            f"{len(adopted)} of these runs finished in earlier sittings on machines that did not keep their disks "
            f"(records adopted from `{adopted[0]['adopted_from']}`, not retrained)."
        )

    # ablations
    lines += [
        "",
        f"## Ablations (seed {s0}, {study.ablation_g_steps} G steps; one change each from the SlimGAN arm)",
        "",
        "| arm | " + " | ".join(f"FID w{w:g}" for w in widths) + " | mIC | train s |",
        "|---" * (len(widths) + 3) + "|",
    ]
    ref = records.get(f"slimgan_seed{s0}")
    lines.append(
        run_row(
            f"SlimGAN reference (alpha {s['alpha']:g}, stepwise, n_share {s['n_share']}, "
            f"{len(widths)} widths; {study.g_steps} G steps)",
            ref,
            widths,
        )
    )
    seed_refs = [rec for sd in seeds if (rec := records.get(f"slimgan_seed{sd}"))]
    if len(seed_refs) > 1:  # how far one seed's FID moves: an ablation inside this range shows no effect
        spans = [[fid_at(rec, w) for rec in seed_refs] for w in widths]
        own_mics = [rec["consistency"]["mIC"] for rec in seed_refs if rec.get("consistency")]
        lines.append(
            f"| SlimGAN reference, range over its {len(seed_refs)} seeds | "
            + " | ".join(f"{min(v):.2f}-{max(v):.2f}" if None not in v else "-" for v in spans)
            + (f" | {min(own_mics):.2f}-{max(own_mics):.2f} | |" if own_mics else " | - | |")
        )
    for run in study.ablation_runs():
        if run.kind != "ablation":
            continue
        status = run_status(run, study.root)
        if status == "refused":
            reason = json.loads((run.folder(study.root) / "refused.json").read_text())["error"]
            lines.append(f"| {run.arm} | refused by the config: {reason} |" + " |" * (len(widths) + 1))
        else:
            lines.append(run_row(run.arm, records.get(run.name), widths, status))
    ref_threads = ref["evaluate"].get("threads") if ref else None
    other_threads = [
        f"{run.arm} {rec['evaluate'].get('threads')}"
        for run in study.ablation_runs()
        if (rec := records.get(run.name)) and ref_threads and rec["evaluate"].get("threads") != ref_threads
    ]
    if other_threads:
        lines.append(
            f"\nTorch threads of runs that differ from the reference's {ref_threads}: "
            + ", ".join(other_threads)
            + "; their train s is not comparable with the reference's (their FIDs are: same recipe, seed "
            "and steps)."
        )
    for run in study.ablation_runs():
        rec = records.get(run.name)
        if rec and run.kind == "ablation" and set(run.widths) - set(widths):
            lines.append(
                f"\n{run.arm}: also widths "
                + ", ".join(
                    f"{w:g}: {fid_at(rec, w):.2f}" for w in run.widths if w not in widths and fid_at(rec, w) is not None
                )
                + (
                    f"; its mIC column is over the pairs of the table's widths, over all its "
                    f"{len(run.widths)} widths it is {rec['consistency']['mIC']:.2f}"
                    if rec.get("consistency")
                    else ""
                )
            )
    n_share_runs = {r.arm: records.get(r.name) for r in study.ablation_runs() if r.arm.startswith("n_share")}
    candidates = {f"n_share {s['n_share']} (main)": ref, **n_share_runs}
    finished = {k: statistics.mean(x["fmnist_fid"] for x in rec["widths"]) for k, rec in candidates.items() if rec}
    if len(finished) > 1:
        best = min(finished, key=finished.get)
        lines.append(
            "\nn_share by mean FID over widths: "
            + ", ".join(f"{k} {x:.2f}" for k, x in finished.items())
            + f"; best: **{best}**"
            + (
                " (agrees with the main arm's choice)"
                if "(main)" in best
                else " (the main arm used another n_share: see the reading)"
            )
        )

    cond_runs = [r for r in study.ablation_runs() if r.kind == "conditional"]
    if cond_runs:
        cw = study.widths_of_conditional()
        lines += [
            "",
            f"## Conditional (`{study.spec['conditional_recipe'][0]}`, seed {s0}): scBN vs switchable CBN",
            "",
            "| conditional BN | " + " | ".join(f"FID w{w:g}" for w in cw) + " | mIC | train s |",
            "|---" * (len(cw) + 3) + "|",
        ]
        lines += [run_row(r.arm, records.get(r.name), cw, run_status(r, study.root)) for r in cond_runs]

    # figures
    lines += ["", "## Samples", ""]
    grid = side_by_side_grid(study, s0, assets / "slimgan_vs_native.png")
    if grid:
        lines += [
            f"Same z (seed {s0} runs): for each width ({', '.join(f'{w:g}' for w in widths)}), one row "
            "from SlimGAN, then one row from the native network of that width.",
            "",
            f"![SlimGAN vs native networks]({assets.name}/{grid.name})",
            "",
        ]
    else:
        lines += ["pending", ""]

    lines += ["## Verdicts (computed from the intervals above)", ""]
    lines += [
        f"- width {row['width']:g}: **{row['verdict']}**"
        + (
            f" (mean difference {row['mean_diff']:+.2f}, margin {row['margin']:.2f}, interval {verdict_basis(row)})"
            if "diffs" in row
            else ""
        )
        for row in comparison
    ]
    if study.mode == "full":
        reading = CONCLUSIONS_FILE.read_text().strip() if CONCLUSIONS_FILE.is_file() else ""
        lines += [
            "",
            reading
            if reading and TEMPLATE_MARK not in reading
            else "## Reading\n\n(pending: written by hand once the full study has run; see conclusions.md)",
        ]
    text = "\n".join(lines) + "\n"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(text)
    assets.mkdir(parents=True, exist_ok=True)
    (assets / "records.json").write_text(json.dumps(records, indent=1))
    (assets / "consistency.json").write_text(json.dumps({str(sd): c for sd, c in mics.items()}, indent=1))
    return text


# ---------------------------------------------------------------------- --seeds auto
def arm_comparisons(study: Study, records: dict[str, dict[str, Any]], arm: str) -> dict[str, list[dict[str, Any]]]:
    """The verdict rows of one arm, by comparison: main -> SlimGAN vs native; fast -> each mode vs fp32."""
    if arm == "main":
        return {"SlimGAN vs native": main_comparison(study, records)}
    return {f"{mode} vs fp32": fast_mode_comparison(study, records, mode) for mode in study.fast_mode_names()}


def verdict_line(label: str, row: dict[str, Any]) -> str:
    if "diffs" not in row:
        return f"{label}, width {row['width']:g}: pending ({len(row['seeds'])} paired seeds finished)"
    return f"{label}, width {row['width']:g}: {row['verdict']}, {verdict_basis(row)}, margin {row['margin']:.2f}"


def finished_records(study: Study, adoptable: dict[str, dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """The finished records of the planned runs (the runs folder's, then what a launch would adopt)."""
    found = {}
    for run in study.all_runs():
        rec = read_record(run.folder(study.root)) or (adoptable or {}).get(run.name)
        if rec is not None and rec["iterations"] >= run.g_steps:
            found[run.name] = rec
    return found


def pending_arm_runs(study: Study, arm: str) -> list[Run]:
    return [r for r in study.arm_runs(arm) if run_status(r, study.root) != "done"]


def auto_seeds(study: Study, arm: str, max_seeds: int, train, log=print) -> int:
    """--seeds auto: train the arm's pending runs, recompute its verdicts from the finished records, and
    while one is undecided and the arm has fewer than ``max_seeds`` paired seeds, add the next seed (its
    runs only: the other arm and the ablations are not touched) and go on. ``train(names)`` trains the
    named runs (in this process or with --workers) and returns an exit code. The added seeds are saved in
    the runs folder first, so a stopped launch resumes where it was. Returns an exit code."""
    while True:
        pending = pending_arm_runs(study, arm)
        if pending:
            seeds = study.arm_seeds(arm)
            names = ", ".join(r.name for r in pending)
            log(f"[study] --seeds auto, {arm} arm at seeds {seeds}: training {len(pending)} runs: {names}")
            if study.extra_seeds[arm]:
                study.save_extra_seeds()
            code = train([r.name for r in pending])
            if code:
                return code
        tables = arm_comparisons(study, finished_records(study), arm)
        rows = [(label, row) for label, table in tables.items() for row in table]
        for label, row in rows:
            log(f"[study]   {verdict_line(label, row)}")
        if unfinished := [f"{label} {row['width']:g}" for label, row in rows if row["verdict"] == "pending"]:
            log(
                f"[study] --seeds auto stops: {', '.join(unfinished)} still pending (a run refused or not "
                "finished: see above); launch again to retry"
            )
            return 1
        n = len(study.arm_seeds(arm))
        undecided = [(label, row) for label, row in rows if row["verdict"] == "undecided"]
        if not undecided:
            log(f"[study] --seeds auto: every verdict of the {arm} arm is decided at {n} paired seeds")
            return 0
        if n >= max_seeds:
            estimates = "; ".join(f"{label} {row['width']:g}: {row['to_decide']}" for label, row in undecided)
            log(f"[study] --seeds auto: --max-seeds {max_seeds} reached, {len(undecided)} undecided ({estimates})")
            return 0
        seed = study.next_seed(arm)
        study.add_seeds(arm, [seed])
        study.save_extra_seeds()
        log(f"[study] --seeds auto: {len(undecided)} verdicts of the {arm} arm undecided at {n} seeds; adding {seed}")


def auto_plan_lines(study: Study, arm: str, max_seeds: int, records: dict[str, dict[str, Any]]) -> list[str]:
    """--plan with --seeds auto: the arm's verdicts now, the seeds estimated to decide them, and the runs
    and estimated time of the next round and of every round up to --max-seeds."""
    two = float(study.spec["cost"]["two_workers_throughput"])

    def hours(seconds: float) -> str:
        return f"~{seconds / 3600:.2f} h (~{seconds / two / 3600:.2f} h with --workers 2)"

    seeds = study.arm_seeds(arm)
    lines = ["", f"--seeds auto, {arm} arm: {len(seeds)} paired seeds now ({seeds}), --max-seeds {max_seeds}"]
    rows = [(label, row) for label, table in arm_comparisons(study, records, arm).items() for row in table]
    lines += [f"  {verdict_line(label, row)}" for label, row in rows]
    pending = [r for r in study.arm_runs(arm) if r.name not in records]
    if pending:
        cost = sum(study.estimate_seconds(r) for r in pending)
        lines.append(f"first the arm's {len(pending)} unfinished runs at these seeds: {hours(cost)}")
        return lines + ["(the verdicts and the next seed are decided once they have finished)"]
    undecided = [row for _, row in rows if row["verdict"] == "undecided"]
    if not undecided:
        return lines + ["every verdict of this arm is decided: nothing to add"]
    if len(seeds) >= max_seeds:
        return lines + [f"at --max-seeds {max_seeds} already: nothing to add (raise it to go on)"]
    seed = study.next_seed(arm)
    extra = {a: list(v) for a, v in study.extra_seeds.items()}
    after = Study(study.mode, study.spec, study.root, study.g_steps, study.ablation_g_steps, extra)
    after.add_seeds(arm, [seed])
    new = [r for r in after.arm_runs(arm) if r.seed == seed]
    todo = [r for r in new if r.name not in records]
    cost = sum(after.estimate_seconds(r) for r in todo)
    each = ", ".join(f"{r.name} ~{after.estimate_seconds(r) / 60:.1f} min" for r in todo)
    lines.append(f"next round: seed {seed}, {len(todo)} runs ({each}): {hours(cost)}")
    estimates = [row["seeds_to_decide"] for row in undecided]
    target = max_seeds if None in estimates else min(max_seeds, max(estimates))
    per_seed = sum(after.estimate_seconds(r) for r in new)  # a later seed trains all of its runs
    total = cost + per_seed * max(0, target - len(seeds) - 1)
    to_decide = [f"{label} {row['width']:g}: {row['to_decide']}" for label, row in rows if row in undecided]
    lines.append("seeds estimated to decide (at the spread seen so far): " + ", ".join(to_decide))
    lines.append(
        f"up to {target - len(seeds)} rounds (seeds {seed}-{seed + target - len(seeds) - 1}) until "
        + ("--max-seeds" if target == max_seeds else "the estimates say every verdict decides")
        + f": {hours(total)}; it stops as soon as every verdict is decided"
    )
    return lines


def classifier_sha(classifier: Path | None) -> str:
    """Weights sha256 of the FMNIST classifier the runs are scored with (the stored records must match)."""
    from slimgan_pl.metrics.fmnist_classifier import read_classifier, resolve_path

    return read_classifier(resolve_path(classifier)).sha256


def trained_here(study: Study) -> bool:
    """Whether any finished run of this runs folder was trained here (not only adopted)."""
    return any((rec := read_record(r.folder(study.root))) and not rec.get("adopted_from") for r in study.all_runs())


def main_finished(study: Study) -> bool:
    return all(run_status(r, study.root) == "done" for r in study.main_runs())


# ---------------------------------------------------------------------- CLI
def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", default="full", help="full | quick (study.yaml's modes)")
    p.add_argument("--runs-dir", default=None, help="run folders (default experiments/reproduce_fmnist/runs/<mode>)")
    p.add_argument(
        "--report",
        default=None,
        help=f"report path (default {FULL_REPORT.relative_to(REPO)} in full "
        "mode once the main comparison has finished, else <runs-dir>/report.md)",
    )
    p.add_argument(
        "--classifier",
        default=None,
        help="FMNIST classifier file (default: the user cache; quick mode trains a small one in the runs folder)",
    )
    p.add_argument("--data-root", default=None, help="Fashion-MNIST root (default: Debian's)")
    p.add_argument("--g-steps", type=int, default=None, help="G steps of every run (default: the mode's, full 2000)")
    p.add_argument(
        "--ablation-g-steps",
        type=int,
        default=None,
        help="G steps of the ablation and conditional runs (default: --g-steps, else the mode's)",
    )
    p.add_argument(
        "--committed-records",
        default=None,
        metavar="PATH|none",
        help="records.json of earlier sittings whose finished runs are adopted instead of retrained (default "
        f"in full mode: {COMMITTED_RECORDS.relative_to(REPO)}; none: adopt nothing)",
    )
    p.add_argument("--plan", action="store_true", help="list the runs, which have finished and the estimated time")
    p.add_argument("--report-only", action="store_true", help="tabulate the finished runs without training")
    p.add_argument(
        "--only",
        nargs="+",
        default=(),
        metavar="PATTERN",
        help="train only the runs whose names match (fnmatch, e.g. 'abl_*'); see --plan for names",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes training side by side, each with CPU cores / workers threads (default 1)",
    )
    p.add_argument(
        "--seeds",
        choices=["auto"],
        default=None,
        help="auto: add paired seeds to one arm (--arm) one at a time, each after the verdicts of the seeds "
        "before it, until every verdict of that arm is decided or --max-seeds is reached (default: the mode's "
        "seeds, plus any an earlier auto launch added)",
    )
    p.add_argument("--max-seeds", type=int, default=None, help="with --seeds auto: the most paired seeds of the arm")
    p.add_argument(
        "--arm",
        choices=ARMS,
        default=None,
        help="with --seeds auto: main (SlimGAN vs native networks, default) or fast (the fast modes vs fp32)",
    )
    p.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)  # one of --workers' processes
    args = p.parse_args(argv)
    if args.workers < 1:
        raise SystemExit(f"run_study: --workers must be >= 1, got {args.workers}")
    if args.seeds is None and (args.max_seeds is not None or args.arm is not None):
        p.error("--max-seeds and --arm go with --seeds auto")
    if args.seeds == "auto":
        if args.max_seeds is None or args.max_seeds < 2:
            p.error(
                "--seeds auto needs --max-seeds N, N >= 2 (the most paired seeds of the arm)"
                + (f", got {args.max_seeds}" if args.max_seeds is not None else "")
            )
        if args.report_only or args.only:
            p.error("--seeds auto trains its arm's runs: give it without --report-only and --only")
    arm = args.arm or "main"

    from slimgan_pl.data.fashion_mnist import DEBIAN_ROOT

    data_root = args.data_root or DEBIAN_ROOT
    root = Path(args.runs_dir) if args.runs_dir else HERE / "runs" / args.mode
    study = Study.load(args.mode, root, args.g_steps, args.ablation_g_steps)
    store = args.committed_records or (str(COMMITTED_RECORDS) if args.mode == "full" else "none")
    store = None if store.lower() == "none" else Path(store)
    if store:  # seeds an earlier auto launch added, carried by the committed records
        for extra_arm, seeds in study.seeds_named_in(list(load_store(store))).items():
            study.add_seeds(extra_arm, seeds)
    if args.plan:  # reads only: what a launch would adopt is marked, nothing is written
        adoptable = adoptable_records(study, load_store(store), None, log=lambda _: None) if store else {}
        print("\n".join(study.plan_lines(adoptable)))
        if args.seeds == "auto":
            print("\n".join(auto_plan_lines(study, arm, args.max_seeds, finished_records(study, adoptable))))
        return 0
    root.mkdir(parents=True, exist_ok=True)
    classifier = (
        Path(args.classifier)
        if args.classifier
        else (quick_classifier(root, data_root) if args.mode != "full" else None)
    )
    if args.worker is not None:  # started by run_workers: train what it can claim, no report
        run_all(
            study,
            classifier,
            data_root,
            log=lambda m: print(f"{m} (worker {args.worker})", flush=True),
            only=args.only,
            shared=True,
        )
        return 0
    if any(study.extra_seeds.values()):
        study.save_extra_seeds()  # the workers plan from the runs folder
    if store:
        adopt_records(study, store, classifier_sha(classifier))
    print("\n".join(study.plan_lines()[-3:]), flush=True)  # the estimate, before hours of training
    worker_argv = [
        "--mode", args.mode, "--runs-dir", str(root), "--data-root", data_root,
        "--g-steps", str(study.g_steps), "--ablation-g-steps", str(study.ablation_g_steps),
        "--committed-records", "none",
        *(["--classifier", str(classifier)] if classifier else []),
    ]  # fmt: skip

    def train(names: Sequence[str]) -> int:
        if args.workers > 1:
            return run_workers([*worker_argv, *(["--only", *names] if names else [])], args.workers)
        run_all(study, classifier, data_root, only=names)
        return 0

    code = 0
    if args.seeds == "auto":
        code = auto_seeds(study, arm, args.max_seeds, train)
    elif not args.report_only:
        code = train(args.only)
    if args.report:
        report = Path(args.report)
    elif args.mode == "full" and main_finished(study) and trained_here(study):
        report = FULL_REPORT
    else:  # the committed report stays until this runs folder has a finished main comparison and new runs
        report = root / "report.md"
    build_report(study, report, classifier, data_root)
    print(f"[study] report: {report}")
    return code


if __name__ == "__main__":
    sys.exit(main())
