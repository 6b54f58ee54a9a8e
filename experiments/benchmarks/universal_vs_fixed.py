"""Benchmark of issue 17: the universally slimmable generator (``slim.mode=universal``) against the
4-width SlimGAN, on Fashion-MNIST, as FMNIST-FID vs MACs.

Both checkpoints are evaluated with :func:`slimgan_pl.evaluate.evaluate_checkpoint` (the project's
Fashion-MNIST classifier, the same seed and hence the same z at every width): the universal model at
``--widths`` (8 or more across its range, most of them never an anchor and never drawn exactly in
training), the fixed model at its trained widths. Written: ``<out>.json``, ``<out>.md`` (table,
target checks, mIC of neighbouring widths) and ``<out>.png`` (FID vs MACs, both models).

Targets (issue 17): at the four SlimGAN widths the universal FMNIST-FID is within 10% of SlimGAN's;
between them the universal curve is monotone within noise.

Noise is measured, not assumed, when each model is given several checkpoints of its run (the last one is
the model of the table, e.g. iterations 1000 / 1250 / 1500): the per-width spread (sample standard
deviation) of FMNIST-FID over those checkpoints is the run's noise at that width (late-training
fluctuation plus the fake-sample noise of one evaluation). A rise from one width to the next wider one is
beyond noise when it exceeds twice the standard deviation, over the checkpoints, of that step (FID of
the wider width - FID of the narrower one: a shift of the whole curve cancels in it); the same check
runs on the mean curve over the checkpoints and on SlimGAN's own curve, for comparison. With one
checkpoint per model the tolerance is ``--noise`` (relative).

    python experiments/benchmarks/universal_vs_fixed.py --universal U1.ckpt [U2.ckpt ...] \
        --fixed F1.ckpt [F2.ckpt ...] [--n-fake 10000] [--iterations-note "..."] \
        [--out experiments/results/universal_vs_fixed]

Over training seeds (one run of this benchmark per seed, then the summary, evaluating nothing):

    python experiments/benchmarks/universal_vs_fixed.py --combine SEED0.json SEED1.json \
        [--labels "seed 0" "seed 1"] --out experiments/results/universal_vs_fixed_seeds
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from slimgan_pl.metrics.paired import paired_comparison

WIDTHS = [0.25, 0.3, 0.375, 0.45, 0.5, 0.6, 0.7, 0.75, 0.85, 0.93, 1.0]


def evaluate(ckpt: str, widths: list[float] | None, n_fake: int) -> dict[str, Any]:
    from slimgan_pl.evaluate import evaluate_checkpoint

    return evaluate_checkpoint(
        ckpt,
        widths=widths,
        n_fake=n_fake,
        n_real=10000,
        latency_batches=(1,),
        latency_repeats=3,
        latency_warmup=1,
        kid_subsets=10,
        kid_subset_size=min(1000, n_fake),
        sanity=False,
        write=False,
        log=print,
    )


def fids_by_width(runs: list[dict[str, Any]]) -> dict[float, list[float]]:
    """width -> FMNIST-FID at each checkpoint of the run (in the order given; the last is the final one)."""
    table: dict[float, list[float]] = {}
    for result in runs:
        for r in result["widths"]:
            table.setdefault(r["width"], []).append(r["fmnist_fid"])
    return table


def spread(values: list[float]) -> float | None:
    """Sample standard deviation, None for a single value."""
    if len(values) < 2:
        return None
    mean = sum(values) / len(values)
    return (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5


def curve(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per width, in MACs order: final FID, mean and spread over the run's checkpoints."""
    macs = {r["width"]: r["macs"] for r in runs[-1]["widths"]}
    rows = []
    for w, values in fids_by_width(runs).items():
        rows.append(
            {
                "width": w,
                "macs": macs[w],
                "final": values[-1],
                "mean": sum(values) / len(values),
                "sd": spread(values),
                "values": values,
            }
        )
    return sorted(rows, key=lambda r: r["macs"])


