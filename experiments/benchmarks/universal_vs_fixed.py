"""Benchmark of issue 17: the universally slimmable generator (``slim.mode=universal``) against the
4-width SlimGAN, on Fashion-MNIST, as FMNIST-FID vs MACs.

Both checkpoints are evaluated with :func:`slimgan_pl.evaluate.evaluate_checkpoint` (the project's
Fashion-MNIST classifier, the same seed and hence the same z at every width): the universal model at
``--widths`` (8 or more across its range, most of them never an anchor and never drawn exactly in
training), the fixed model at its trained widths. Written: ``<out>.json``, ``<out>.md`` (table,
target checks, mIC of neighbouring widths) and ``<out>.png`` (FID vs MACs, both models).

Targets (issue 17): at the four SlimGAN widths the universal FMNIST-FID is within 10% of SlimGAN's;
between them the universal curve is monotone within noise (here: no FID rise of more than
``--noise`` (relative) from one width to the next wider one).

    python experiments/benchmarks/universal_vs_fixed.py --universal U.ckpt --fixed F.ckpt \
        [--n-fake 10000] [--iterations-note "500 iterations (demo: 1500)"] \
        [--out experiments/results/universal_vs_fixed]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

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


def summarise(universal: dict[str, Any], fixed: dict[str, Any], noise: float) -> dict[str, Any]:
    u = {r["width"]: r for r in universal["widths"]}
    f = {r["width"]: r for r in fixed["widths"]}
    anchors = []
    for w, row in f.items():
        if w in u:
            ratio = u[w]["fmnist_fid"] / row["fmnist_fid"]
            anchors.append({"width": w, "fixed": row["fmnist_fid"], "universal": u[w]["fmnist_fid"], "ratio": ratio})
    ordered = sorted(u.values(), key=lambda r: r["macs"])
    rises = [
        {"from": a["width"], "to": b["width"], "fid_from": a["fmnist_fid"], "fid_to": b["fmnist_fid"]}
        for a, b in zip(ordered, ordered[1:])
        if b["fmnist_fid"] > a["fmnist_fid"] * (1 + noise)
    ]
    return {
        "anchors": anchors,
        # the target: not more than 10% worse than SlimGAN (a lower universal FID also meets it)
        "no_worse_than_10pct_at_all_anchors": all(a["ratio"] <= 1.10 for a in anchors) and len(anchors) == len(f),
        "within_10pct_both_ways_at_all_anchors": all(abs(a["ratio"] - 1) <= 0.10 for a in anchors)
        and len(anchors) == len(f),
        "rises_beyond_noise": rises,
        "monotone_within_noise": not rises,
        "noise": noise,
        "mic_adjacent_universal": universal.get("consistency", {}).get("adjacent"),
        "mic_adjacent_fixed": fixed.get("consistency", {}).get("adjacent"),
        # the same pairs for both models (the universal neighbours above are closer widths)
        "mic_universal_at_slimgan_pairs": {
            pair: universal.get("consistency", {}).get("pairs", {}).get(pair)
            for pair in (fixed.get("consistency", {}).get("adjacent") or {})
        },
    }


def plot(universal: dict[str, Any], fixed: dict[str, Any], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for result, label, style in ((universal, "universal (any width)", "o-"), (fixed, "SlimGAN (4 widths)", "s--")):
        rows = sorted(result["widths"], key=lambda r: r["macs"])
        ax.plot([r["macs"] / 1e6 for r in rows], [r["fmnist_fid"] for r in rows], style, label=label)
        for r in rows:
            ax.annotate(f"{r['width']:g}", (r["macs"] / 1e6, r["fmnist_fid"]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")  # fmt: skip
    ax.set_xlabel("MACs per image (M)")
    ax.set_ylabel("FMNIST-FID (lower is better)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def markdown(universal: dict[str, Any], fixed: dict[str, Any], summary: dict[str, Any], note: str) -> str:
    f = {r["width"]: r for r in fixed["widths"]}
    lines = [
        "# Universal (any width) vs 4-width SlimGAN on Fashion-MNIST (issue 17)",
        "",
        note,
        "",
        "| width | MACs | universal FMNIST-FID | SlimGAN FMNIST-FID | ratio |",
        "|---|---|---|---|---|",
    ]
    for r in sorted(universal["widths"], key=lambda r: r["width"]):
        fr = f.get(r["width"])
        fixed_fid = f"{fr['fmnist_fid']:.2f}" if fr else "-"
        ratio = f"{r['fmnist_fid'] / fr['fmnist_fid']:.3f}" if fr else "-"
        lines.append(f"| {r['width']:g} | {r['macs'] / 1e6:.2f}M | {r['fmnist_fid']:.2f} | {fixed_fid} | {ratio} |")
    lines += [
        "",
        "- Target, universal FMNIST-FID at most 10% above SlimGAN's at all four SlimGAN widths: "
        f"**{summary['no_worse_than_10pct_at_all_anchors']}** (ratio = universal / SlimGAN; |ratio - 1| <= 0.10 "
        f"at all four: {summary['within_10pct_both_ways_at_all_anchors']})",
        f"- Universal curve monotone in MACs within noise ({summary['noise']:.0%} relative): "
        f"**{summary['monotone_within_noise']}**"
        + ("" if not summary["rises_beyond_noise"] else f" (rises: {summary['rises_beyond_noise']})"),
        f"- mIC of neighbouring widths, universal: {json.dumps(summary['mic_adjacent_universal'])}",
        f"- mIC of neighbouring widths, SlimGAN: {json.dumps(summary['mic_adjacent_fixed'])}",
        f"- mIC of the universal model at SlimGAN's pairs: {json.dumps(summary['mic_universal_at_slimgan_pairs'])}",
        "",
        "FMNIST-FID uses the project's Fashion-MNIST classifier (not Inception); same seed, hence the same z, "
        "at every width. One training seed per model: run-to-run (seed) variation of the FIDs was not measured.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--universal", required=True, help="checkpoint of a slim.mode=universal run")
    p.add_argument("--fixed", required=True, help="checkpoint of the 4-width SlimGAN run")
    p.add_argument("--widths", type=float, nargs="+", default=WIDTHS)
    p.add_argument("--n-fake", type=int, default=10000)
    p.add_argument("--noise", type=float, default=0.05, help="relative FID rise tolerated as noise")
    p.add_argument("--iterations-note", default="", help="how long both were trained (goes into the report)")
    p.add_argument("--out", default="experiments/results/universal_vs_fixed")
    args = p.parse_args()
    universal = evaluate(args.universal, args.widths, args.n_fake)
    fixed = evaluate(args.fixed, None, args.n_fake)
    summary = summarise(universal, fixed, args.noise)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    note = (
        f"{args.iterations_note} FMNIST-FID over {args.n_fake} fakes per width vs 10000 test images. "
        f"Universal: iteration {universal.get('iteration')}; SlimGAN: iteration {fixed.get('iteration')}."
    ).strip()
    keep = ("width", "params", "macs", "fmnist_fid", "fmnist_is", "fmnist_kid")
    payload = {
        "note": note,
        "universal": [{k: r.get(k) for k in keep} for r in universal["widths"]],
        "fixed": [{k: r.get(k) for k in keep} for r in fixed["widths"]],
        "universal_generator": universal.get("generator"),
        "summary": summary,
    }
    out.with_suffix(".json").write_text(json.dumps(payload, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(universal, fixed, summary, note))
    plot(universal, fixed, out.with_suffix(".png"), note[:120])
    print(out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
