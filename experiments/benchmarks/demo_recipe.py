"""Choosing the demo recipe by measurement (issue 14): `make demo` should finish in at most 10 minutes
from a clean clone on the 2-core machine with FMNIST-FID <= 10 at every width.

Each candidate is the demo experiment (conf/experiment/fmnist_demo.yaml) plus a few overrides and its
own number of iterations (a smaller or faster recipe may afford more in the same time). Every candidate
is trained from scratch for each seed and evaluated as `make demo` evaluates (10k fakes per width,
shipped classifier); the table gives per-width FMNIST-FID, the wall time of training + evaluation and
the estimated `make demo` time (that plus --setup-seconds for the install), and whether the candidate
meets both targets for every seed.

    python experiments/benchmarks/demo_recipe.py --list                       # the candidates
    python experiments/benchmarks/demo_recipe.py --candidates current ema ema_lr_decay --seeds 0 1
    python experiments/benchmarks/demo_recipe.py --quick                      # tiny sizes: pipeline check only

Results: experiments/results/demo_recipe.md (+ .json). Run it on an idle machine: wall time is a target.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import statistics
from pathlib import Path

HERE = Path(__file__).resolve().parent
FID_TARGET = 10.0  # every width, FMNIST-FID (shipped classifier)
MINUTES_TARGET = 10.0  # `make demo` from a clean clone, install included

EMA = ["ema=default", "ema.decay=0.995", "ema.start=250"]  # BigGAN's EMA of G shortened for ~1500 steps
HALF = ["model.generator.ngf=64", "model.discriminator.ndf=64"]
SMALL_D = ["model.discriminator.ndf=64"]
BF16 = ["trainer.precision=bf16-mixed"]  # failed the parity rule at width 0.25 (reproduction study): not a default
# name -> (iterations, overrides on top of experiment=fmnist_demo). "current" is the demo as committed.
CANDIDATES: dict[str, tuple[int, list[str]]] = {
    "current": (1500, []),
    "lr_decay": (1500, ["optim.lr_decay=linear"]),
    "ema": (1500, EMA),
    "ema_lr_decay": (1500, [*EMA, "optim.lr_decay=linear"]),
    # half the channels (about a quarter of the FLOPs): more iterations in about the same time
    "half_size": (3000, HALF),
    "half_size_ema": (3000, [*HALF, *EMA]),
    # D is ~78% of an iteration's FLOPs at ngf = ndf = 128 (a full-size D sees every width; forward-pass
    # count, docs/speed.md): halving ndf only makes the iteration ~2.4x cheaper and keeps the deployed G
    "small_d": (2000, SMALL_D),
    "small_d_ema": (2000, [*SMALL_D, *EMA]),
    "bf16": (1500, BF16),
    "bf16_ema_lr_decay": (1500, [*BF16, *EMA, "optim.lr_decay=linear"]),
}
# Only the progress bar goes: the FID points, sample grids and CSV log cost what they cost in `make demo`.
QUIET = ["callbacks.progress_bar=null"]


def _parity_module():
    """precision_parity.py: the one train-then-evaluate helper of the benchmarks and its quick sizes."""
    spec = importlib.util.spec_from_file_location("precision_parity", HERE / "precision_parity.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def summarize(results: list[dict], setup_seconds: float) -> list[dict]:
    """Per candidate: worst width's FID per seed, mean wall time, estimated `make demo` minutes, and
    whether every seed meets both targets."""
    rows = []
    for name in dict.fromkeys(r["candidate"] for r in results):
        runs = [r for r in results if r["candidate"] == name]
        worst = [max(r["fmnist_fid"].values()) for r in runs]
        minutes = [(r["wall_s"] + setup_seconds) / 60 for r in runs]
        rows.append(
            {
                "candidate": name,
                "iterations": runs[0]["iterations"],
                "seeds": [r["seed"] for r in runs],
                "worst_fid": worst,
                "demo_minutes": minutes,
                "meets": all(f <= FID_TARGET for f in worst) and all(m <= MINUTES_TARGET for m in minutes),
            }
        )
    return rows


def load_previous(path: Path, quick: bool) -> list[dict]:
    """Results of an earlier run (its .json), checked and normalised for tabulating; a run of the other
    mode (--quick or not) is refused: tiny-size numbers must not join a real table, nor block its runs."""
    try:
        results = []
        for r in json.loads(path.read_text())["results"]:
            if r["candidate"] not in CANDIDATES:
                raise ValueError(f"unknown candidate {r['candidate']!r}")
            fids = {str(k): float(v) for k, v in r["fmnist_fid"].items()}
            if not fids:
                raise ValueError(f"{r['candidate']} has no FMNIST-FID")
            seed, iterations, wall_s = int(r["seed"]), int(r["iterations"]), float(r["wall_s"])
            results.append({**r, "seed": seed, "iterations": iterations, "wall_s": wall_s, "fmnist_fid": fids})
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise SystemExit(f"demo_recipe: --previous {path}: not the .json of a demo_recipe run ({err})") from None
    other = [r for r in results if bool(r.get("quick", False)) != quick]
    if other:
        modes = ("a --quick run", "a full run") if quick else ("a full run", "a --quick run")
        raise SystemExit(f"demo_recipe: --previous {path} holds results of {modes[1]}; this is {modes[0]}")
    return results


def write_tables(results: list[dict], args: argparse.Namespace) -> list[dict]:
    """Write the per-run and per-candidate tables (``args.out``, .md and .json); returns the summary."""
    rows = summarize(results, args.setup_seconds)
    widths = list(dict.fromkeys(w for r in results for w in r["fmnist_fid"]))  # every run's, in order
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load = os.getloadavg()
    lines = [
        f"# Demo recipe candidates{' (QUICK: tiny sizes, numbers mean nothing)' if args.quick else ''}",
        "",
        f"Tables written {now}, load average then {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}.",
        *(f"- {note}" for note in dict.fromkeys(r.get("note", "") for r in results) if note),
        "",
        f"Targets: FMNIST-FID <= {FID_TARGET:g} at every width and `make demo` <= {MINUTES_TARGET:g} min "
        f"(training + evaluation + {args.setup_seconds:.0f} s install).",
        "",
        "| candidate | seed | iterations | " + " | ".join(f"FID {w}" for w in widths) + " | train + eval s | threads |",
        "|---" * (len(widths) + 5) + "|",
    ]
    for r in results:
        fids = " | ".join(f"{r['fmnist_fid'][w]:.2f}" if w in r["fmnist_fid"] else "-" for w in widths)
        threads = r.get("threads", "?")
        lines.append(f"| {r['candidate']} | {r['seed']} | {r['iterations']} | {fids} | {r['wall_s']:.0f} | {threads} |")
    lines += ["", "| candidate | worst width's FID (per seed) | `make demo` min (est.) | meets both |"]
    lines.append("|---|---|---|---|")
    for row in rows:
        worst = ", ".join(f"{f:.2f}" for f in row["worst_fid"])
        minutes = f"{statistics.mean(row['demo_minutes']):.1f}"
        lines.append(f"| {row['candidate']} | {worst} | {minutes} | {'yes' if row['meets'] else 'no'} |")
    lines.append("")
    overrides = {}  # as run (older results without them: the candidate's overrides today)
    for r in results:
        overrides.setdefault(r["candidate"], r.get("overrides", CANDIDATES[r["candidate"]][1]))
    lines += [f"- {name}: `{' '.join(o) or '(the committed demo)'}`" for name, o in overrides.items()]
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps({"results": results, "summary": rows}, indent=2))
    return rows


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--candidates", nargs="+", default=list(CANDIDATES), metavar="NAME", help="see --list")
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--list", action="store_true", help="print the candidates and exit")
    p.add_argument("--quick", action="store_true", help="tiny sizes and 2 iterations: checks the pipeline only")
    p.add_argument(
        "--setup-seconds",
        type=float,
        default=90.0,
        help="clean-clone install time added to each run's wall time for the `make demo` estimate (issue 14: ~1.5 min)",
    )
    p.add_argument("--classifier", default=None, help="FMNIST classifier file (default: the shipped one)")
    p.add_argument("--work-dir", type=Path, default=Path("outputs/demo_recipe"))
    p.add_argument("--out", type=Path, default=Path("experiments/results/demo_recipe.md"))
    p.add_argument("--note", default="", help="conditions of the run (machine load), written to the table")
    p.add_argument(
        "--previous",
        type=Path,
        nargs="+",
        default=[],
        metavar="JSON",
        help=".json files of earlier runs: their results join the tables (not retrained; the first file wins a repeat)",
    )
    args = p.parse_args(argv)
    if args.list:
        for name, (iters, overrides) in CANDIDATES.items():
            print(f"{name:<20} {iters:>5} iterations  {' '.join(overrides) or '(the committed demo)'}")
        return {}
    unknown = [c for c in args.candidates if c not in CANDIDATES]
    if unknown:
        raise SystemExit(f"demo_recipe: unknown --candidates {unknown}; known: {list(CANDIDATES)}")

    earlier: dict[tuple, dict] = {}  # checked before torch loads: a bad file fails at once
    for path in args.previous:
        for r in load_previous(path, args.quick):
            earlier.setdefault((r["candidate"], r["seed"]), r)

    import torch

    from slimgan_pl.config import register_resolvers

    register_resolvers()
    parity = _parity_module()  # its train-then-evaluate helper and quick-mode sizes
    train_and_score = parity.train_and_score
    results, done = list(earlier.values()), set(earlier)
    for name in args.candidates:
        iters, overrides = CANDIDATES[name]
        for seed in args.seeds:
            if (name, seed) in done:
                print(f"== {name}, seed {seed}: in --previous, not retrained", flush=True)
                continue
            run = [
                "experiment=fmnist_demo",
                f"seed={seed}",
                f"train.g_steps={2 if args.quick else iters}",
                *overrides,
                *QUIET,
                *(parity.QUICK if args.quick else []),
            ]
            if args.classifier:
                run.append(f"evaluate.classifier={args.classifier}")
            print(f"== {name}, seed {seed}: {2 if args.quick else iters} iterations", flush=True)
            scored = train_and_score(args.work_dir / f"{name}_s{seed}", run)
            threads = torch.get_num_threads()
            results.append(
                {"candidate": name, "seed": seed, **scored, "threads": threads, "note": args.note}
                | {"quick": args.quick, "overrides": overrides}
            )
            rows = write_tables(results, args)  # after every run: an interrupted benchmark keeps what it measured
    if len(results) == len(done):  # nothing trained: the merged tables are still to be written
        rows = write_tables(results, args)
    print("\n" + args.out.read_text())

    return {"results": results, "summary": rows}


if __name__ == "__main__":
    main()