def neighbour_steps(rows: list[dict[str, Any]], relative: float) -> list[dict[str, Any]]:
    """FID change from each width to the next wider one, with its noise.

    With several checkpoints the noise of a step is measured on the step itself: the sample standard
    deviation over the checkpoints of (FID of the wider width - FID of the narrower one). A shift of the
    whole curve between checkpoints (training still moving) cancels in the difference; what is left is how
    much the shape of the curve jitters. A step is a rise beyond noise when the last checkpoint's rise
    exceeds twice that spread, and a persistent rise when the mean rise over the checkpoints exceeds twice
    its standard error (sd / sqrt(n)). With one checkpoint the tolerance is ``relative`` times the
    narrower width's FID."""
    steps = []
    for a, b in zip(rows, rows[1:]):
        diffs = _rises(a, b)
        sd = spread(diffs)
        rise = diffs[-1]
        tolerance = 2 * sd if sd is not None else a["final"] * relative
        mean = sum(diffs) / len(diffs)
        steps.append(
            {
                "from": a["width"],
                "to": b["width"],
                "rise": round(rise, 3),
                "tolerance": round(tolerance, 3),
                "beyond_noise": rise > tolerance,
                "mean_rise": round(mean, 3),
                "persistent": sd is not None and mean > 2 * sd / len(diffs) ** 0.5,
                "rises_per_checkpoint": [round(d, 3) for d in diffs],
            }
        )
    return steps


def summarise(universal: list[dict[str, Any]], fixed: list[dict[str, Any]], noise: float) -> dict[str, Any]:
    u_rows, f_rows = curve(universal), curve(fixed)
    u = {r["width"]: r for r in u_rows}
    anchors = []
    for row in f_rows:
        if row["width"] in u:
            ur = u[row["width"]]
            anchors.append(
                {
                    "width": row["width"],
                    "fixed": row["final"],
                    "universal": ur["final"],
                    "ratio": ur["final"] / row["final"],
                    "ratio_of_means": ur["mean"] / row["mean"],
                }
            )
    complete = len(anchors) == len(f_rows)
    u_steps, f_steps = neighbour_steps(u_rows, noise), neighbour_steps(f_rows, noise)
    final_rises = [step for step in u_steps if step["beyond_noise"]]
    u_final, f_final = universal[-1], fixed[-1]
    return {
        "anchors": anchors,
        # the target: not more than 10% worse than SlimGAN (a lower universal FID also meets it)
        "no_worse_than_10pct_at_all_anchors": complete and all(a["ratio"] <= 1.10 for a in anchors),
        "within_10pct_both_ways_at_all_anchors": complete and all(abs(a["ratio"] - 1) <= 0.10 for a in anchors),
        "no_worse_than_10pct_at_all_anchors_means": complete and all(a["ratio_of_means"] <= 1.10 for a in anchors),
        "checkpoints": {
            "universal": [r.get("iteration") for r in universal],
            "fixed": [r.get("iteration") for r in fixed],
        },
        "noise_measured": len(universal) > 1,
        "noise": noise,
        "rises_beyond_noise": final_rises,
        "monotone_within_noise": not final_rises,
        "persistent_rises": [step for step in u_steps if step["persistent"]],
        "steps_universal": u_steps,
        "steps_fixed": f_steps,
        "curve_universal": u_rows,
        "curve_fixed": f_rows,
        "mic_adjacent_universal": u_final.get("consistency", {}).get("adjacent"),
        "mic_adjacent_fixed": f_final.get("consistency", {}).get("adjacent"),
        # the same pairs for both models (the universal neighbours above are closer widths)
        "mic_universal_at_slimgan_pairs": {
            pair: u_final.get("consistency", {}).get("pairs", {}).get(pair)
            for pair in (f_final.get("consistency", {}).get("adjacent") or {})
        },
    }


def plot(summary: dict[str, Any], path: Path) -> None:
    fig, ax = _fid_vs_macs_figure()
    its = summary["checkpoints"]
    for rows, label, style, color, iterations in (
        (summary["curve_universal"], "universal (any width)", "o-", "tab:blue", its["universal"]),
        (summary["curve_fixed"], "SlimGAN (4 widths)", "s--", "tab:orange", its["fixed"]),
    ):
        x = [r["macs"] / 1e6 for r in rows]
        for k, iteration in enumerate(iterations[:-1]):  # earlier checkpoints, thin: the run's noise
            ax.plot(x, [r["values"][k] for r in rows], style, color=color, alpha=0.25, lw=1, ms=3,
                    label=f"{label}, iteration {iteration}")  # fmt: skip
        ax.plot(x, [r["final"] for r in rows], style, color=color, lw=2, label=f"{label}, iteration {iterations[-1]}")
        _label_widths(ax, rows)
    _save_fid_vs_macs(fig, ax, "FMNIST-FID vs generator MACs, one curve per checkpoint (last in bold)", path)


