"""SlimGAN reproduction study on Fashion-MNIST: launch every run, evaluate it, tabulate the report.

    python experiments/reproduce_fmnist/run_study.py                 # full study (resumable)
    python experiments/reproduce_fmnist/run_study.py --mode quick    # whole pipeline, toy sizes (CI)
    python experiments/reproduce_fmnist/run_study.py --plan          # list the runs and which are done
    python experiments/reproduce_fmnist/run_study.py --report-only   # tabulate what has finished

The runs are declared in ``study.yaml`` (Hydra overrides of ``slimgan-train``). Each run trains in
this process through the same ``slimgan_pl.train.train`` as ``slimgan-train``, then is evaluated
with slimgan-eval's ``evaluate_checkpoint`` (FMNIST-FID/IS/KID, mIC, MACs) and leaves
``study_record.json`` in its folder: a run with that file is skipped when the study is launched
again, so the study can be completed over several sittings. A run interrupted during training
resumes from its ``checkpoints/last.ckpt``.

Order: the alpha sweep (first seed) picks SlimGAN's alpha by mean FMNIST-FID over the widths; then
the main comparison (SlimGAN at that alpha vs one individually trained GAN per width, every seed),
the ablations (first seed) and the conditional arms (first seed).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import math
import statistics
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
STUDY_FILE = HERE / "study.yaml"
CONCLUSIONS_FILE = HERE / "conclusions.md"   # hand-written reading of the full study, included in the report
FULL_REPORT = REPO / "experiments" / "results" / "fmnist_reproduction.md"


@dataclass
class Run:
    """One training run of the study."""

    name: str                    # folder name, unique in the study
    arm: str                     # slimgan | individual | alpha=<a> | <ablation> | <conditional arm>
    kind: str                    # alpha | main | ablation | conditional
    seed: int
    overrides: list[str]
    width: float | None = None   # an individual GAN's width

    def folder(self, root: Path) -> Path:
        return root / self.name


@dataclass
class Study:
    mode: str
    spec: dict[str, Any]
    root: Path                   # run folders
    seeds: list[int] = field(default_factory=list)

    @classmethod
    def load(cls, mode: str, root: Path, path: Path = STUDY_FILE) -> "Study":
        spec = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
        if mode not in spec["modes"]:
            raise SystemExit(f"run_study: --mode must be one of {sorted(spec['modes'])}, got {mode!r}")
        return cls(mode, spec, root, list(spec["modes"][mode]["seeds"]))

    @property
    def mode_spec(self) -> dict[str, Any]:
        return self.spec["modes"][self.mode]

    def _unconditional(self, *extra: str) -> list[str]:
        return [*self.spec["recipe"], *self.mode_spec["overrides"], *extra]

    # ------------------------------------------------------------------ the runs
    def alpha_runs(self) -> list[Run]:
        s = self.seeds[0]
        return [Run(slimgan_name(a, s), f"alpha={a:g}", "alpha", s,
                    self._unconditional(f"slim.alpha={a}", f"slim.widths={_list(self.spec['widths'])}"))
                for a in self.spec["alpha_sweep"]]

    def main_runs(self, alpha: float) -> list[Run]:
        widths = self.spec["widths"]
        runs = []
        for s in self.seeds:
            runs.append(Run(slimgan_name(alpha, s), "slimgan", "main", s,
                            self._unconditional(f"slim.alpha={alpha}", f"slim.widths={_list(widths)}")))
            for w in widths:  # a plain GAN: G at width w only, D = one SlimGAN width's D
                runs.append(Run(f"individual_w{w:g}_seed{s}", "individual", "main", s,
                                self._unconditional(f"slim.widths=[{w}]"), width=float(w)))
        return runs

    def ablation_runs(self, alpha: float) -> list[Run]:
        s = self.seeds[0]
        return [Run(f"{name}_seed{s}", name, "ablation", s,
                    self._unconditional(f"slim.alpha={alpha}", f"slim.widths={_list(self.spec['widths'])}",
                                        *overrides))
                for name, overrides in self.spec["ablations"].items()]

    def conditional_runs(self) -> list[Run]:
        s = self.seeds[0]
        base = [*self.spec["conditional_recipe"], *self.mode_spec["conditional_overrides"]]
        return [Run(f"cond_{name}_seed{s}", name, "conditional", s, [*base, *overrides])
                for name, overrides in self.spec["conditional"].items()]

    def chosen_alpha(self) -> float | None:
        """Alpha with the lowest mean FMNIST-FID over widths among the finished sweep runs
        (None until every sweep run has finished)."""
        scores = {}
        for run in self.alpha_runs():
            record = read_record(run.folder(self.root))
            if record is None:
                return None
            scores[float(run.arm.split("=")[1])] = statistics.mean(r["fmnist_fid"] for r in record["widths"])
        return min(scores, key=scores.get)

    def all_runs(self) -> list[Run]:
        """Every run whose overrides are known now (main and ablations need the chosen alpha)."""
        runs = self.alpha_runs()
        alpha = self.chosen_alpha()
        if alpha is not None:
            names = {r.name for r in runs}
            runs += [r for r in self.main_runs(alpha) + self.ablation_runs(alpha) if r.name not in names]
        return runs + self.conditional_runs()


def slimgan_name(alpha: float, seed: int) -> str:
    return f"slimgan_alpha{alpha:g}_seed{seed}"


def _list(values: Iterable[float]) -> str:
    return "[" + ",".join(str(v) for v in values) + "]"


def read_record(folder: Path) -> dict[str, Any] | None:
    path = folder / "study_record.json"
    return json.loads(path.read_text()) if path.is_file() else None


# ---------------------------------------------------------------------- executing one run
def compose_config(overrides: Sequence[str]):
    from hydra import compose, initialize_config_dir

    from slimgan_pl.config import config_dir, register_resolvers

    register_resolvers()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def execute(run: Run, study: Study, classifier: Path | None, data_root: str) -> dict[str, Any]:
    """Train (or resume) and evaluate one run; write and return its ``study_record.json``."""
    from slimgan_pl.evaluate import evaluate_checkpoint
    from slimgan_pl.train import train

    out = run.folder(study.root)
    last = out / "checkpoints" / "last.ckpt"
    # Interrupted in an earlier sitting: resume=auto continues from the run folder's last.ckpt.
    resumed = last.is_file()
    overrides = [*run.overrides, f"seed={run.seed}", f"paths.output_dir={out}", f"data.root={data_root}",
                 "resume=auto"]
    cfg = compose_config(overrides)
    start = time.perf_counter()
    summary = train(cfg)
    train_seconds = time.perf_counter() - start
    if summary.get("preempted"):  # SIGTERM/USR1 saved last.ckpt: leave the run unfinished, resumable
        raise SystemExit(f"run_study: {run.name} stopped by a signal at iteration {summary['iterations']}; "
                         "launch the study again to resume it")

    start = time.perf_counter()
    result = evaluate_checkpoint(last, data_root=data_root, classifier_path=classifier, out_dir=out, log=None,
                                 **study.mode_spec["evaluate"])
    record = {
        **asdict(run), "mode": study.mode, "iterations": summary["iterations"], "resumed": resumed,
        "train_seconds": train_seconds, "eval_seconds": time.perf_counter() - start,
        "checkpoint": str(last), "widths": result["widths"], "consistency": result["consistency"],
        "extractor": result["extractor"], "evaluate": result["settings"],
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


def run_all(study: Study, classifier: Path | None, data_root: str, log=print,
            only: Sequence[str] = ()) -> None:
    """Run every pending run, stage by stage (the main comparison needs the alpha sweep's choice);
    ``only``: run-name patterns (fnmatch) that restrict it to those runs."""
    for stage in ("sweep", "rest"):
        runs = study.alpha_runs() if stage == "sweep" else study.all_runs()
        for run in runs:
            if read_record(run.folder(study.root)) is not None:
                continue
            if only and not any(fnmatch.fnmatchcase(run.name, pattern) for pattern in only):
                continue
            log(f"[study] {run.name}: training ({' '.join(run.overrides[len(study.spec['recipe']):])})")
            record = execute(run, study, classifier, data_root)
            fids = ", ".join(f"{r['width']:g}: {r['fmnist_fid']:.2f}" for r in record["widths"])
            log(f"[study] {run.name}: {record['train_seconds']:.0f} s training; FMNIST-FID {fids}")


# ---------------------------------------------------------------------- tabulating
def mean_std(values: Sequence[float]) -> tuple[float, float]:
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def fmt(values: Sequence[float], digits: int = 2) -> str:
    if not values:
        return "-"
    m, s = mean_std(values)
    return f"{m:.{digits}f} ± {s:.{digits}f}" if len(values) > 1 else f"{m:.{digits}f}"


def by_width(record: dict[str, Any]) -> dict[float, dict[str, Any]]:
    return {float(r["width"]): r for r in record["widths"]}


def run_row(name: str, record: dict[str, Any] | None, widths: Sequence[float]) -> str:
    """One table row of a single run: FMNIST-FID per width, mIC, training seconds ('pending' if unfinished)."""
    if record is None:
        return f"| {name} | " + " | ".join("pending" for _ in widths) + " | | |"
    fids = by_width(record)
    return (f"| {name} | " + " | ".join(f"{fids[w]['fmnist_fid']:.2f}" if w in fids else "-" for w in widths)
            + f" | {record['consistency']['mIC']:.2f} | {record['train_seconds']:.0f} |")


def individual_consistency(study: Study, seed: int, classifier: Path | None, data_root: str,
                           n: int) -> dict[str, Any] | None:
    """mIC across the separately trained GANs of one seed (same z at every width): the baseline that
    SlimGAN's consistency is compared with. Cached next to the runs."""
    from slimgan_pl.checkpoint import load_slimgan
    from slimgan_pl.evaluate import extract
    from slimgan_pl.metrics.consistency import mean_inconsistency
    from slimgan_pl.metrics.fmnist_classifier import FMNISTFeatureExtractor, load_classifier

    cache = study.root / f"individual_consistency_seed{seed}.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    widths = [float(w) for w in study.spec["widths"]]
    records = [read_record(study.root / f"individual_w{w:g}_seed{seed}") for w in widths]
    if any(r is None for r in records):
        return None
    loaded = load_classifier(classifier, root=data_root, log=None)
    extractor = FMNISTFeatureExtractor(loaded.model, "features", sha256=loaded.sha256)
    feats = [extract(extractor, load_slimgan(r["checkpoint"]).sample(n, w, seed=0)).features
             for w, r in zip(widths, records)]
    result = mean_inconsistency(widths, feats).to_json()
    cache.write_text(json.dumps(result, indent=2))
    return result


def side_by_side_grid(study: Study, seed: int, path: Path, n: int = 8) -> Path | None:
    """Rows: for each width, SlimGAN's samples then the individual GAN's, from the same z."""
    import torch
    from torchvision.utils import save_image

    from slimgan_pl.checkpoint import load_slimgan

    alpha = study.chosen_alpha()
    slim = read_record(study.root / slimgan_name(alpha, seed)) if alpha is not None else None
    if slim is None:
        return None
    slim_model = load_slimgan(slim["checkpoint"])
    rows = []
    for w in study.spec["widths"]:
        indiv = read_record(study.root / f"individual_w{float(w):g}_seed{seed}")
        if indiv is None:
            return None
        rows.append(slim_model.sample(n, float(w), seed=0))
        rows.append(load_slimgan(indiv["checkpoint"]).sample(n, float(w), seed=0))
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image((torch.cat(rows) + 1) / 2, path, nrow=n, padding=2, pad_value=1.0)
    return path


def fid_vs_macs_plot(series: dict[str, list[tuple[float, float, float]]], path: Path) -> Path:
    """FMNIST-FID against MACs per image, one line per arm (points: mean, error bar: std)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from matplotlib.ticker import FuncFormatter, NullFormatter

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for label, points in series.items():
        points = sorted(points)
        ax.errorbar([p[0] / 1e6 for p in points], [p[1] for p in points], yerr=[p[2] for p in points],
                    marker="o", capsize=3, label=label)
    ax.set_xscale("log")
    # ticks at the widths' costs, in millions (log-scale minor labels would overlap)
    ax.set_xticks(sorted({p[0] / 1e6 for points in series.values() for p in points}))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:.2g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("MACs per image (generator, millions; log scale)")
    ax.set_ylabel("FMNIST-FID (lower is better)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def build_report(study: Study, report: Path, classifier: Path | None, data_root: str) -> str:
    """Write the markdown report (tables, plot, side-by-side grids) for every finished run."""
    assets = report.with_suffix("")  # <report>/ folder beside <report>.md
    records = {run.name: rec for run in study.all_runs() if (rec := read_record(run.folder(study.root)))}
    alpha = study.chosen_alpha()
    widths = [float(w) for w in study.spec["widths"]]
    lines = [f"# SlimGAN reproduction on Fashion-MNIST ({study.mode} mode)", ""]
    if study.mode != "full":
        lines += ["**Quick mode: toy sizes and a few iterations. These numbers check the pipeline and mean "
                  "nothing about the method.**", ""]
    lines += ["Generated by `python experiments/reproduce_fmnist/run_study.py"
              + (f" --mode {study.mode}" if study.mode != "full" else "") + "` from `study.yaml`. "
              "FMNIST-FID/IS/KID/mIC use the project's own Fashion-MNIST classifier, not Inception-v3: they are "
              "not comparable with published Inception numbers.", ""]
    any_rec = next(iter(records.values()), None)
    if any_rec:
        ev = any_rec["evaluate"]
        lines += [f"Evaluation: {ev['n_fake']} fakes per width vs {ev['n_real']} real {ev['split']} images, "
                  f"generator in eval mode (each width's BN running statistics); classifier test accuracy "
                  f"{any_rec['extractor']['test_accuracy']:.3f}. Recipe: `{' '.join(study.spec['recipe'])}` + "
                  f"`{' '.join(study.mode_spec['overrides'])}`.", ""]

    # alpha sweep
    lines += ["## Distillation weight (alpha sweep, seed %d)" % study.seeds[0], "",
              "| alpha | " + " | ".join(f"FID w{w:g}" for w in widths) + " | mean FID | mIC |",
              "|---" * (len(widths) + 3) + "|"]
    for run in study.alpha_runs():
        rec = records.get(run.name)
        if rec:
            fids = by_width(rec)
            mic = rec["consistency"]["mIC"] if rec["consistency"] else float("nan")
            lines.append(f"| {run.arm.split('=')[1]} | " + " | ".join(f"{fids[w]['fmnist_fid']:.2f}" for w in widths)
                         + f" | {statistics.mean(r['fmnist_fid'] for r in rec['widths']):.2f} | {mic:.2f} |")
        else:
            lines.append(f"| {run.arm.split('=')[1]} | " + " | ".join("pending" for _ in widths) + " | | |")
    lines += ["", f"Chosen alpha: **{alpha:g}**" if alpha is not None else "Chosen alpha: pending", ""]
    if alpha is None:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text("\n".join(lines) + "\n")
        return "\n".join(lines)

    # main comparison
    slim = [records[r.name] for r in study.main_runs(alpha) if r.arm == "slimgan" and r.name in records]
    indiv: dict[float, list[dict]] = {w: [] for w in widths}
    for r in study.main_runs(alpha):
        if r.arm == "individual" and r.name in records:
            indiv[r.width].append(by_width(records[r.name])[r.width])
    lines += [f"## SlimGAN vs individually trained GANs ({len(slim)} SlimGAN seeds; mean ± std over seeds)", "",
              "| width | MACs | params | SlimGAN FID | individual FID | FID diff (slim - indiv) | SlimGAN IS | "
              "individual IS | SlimGAN KID | individual KID |", "|---" * 10 + "|"]
    series: dict[str, list[tuple[float, float, float]]] = {}
    verdicts = []
    for w in widths:
        s_rows = [by_width(rec)[w] for rec in slim]
        i_rows = indiv[w]
        sf, inf_ = [r["fmnist_fid"] for r in s_rows], [r["fmnist_fid"] for r in i_rows]
        macs = (s_rows or i_rows or [{"macs": float("nan")}])[0]["macs"]
        params = (s_rows or i_rows or [{"params": float("nan")}])[0]["params"]
        diff = "-"
        if sf and inf_:
            d = statistics.mean(sf) - statistics.mean(inf_)
            spread = math.sqrt(mean_std(sf)[1] ** 2 + mean_std(inf_)[1] ** 2)
            diff = f"{d:+.2f}"
            word = ("better than" if d < 0 else "worse than") if abs(d) > spread else "within the seed spread of"
            verdicts.append(f"- width {w:g}: SlimGAN is {word} the individual GAN "
                            f"(FMNIST-FID {statistics.mean(sf):.2f} vs {statistics.mean(inf_):.2f}, "
                            f"difference {d:+.2f}, seed spread {spread:.2f}).")
        lines.append(f"| {w:g} | {macs / 1e6:.2f}M | {params / 1e3:.1f}k | {fmt(sf)} | {fmt(inf_)} | {diff} | "
                     f"{fmt([r['fmnist_is'] for r in s_rows])} | {fmt([r['fmnist_is'] for r in i_rows])} | "
                     f"{fmt([r['fmnist_kid'] for r in s_rows], 4)} | {fmt([r['fmnist_kid'] for r in i_rows], 4)} |")
        if sf:
            series.setdefault("SlimGAN", []).append((macs, *mean_std(sf)))
        if inf_:
            series.setdefault("individual GANs", []).append((macs, *mean_std(inf_)))

    # consistency
    n_mic = study.mode_spec["evaluate"]["n_fake"]
    indiv_mic = [c["mIC"] for s in study.seeds
                 if (c := individual_consistency(study, s, classifier, data_root, min(n_mic, 2000)))]
    lines += ["", "## Consistency between widths (FMNIST-mIC, same z at every width; lower = more consistent)", "",
              "| generators | mIC |", "|---|---|",
              f"| SlimGAN, stepwise distillation alpha {alpha:g} | {fmt([r['consistency']['mIC'] for r in slim])} |",
              f"| four individually trained GANs | {fmt(indiv_mic)} |"]
    for name in ("alpha0", "plain_distillation"):
        rec = records.get(f"{name}_seed{study.seeds[0]}")
        if rec:
            lines.append(f"| SlimGAN ablation {name} (seed {study.seeds[0]}) | {rec['consistency']['mIC']:.2f} |")

    # wall time
    slim_t = [rec["train_seconds"] for rec in slim]
    indiv_t = []
    for s in study.seeds:
        ts = [records[n]["train_seconds"] for w in widths if (n := f"individual_w{w:g}_seed{s}") in records]
        if len(ts) == len(widths):
            indiv_t.append(sum(ts))
    lines += ["", "## Training wall time (this machine, seconds)", "",
              "| SlimGAN (all widths, one run) | four individual GANs (sum) | ratio |", "|---|---|---|",
              f"| {fmt(slim_t, 0)} | {fmt(indiv_t, 0)} | "
              + (f"{statistics.mean(slim_t) / statistics.mean(indiv_t):.2f} |" if slim_t and indiv_t else "- |")]
    if any(records[n].get("resumed") for n in records):
        lines.append("\nRuns resumed after an interruption count only their last sitting's time.")

    # ablations
    lines += ["", f"## Ablations (seed {study.seeds[0]}, SlimGAN at alpha {alpha:g} unless the row says otherwise)", "",
              "| arm | " + " | ".join(f"FID w{w:g}" for w in widths) + " | mIC | train s |", "|---" * (len(widths) + 3) + "|"]
    ref = records.get(slimgan_name(alpha, study.seeds[0]))
    for name, rec in [("SlimGAN (reference)", ref)] + [(r.arm, records.get(r.name)) for r in study.ablation_runs(alpha)]:
        lines.append(run_row(name, rec, widths))
        if rec is not None and name != "SlimGAN (reference)":
            series[name] = [(r["macs"], r["fmnist_fid"], 0.0) for r in rec["widths"]]

    # conditional
    lines += ["", f"## Conditional SlimGAN (`{' '.join(study.spec['conditional_recipe'][:1])}`, seed {study.seeds[0]}): "
              "scBN vs switchable CBN", "",
              "| conditional BN | " + " | ".join(f"FID w{w:g}" for w in widths) + " | mIC | train s |",
              "|---" * (len(widths) + 3) + "|"]
    lines += [run_row(run.arm, records.get(run.name), widths) for run in study.conditional_runs()]

    # figures
    lines += ["", "## Figures", ""]
    if series:
        plot = fid_vs_macs_plot(series, assets / "fid_vs_macs.png")
        lines += [f"![FMNIST-FID against MACs]({assets.name}/{plot.name})", ""]
    grid = side_by_side_grid(study, study.seeds[0], assets / "slimgan_vs_individual.png")
    if grid:
        lines += [f"Samples from the same z (seed {study.seeds[0]} runs): for each width "
                  f"({', '.join(f'{w:g}' for w in widths)}), one row from SlimGAN, then one row from the "
                  "individually trained GAN of that width.", "",
                  f"![SlimGAN vs individual GANs]({assets.name}/{grid.name})", ""]

    lines += ["## Which claims held (computed from the tables above)", ""] + (verdicts or ["- pending"])
    if study.mode == "full" and CONCLUSIONS_FILE.is_file():
        lines += ["", CONCLUSIONS_FILE.read_text().strip()]
    text = "\n".join(lines) + "\n"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(text)
    (assets / "records.json").parent.mkdir(parents=True, exist_ok=True)
    (assets / "records.json").write_text(json.dumps(records, indent=1))
    return text


# ---------------------------------------------------------------------- CLI
def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", default="full", help="full | quick (study.yaml's modes)")
    p.add_argument("--runs-dir", default=None, help="run folders (default experiments/reproduce_fmnist/runs/<mode>)")
    p.add_argument("--report", default=None, help=f"report path (default {FULL_REPORT.relative_to(REPO)} in full "
                                                  "mode, <runs-dir>/report.md otherwise)")
    p.add_argument("--classifier", default=None, help="FMNIST classifier file (default: the user cache; quick "
                                                      "mode trains a small one in the runs folder)")
    p.add_argument("--data-root", default=None, help="Fashion-MNIST root (default: Debian's)")
    p.add_argument("--plan", action="store_true", help="list the runs and which have finished, then exit")
    p.add_argument("--report-only", action="store_true", help="tabulate the finished runs without training")
    p.add_argument("--only", nargs="+", default=(), metavar="PATTERN",
                   help="train only the runs whose names match (fnmatch, e.g. 'cond_*'); see --plan for names")
    args = p.parse_args(argv)

    from slimgan_pl.data.fashion_mnist import DEBIAN_ROOT

    data_root = args.data_root or DEBIAN_ROOT
    root = Path(args.runs_dir) if args.runs_dir else HERE / "runs" / args.mode
    study = Study.load(args.mode, root)
    root.mkdir(parents=True, exist_ok=True)
    if args.plan:
        for run in study.all_runs():
            done = read_record(run.folder(root)) is not None
            print(f"{'done   ' if done else 'pending'}  {run.name}")
        if study.chosen_alpha() is None:
            print("(main comparison and ablations are planned once the alpha sweep has finished)")
        return 0
    classifier = Path(args.classifier) if args.classifier else (
        quick_classifier(root, data_root) if args.mode != "full" else None)
    if not args.report_only:
        run_all(study, classifier, data_root, only=args.only)
    report = Path(args.report) if args.report else (FULL_REPORT if args.mode == "full" else root / "report.md")
    build_report(study, report, classifier, data_root)
    print(f"[study] report: {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