def validate_payload(payload: Any, source: str) -> None:
    """Refuse, naming ``source``, a file that is not this benchmark's ``.json`` with FMNIST-FID at every
    width of every checkpoint (e.g. one scored with another backbone, or hand-edited)."""
    runs = payload.get("runs") if isinstance(payload, dict) else None
    if not isinstance(runs, dict):
        raise ValueError(f"{source}: no 'runs' object (not a universal_vs_fixed .json)")
    for model in ("universal", "fixed"):
        results = runs.get(model)
        if not isinstance(results, list) or not results:
            raise ValueError(f"{source}: no '{model}' evaluations under 'runs' (not a universal_vs_fixed .json)")
        for k, result in enumerate(results):
            rows = result.get("widths") if isinstance(result, dict) else None
            if not isinstance(rows, list) or not rows:
                raise ValueError(f"{source}: runs.{model}[{k}] has no 'widths' list")
            for row in rows:
                for key in ("width", "macs", "fmnist_fid"):
                    value = row.get(key) if isinstance(row, dict) else None
                    if not isinstance(value, (int, float)) or isinstance(value, bool):
                        raise ValueError(f"{source}: runs.{model}[{k}] has a width without a numeric '{key}': {row}")


def _rises(a: dict[str, Any], b: dict[str, Any]) -> list[float]:
    """FID of the wider width minus FID of the narrower one, at each checkpoint."""
    return [vb - va for va, vb in zip(a["values"], b["values"])]


def seed_steps(per_seed_rows: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """FID change from each width to the next wider one, over several training seeds.

    ``per_seed_rows`` holds one :func:`curve` per seed (same widths, same checkpoints). Every (seed,
    checkpoint) gives one measurement of a step; their standard deviation ``sd`` is the noise of one
    measurement, run-to-run variation included. The step of the seed-mean curve (mean of the seeds'
    last-checkpoint rises) is a rise beyond noise when it exceeds ``2 * sd / sqrt(n_seeds)``, and a
    persistent rise when the mean over every seed and checkpoint exceeds the same bound (checkpoints of one
    run are not independent, so only the seeds count as samples) and every seed's own mean rise is
    positive."""
    n_seeds = len(per_seed_rows)
    steps = []
    for k in range(len(per_seed_rows[0]) - 1):
        per_seed = [_rises(rows[k], rows[k + 1]) for rows in per_seed_rows]
        every = [d for diffs in per_seed for d in diffs]
        sd = spread(every)
        tolerance = 2 * sd / n_seeds**0.5 if sd is not None else float("inf")
        rise = sum(diffs[-1] for diffs in per_seed) / n_seeds
        mean = sum(every) / len(every)
        seed_means = [sum(diffs) / len(diffs) for diffs in per_seed]
        steps.append(
            {
                "from": per_seed_rows[0][k]["width"],
                "to": per_seed_rows[0][k + 1]["width"],
                "rise": round(rise, 3),
                "tolerance": round(tolerance, 3),
                "beyond_noise": rise > tolerance,
                "mean_rise": round(mean, 3),
                "persistent": mean > tolerance and all(m > 0 for m in seed_means),
                "mean_rise_per_seed": [round(m, 3) for m in seed_means],
                "final_rise_per_seed": [round(diffs[-1], 3) for diffs in per_seed],
            }
        )
    return steps


def _width_key(width: float) -> float:
    # widths read back from JSON may carry float noise; 1e-9 is far below the channel granularity
    return round(float(width), 9)


def combine_seeds(payloads: list[dict[str, Any]], labels: list[str]) -> dict[str, Any]:
    """Summary over training seeds: each payload is the ``.json`` of one run of this benchmark (one seed
    per model pair), ``labels`` names them. The seeds must have the same widths, checkpoints and number of
    fakes; anything else is refused naming the seed."""
    if len(payloads) < 2:
        raise ValueError(f"--combine needs the results of at least two seeds, got {len(payloads)}")
    if len(labels) != len(payloads):
        raise ValueError(f"need one label per seed: {len(payloads)} results, {len(labels)} labels")
    for payload, label in zip(payloads, labels):
        validate_payload(payload, label)
    first = payloads[0]["runs"]
    curves: dict[str, list[list[dict[str, Any]]]] = {"universal": [], "fixed": []}
    for payload, label in zip(payloads, labels):
        runs = payload["runs"]
        if runs.get("n_fake") != first.get("n_fake"):
            raise ValueError(
                f"{label}: evaluated with {runs.get('n_fake')} fakes per width, {labels[0]} with "
                f"{first.get('n_fake')} (FID depends on the number of fakes)"
            )
        for model in curves:
            iterations = [r.get("iteration") for r in runs[model]]
            if iterations != [r.get("iteration") for r in first[model]]:
                raise ValueError(
                    f"{label}: {model} checkpoints {iterations} differ from {labels[0]}'s "
                    f"{[r.get('iteration') for r in first[model]]} (each seed must weigh the same)"
                )
            curves[model].append(curve(runs[model]))
    for model, per_seed in curves.items():
        widths = [_width_key(r["width"]) for r in per_seed[0]]
        for rows, label in zip(per_seed[1:], labels[1:]):
            if [_width_key(r["width"]) for r in rows] != widths:
                raise ValueError(
                    f"{label}: {model} widths {[r['width'] for r in rows]} differ from {labels[0]}'s {widths}"
                )
    table: dict[str, list[dict[str, Any]]] = {}
    for model, per_seed in curves.items():
        table[model] = []
        for k, row in enumerate(per_seed[0]):
            finals = [rows[k]["final"] for rows in per_seed]
            means = [rows[k]["mean"] for rows in per_seed]
            table[model].append(
                {
                    "width": row["width"],
                    "macs": row["macs"],
                    "final_per_seed": finals,
                    "final": sum(finals) / len(finals),
                    "final_sd": spread(finals),
                    "mean": sum(means) / len(means),
                }
            )
    universal = {_width_key(r["width"]): r for r in table["universal"]}
    anchors, missing = [], []
    for fixed in table["fixed"]:
        u = universal.get(_width_key(fixed["width"]))
        if u is None:
            missing.append(fixed["width"])
            continue
        # paired by seed, as the reproduction study: FID(universal) - FID(SlimGAN), margin 10% of SlimGAN's mean
        margin = 0.10 * fixed["final"]
        paired = paired_comparison(u["final_per_seed"], fixed["final_per_seed"], margin)
        anchors.append(
            {
                "width": fixed["width"],
                "ratio": u["final"] / fixed["final"],
                "ratio_per_seed": [a / b for a, b in zip(u["final_per_seed"], fixed["final_per_seed"])],
                "ratio_of_means": u["mean"] / fixed["mean"],
                "diff_per_seed": [a - b for a, b in zip(u["final_per_seed"], fixed["final_per_seed"])],
                "diff": paired.mean,
                "interval": [paired.low, paired.high],
                "n": paired.n,
                "method": paired.method,
                "margin": margin,
                "verdict": paired.verdict,
                "seeds_to_decide": paired.seeds_to_decide,
                "to_decide": paired.to_decide(),
                "p_permutation": paired.p_permutation,
            }
        )
    complete = not missing
    u_steps = seed_steps(curves["universal"])
    rises = [s for s in u_steps if s["beyond_noise"]]
    return {
        "seeds": labels,
        "n_fake": first.get("n_fake"),
        "checkpoints": {m: [r.get("iteration") for r in first[m]] for m in curves},
        "curve_universal": table["universal"],
        "curve_fixed": table["fixed"],
        "anchors": anchors,
        "anchors_not_evaluated": missing,
        "no_worse_than_10pct_at_all_anchors": complete and all(a["ratio"] <= 1.10 for a in anchors),
        "no_worse_than_10pct_at_all_anchors_every_seed": complete
        and all(r <= 1.10 for a in anchors for r in a["ratio_per_seed"]),
        "no_worse_than_10pct_at_all_anchors_means": complete and all(a["ratio_of_means"] <= 1.10 for a in anchors),
        "verdicts": {a["width"]: a["verdict"] for a in anchors},
        "steps_universal": u_steps,
        "steps_fixed": seed_steps(curves["fixed"]),
        "rises_beyond_noise": rises,
        "monotone_within_noise": not rises,
        "persistent_rises": [s for s in u_steps if s["persistent"]],
    }


def _joined(values: list[float], fmt: str) -> str:
    return " / ".join(format(v, fmt) for v in values)


def anchor_verdict(anchor: dict[str, Any]) -> str:
    """E.g. ``undecided: [-2.61, +6.01], paired t, n=3; ~12 seeds to decide``."""
    low, high = anchor["interval"]
    text = f"{anchor['verdict']}: [{low:+.2f}, {high:+.2f}], {anchor['method']}, n={anchor['n']}"
    return text + (f"; {anchor['to_decide']}" if anchor["to_decide"] else "")


def combined_markdown(summary: dict[str, Any], note: str) -> str:
    """The report over seeds: the per-width table, the targets, the paired verdict per anchor, the steps."""
    fixed = {_width_key(r["width"]): r for r in summary["curve_fixed"]}
    anchors = {_width_key(x["width"]): x for x in summary["anchors"]}
    seeds = summary["seeds"]
    n = len(seeds)
    its = summary["checkpoints"]
    lines = [
        f"# Universal (any width) vs 4-width SlimGAN on Fashion-MNIST, {n} training seeds (issue 17)",
        "",
        note,
        "",
        f"Each seed is one training run of each model (the same seed for both), evaluated at checkpoints "
        f"{its['universal']} (universal) and {its['fixed']} (SlimGAN), {summary['n_fake']} fakes per width; "
        "FMNIST-FID at the last checkpoint. Seeds: " + ", ".join(f"`{s}`" for s in seeds) + ".",
        "",
        "| width | MACs | universal, per seed | universal, mean | SlimGAN, per seed | SlimGAN, mean "
        "| ratio, seed means | ratio per seed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in summary["curve_universal"]:
        fr, ar = fixed.get(_width_key(r["width"])), anchors.get(_width_key(r["width"]))
        cells = [
            f"{r['width']:g}",
            f"{r['macs'] / 1e6:.2f}M",
            _joined(r["final_per_seed"], ".2f"),
            f"{r['final']:.2f}",
            _joined(fr["final_per_seed"], ".2f") if fr else "-",
            f"{fr['final']:.2f}" if fr else "-",
            f"{ar['ratio']:.3f}" if ar else "-",
            _joined(ar["ratio_per_seed"], ".3f") if ar else "-",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    missing = summary["anchors_not_evaluated"]
    lines += [
        "",
        "- Target, universal FMNIST-FID at most 10% above SlimGAN's at all four SlimGAN widths, on the seed means: "
        f"**{summary['no_worse_than_10pct_at_all_anchors']}** (at every seed separately: "
        f"{summary['no_worse_than_10pct_at_all_anchors_every_seed']}; on the means over every checkpoint: "
        f"{summary['no_worse_than_10pct_at_all_anchors_means']})"
        + (f"; SlimGAN widths the universal model was not evaluated at: {missing}" if missing else ""),
        "- Seed-mean universal curve monotone in MACs within noise (a step's noise: the standard deviation sd of "
        f"that step over every seed and checkpoint; a rise counts when it exceeds 2 sd / sqrt({n})): "
        f"**{summary['monotone_within_noise']}**",
        "- Persistent rises (mean over every seed and checkpoint above the same bound, and positive at every "
        "seed): " + (", ".join(f"{r['from']:g} -> {r['to']:g}" for r in summary["persistent_rises"]) or "none"),
        "",
        "Per anchor, paired by seed (the reproduction study's rule): FMNIST-FID(universal) - FMNIST-FID(SlimGAN), "
        "the 95% paired Student-t interval of its mean over seeds (paired t: mean ± t(n-1) sd / sqrt(n)) and "
        'the claim "universal is at most 10% worse" as a non-inferiority test with margin 10% of SlimGAN\'s '
        "seed-mean FID: held when the interval lies below the margin, not held when above it, else undecided, "
        "with the number of seeds estimated to decide it (the n at which the interval's half-width at the "
        "observed sd falls below the mean's distance from the margin). Second opinion: the exact sign-flip "
        "permutation p-value of a zero mean difference (at n seeds never below 2/2^n: 0.25 at 3).",
        "",
        "| width | difference per seed | mean | margin | verdict: interval, method, n | sign-flip p |",
        "|---|---|---|---|---|---|",
    ]
    for x in summary["anchors"]:
        lines.append(
            f"| {x['width']:g} | {_joined(x['diff_per_seed'], '+.2f')} | {x['diff']:+.2f} | {x['margin']:.2f} "
            f"| {anchor_verdict(x)} | {x['p_permutation']:.3g} |"
        )
    lines.append("")
    for title, steps in (("Universal", summary["steps_universal"]), ("SlimGAN (same rule)", summary["steps_fixed"])):
        lines += [
            f"{title}: FMNIST-FID change from each width to the next wider one (positive = rise = worse)",
            "",
            "| step | rise, seed mean | last-checkpoint rise per seed | tolerance | beyond noise | mean rise "
            "| mean rise per seed | persistent |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in steps:
            lines.append(
                f"| {r['from']:g} -> {r['to']:g} | {r['rise']:+.2f} | {_joined(r['final_rise_per_seed'], '+.2f')} "
                f"| {r['tolerance']:.2f} | {'yes' if r['beyond_noise'] else 'no'} | {r['mean_rise']:+.2f} "
                f"| {_joined(r['mean_rise_per_seed'], '+.2f')} | {'yes' if r['persistent'] else 'no'} |"
            )
        lines.append("")
    lines.append(
        "FMNIST-FID uses the project's Fashion-MNIST classifier (not Inception). The per-seed reports hold each "
        "run's checkpoints, noise and mIC."
    )
    return "\n".join(lines) + "\n"


def _fid_vs_macs_figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(7, 4.5))


def _label_widths(ax, rows: list[dict[str, Any]]) -> None:
    for r in rows:
        ax.annotate(f"{r['width']:g}", (r["macs"] / 1e6, r["final"]), fontsize=7, xytext=(3, 3),
                    textcoords="offset points")  # fmt: skip


def _save_fid_vs_macs(fig, ax, title: str, path: Path) -> None:
    ax.set_xlabel("MACs per image (M)")
    ax.set_ylabel("FMNIST-FID (lower is better)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def plot_combined(summary: dict[str, Any], path: Path) -> None:
    fig, ax = _fid_vs_macs_figure()
    for rows, label, style, color in (
        (summary["curve_universal"], "universal (any width)", "o-", "tab:blue"),
        (summary["curve_fixed"], "SlimGAN (4 widths)", "s--", "tab:orange"),
    ):
        x = [r["macs"] / 1e6 for r in rows]
        for k, seed in enumerate(summary["seeds"]):  # each seed thin: the run-to-run spread
            ax.plot(x, [r["final_per_seed"][k] for r in rows], style, color=color, alpha=0.3, lw=1, ms=3,
                    label=f"{label}, {seed}")  # fmt: skip
        ax.plot(x, [r["final"] for r in rows], style, color=color, lw=2, label=f"{label}, mean of seeds")
        _label_widths(ax, rows)
    _save_fid_vs_macs(fig, ax, f"FMNIST-FID vs generator MACs, {len(summary['seeds'])} seeds (mean in bold)", path)


def _cell(row: dict[str, Any] | None) -> tuple[str, str]:
    if row is None:
        return "-", "-"
    spread_cell = "-" if row["sd"] is None else f"{row['mean']:.2f} +- {row['sd']:.2f}"
    return f"{row['final']:.2f}", spread_cell


def markdown(summary: dict[str, Any], note: str) -> str:
    f = {r["width"]: r for r in summary["curve_fixed"]}
    its = summary["checkpoints"]
    lines = [
        "# Universal (any width) vs 4-width SlimGAN on Fashion-MNIST (issue 17)",
        "",
        note,
        "",
        f"Checkpoints evaluated: universal {its['universal']}, SlimGAN {its['fixed']} (the last one is the model "
        "of the FMNIST-FID columns; all of them give the mean +- sd columns, the run's noise).",
        "",
        "| width | MACs | universal FMNIST-FID | universal mean +- sd | SlimGAN FMNIST-FID | SlimGAN mean +- sd "
        "| ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in sorted(summary["curve_universal"], key=lambda r: r["width"]):
        fr = f.get(r["width"])
        ratio = f"{r['final'] / fr['final']:.3f}" if fr else "-"
        lines.append(
            f"| {r['width']:g} | {r['macs'] / 1e6:.2f}M | {' | '.join(_cell(r))} | {' | '.join(_cell(fr))} | {ratio} |"
        )
    if summary["noise_measured"]:
        rule = (
            "a rise is beyond noise when it exceeds twice the standard deviation, over the checkpoints, of that "
            "step (FID of the wider width - FID of the narrower one)"
        )
    else:
        rule = f"noise = {summary['noise']:.0%} of the FID (not measured: one checkpoint per model)"
    lines += [
        "",
        "- Target, universal FMNIST-FID at most 10% above SlimGAN's at all four SlimGAN widths: "
        f"**{summary['no_worse_than_10pct_at_all_anchors']}** (ratio = universal / SlimGAN; |ratio - 1| <= 0.10 "
        f"at all four: {summary['within_10pct_both_ways_at_all_anchors']}; on the means over the checkpoints: "
        f"{summary['no_worse_than_10pct_at_all_anchors_means']})",
        f"- Universal curve monotone in MACs within noise ({rule}): **{summary['monotone_within_noise']}**",
        "- Persistent rises (mean rise over the checkpoints above twice its standard error): "
        + (", ".join(f"{r['from']:g} -> {r['to']:g}" for r in summary["persistent_rises"]) or "none"),
        "",
    ]
    for title, steps in (("Universal", summary["steps_universal"]), ("SlimGAN (same rule)", summary["steps_fixed"])):
        lines += [
            f"{title}: FMNIST-FID change from each width to the next wider one (positive = rise = worse)",
            "",
            "| step | rise, last checkpoint | rise at each checkpoint | tolerance | beyond noise | mean rise "
            "| persistent |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in steps:
            per = " / ".join(f"{d:+.2f}" for d in r["rises_per_checkpoint"])
            lines.append(
                f"| {r['from']:g} -> {r['to']:g} | {r['rise']:+.2f} | {per} | {r['tolerance']:.2f} | "
                f"{'yes' if r['beyond_noise'] else 'no'} | {r['mean_rise']:+.2f} | "
                f"{'yes' if r['persistent'] else 'no'} |"
            )
        lines.append("")
    lines += [
        f"- mIC of neighbouring widths, universal: {json.dumps(summary['mic_adjacent_universal'])}",
        f"- mIC of neighbouring widths, SlimGAN: {json.dumps(summary['mic_adjacent_fixed'])}",
        f"- mIC of the universal model at SlimGAN's pairs: {json.dumps(summary['mic_universal_at_slimgan_pairs'])}",
        "",
        "FMNIST-FID uses the project's Fashion-MNIST classifier (not Inception); same seed, hence the same z, "
        "at every width and checkpoint. One training seed per model: the spread over checkpoints is the noise "
        "within a run, not the run-to-run (seed) variation.",
    ]
    return "\n".join(lines) + "\n"


def _trim(result: dict[str, Any], keep: tuple[str, ...]) -> dict[str, Any]:
    return {
        "iteration": result.get("iteration"),
        "widths": [{k: r.get(k) for k in keep} for r in result["widths"]],
        "consistency": result.get("consistency", {}),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--universal", nargs="+", default=[], help="checkpoint(s) of a slim.mode=universal run, the final one last"
    )
    p.add_argument(
        "--fixed", nargs="+", default=[], help="checkpoint(s) of the 4-width SlimGAN run, the final one last"
    )
    p.add_argument("--widths", type=float, nargs="+", default=WIDTHS)
    p.add_argument("--n-fake", type=int, default=10000)
    p.add_argument(
        "--noise",
        type=float,
        default=0.05,
        help="relative FID rise tolerated as noise when one checkpoint per model is given",
    )
    p.add_argument("--iterations-note", default="", help="how long both were trained (goes into the report)")
    p.add_argument("--out", default="experiments/results/universal_vs_fixed")
    p.add_argument(
        "--reuse",
        metavar="JSON",
        help="the .json of an earlier run of this benchmark: summarise its evaluations again, evaluate nothing",
    )
    p.add_argument(
        "--combine",
        metavar="JSON",
        nargs="+",
        help="the .json of this benchmark's runs at different training seeds: the summary over seeds "
        "(written to --out), evaluate nothing",
    )
    p.add_argument("--labels", nargs="+", help="with --combine: a name per file (default: the file names)")
    args = p.parse_args()
    if args.labels and (not args.combine or len(args.labels) != len(args.combine)):
        p.error(f"--labels: give one per --combine file ({len(args.combine or [])}), got {len(args.labels)}")
    if args.combine:
        if args.universal or args.fixed or args.reuse:
            p.error("--combine summarises earlier results: give it without --universal, --fixed or --reuse")
        ignored = [
            f"--{k.replace('_', '-')}" for k in ("widths", "n_fake", "noise") if getattr(args, k) != p.get_default(k)
        ]
        if ignored:
            p.error(f"--combine evaluates nothing: {', '.join(ignored)} would be ignored (the seeds' files fix them)")
        payloads = []
        for name in args.combine:
            try:
                payload = json.loads(Path(name).read_text())
            except (OSError, json.JSONDecodeError) as err:
                p.error(f"--combine {name}: cannot read it as JSON ({err})")
            try:
                validate_payload(payload, name)
            except ValueError as err:
                p.error(f"--combine {err}")
            payloads.append(payload)
        try:
            summary = combine_seeds(payloads, args.labels or [Path(n).stem for n in args.combine])
        except ValueError as err:
            files = f" ({', '.join(f'{lb}: {n}' for lb, n in zip(args.labels, args.combine))})" if args.labels else ""
            p.error(f"--combine: {err}{files}")
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        note = " ".join(x for x in (args.iterations_note, "Per-seed results: " + ", ".join(args.combine) + ".") if x)
        out.with_suffix(".json").write_text(json.dumps({"note": note, "summary": summary}, indent=2) + "\n")
        out.with_suffix(".md").write_text(combined_markdown(summary, note))
        plot_combined(summary, out.with_suffix(".png"))
        print(out.with_suffix(".md").read_text())
        return
    if not args.reuse and not (args.universal and args.fixed):
        p.error("give --universal and --fixed checkpoints (or --reuse JSON, or --combine JSON JSON ...)")
    if args.reuse:
        runs = json.loads(Path(args.reuse).read_text())["runs"]
        universal, fixed, args.n_fake = runs["universal"], runs["fixed"], runs["n_fake"]
    else:
        universal = [evaluate(c, args.widths, args.n_fake) for c in args.universal]
        fixed = [evaluate(c, None, args.n_fake) for c in args.fixed]
    summary = summarise(universal, fixed, args.noise)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    note = (
        f"{args.iterations_note} FMNIST-FID over {args.n_fake} fakes per width vs 10000 test images. "
        f"Universal: iteration {universal[-1].get('iteration')}; SlimGAN: iteration {fixed[-1].get('iteration')}."
    ).strip()
    keep = ("width", "params", "macs", "fmnist_fid", "fmnist_is", "fmnist_kid")
    payload = {
        "note": note,
        "universal": [{k: r.get(k) for k in keep} for r in universal[-1]["widths"]],
        "fixed": [{k: r.get(k) for k in keep} for r in fixed[-1]["widths"]],
        "universal_generator": universal[-1].get("generator"),
        "summary": summary,
        # every evaluation, for --reuse
        "runs": {
            "n_fake": args.n_fake,
            "universal": [_trim(r, keep) for r in universal],
            "fixed": [_trim(r, keep) for r in fixed],
        },
    }
    out.with_suffix(".json").write_text(json.dumps(payload, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(summary, note))
    plot(summary, out.with_suffix(".png"))
    print(out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
