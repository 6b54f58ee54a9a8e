"""Per-width evaluation of a SlimGAN checkpoint: ``slimgan-eval CHECKPOINT [options]``.

For every width (or ``--widths``), G in eval mode with that width's BN statistics, the same fixed
seed (hence the same z at every width). With an EMA generator (``ema=default``) the numbers are the
EMA generator's, with standing BN statistics when ``ema.standing_batches`` > 0; ``metrics.json``
records which (``generator.weights``, ``generator.bn_statistics``):

* FMNIST-FID, FMNIST-KID against real features of a Fashion-MNIST split (test by default) and
  FMNIST-IS, all from the project's own classifier (:mod:`slimgan_pl.metrics.fmnist_classifier`),
  computed by torchmetrics. They are *not* Inception numbers and are not comparable with them.
* FMNIST-mIC over the evaluated widths (mean squared feature distance for the same z).
* active parameters, MACs of one image (FlopCounterMode / 2), median CPU latency at batch 1 and 64.

With ``--truncation T [T ...]`` every width is also scored (FMNIST-FID, FMNIST-IS) with latents
truncated at each threshold (entries with |z| > T resampled, BigGAN's trick), stored under
``truncation`` in ``metrics.json`` and plotted as IS against FID per width in ``truncation.png``.

A sanity row compares real train images with the real split the same way (FID of real vs real).
Real features are cached on disk, keyed by dataset, split, resolution, extractor checksum and
sample count. Results go to ``metrics.json`` and ``metrics.md`` in the checkpoint's run directory
(the parent of ``checkpoints/``) or ``--out``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from slimgan_pl.checkpoint import CheckpointError, load_slimgan, run_directory
from slimgan_pl.cli import cli_main
from slimgan_pl.data.base import to_model_range
from slimgan_pl.data.fashion_mnist import DEBIAN_ROOT, DataNotFoundError, load_fashion_mnist
from slimgan_pl.metrics.consistency import mean_inconsistency
from slimgan_pl.metrics.cost import active_parameters, generator_macs, latency_ms
from slimgan_pl.metrics.fmnist_classifier import (
    IMAGE_SIZE,
    VERSION,
    ClassifierCacheError,
    FMNISTFeatureExtractor,
    load_classifier,
)
from slimgan_pl.metrics.scores import frechet_distance, inception_score, kernel_distance
from slimgan_pl.module import SlimGAN

CACHE_ENV_VAR = "SLIMGAN_METRICS_CACHE"
DEFAULT_CACHE_DIR = Path("~/.cache/slimgan_pl/real_features")
MIN_CLASSIFIER_ACCURACY = 0.9  # below this the file is a smoke-test classifier, not the real one
SPLIT_SIZES = {"train": 60_000, "test": 10_000}
SUBSET_SEED = 0  # which real images form a subset smaller than the split (fixed: part of the cache key)
EXTRACTOR_NAME = f"fmnist_classifier_v{VERSION}"
NOTE = ("FMNIST-FID/IS/KID/mIC use the project's Fashion-MNIST classifier (penultimate features, "
        "logits) instead of Inception-v3; they are not comparable with Inception FID/IS/KID.")

Log = Callable[[str], None]


@dataclass
class FeatureSet:
    features: torch.Tensor  # (N, D) penultimate features
    logits: torch.Tensor    # (N, 10)


# ----------------------------------------------------------------------------- features
@torch.no_grad()
def extract(extractor: FMNISTFeatureExtractor, images: torch.Tensor, batch_size: int = 500) -> FeatureSet:
    parts = [extractor.features_and_logits(x) for x in images.split(batch_size)]
    return FeatureSet(torch.cat([f for f, _ in parts]), torch.cat([lg for _, lg in parts]))


def real_cache_key(split: str, n: int, extractor: FMNISTFeatureExtractor) -> dict[str, Any]:
    return {"dataset": "fashion_mnist", "split": split, "resolution": IMAGE_SIZE, "extractor": EXTRACTOR_NAME,
            "extractor_sha256": extractor.sha256, "n": n, "subset_seed": SUBSET_SEED}


def real_features(extractor: FMNISTFeatureExtractor, split: str, n: int, root: str = DEBIAN_ROOT,
                  cache_dir: str | os.PathLike | None = None, batch_size: int = 500,
                  log: Log | None = print) -> FeatureSet:
    """Features of ``n`` real images of ``split`` (all of it, or a seeded random subset), from the
    disk cache when the key matches, else computed and cached."""
    key = real_cache_key(split, n, extractor)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = _cache_dir(cache_dir) / f"fashion_mnist-{split}-{IMAGE_SIZE}px-n{n}-{EXTRACTOR_NAME}-{digest}.pt"
    cached = _read_cache(path, key)
    if cached is not None:
        return cached
    if log:
        log(f"computing real features: Fashion-MNIST {split}, {n} images -> {path}")
    images, _ = load_fashion_mnist(root, split)
    if n > len(images):
        raise ValueError(f"{n} real images requested but the {split} split has {len(images)}")
    if n < len(images):
        images = images[torch.randperm(len(images), generator=torch.Generator().manual_seed(SUBSET_SEED))[:n]]
    feats = extract(extractor, to_model_range(images.unsqueeze(1), IMAGE_SIZE), batch_size)
    _write_cache(path, key, feats)
    return feats


def _cache_dir(cache_dir: str | os.PathLike | None) -> Path:
    chosen = cache_dir if cache_dir is not None else os.environ.get(CACHE_ENV_VAR) or DEFAULT_CACHE_DIR
    return Path(chosen).expanduser()


def _read_cache(path: Path, key: dict[str, Any]) -> FeatureSet | None:
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return None  # unreadable cache: recompute and overwrite
    if not isinstance(payload, dict) or payload.get("key") != key:
        return None
    return FeatureSet(payload["features"], payload["logits"])


def _write_cache(path: Path, key: dict[str, Any], feats: FeatureSet) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save({"key": key, "features": feats.features, "logits": feats.logits}, tmp)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- scores
def score(real: FeatureSet, fake: FeatureSet, is_splits: int, kid_subsets: int, kid_subset_size: int,
          seed: int) -> dict[str, float]:
    kid = kernel_distance(real.features, fake.features, kid_subsets, kid_subset_size, seed)
    iscore = inception_score(fake.logits, is_splits, seed)
    return {"fmnist_fid": frechet_distance(real.features, fake.features),
            "fmnist_is": iscore.mean, "fmnist_is_std": iscore.std,
            "fmnist_kid": kid.mean, "fmnist_kid_std": kid.std}


def width_cost(model: SlimGAN, width: float, latency_batches: Sequence[int], repeats: int = 20,
               warmup: int = 3) -> dict[str, Any]:
    g, nz = model.generator, model.generator.nz
    return {"params": active_parameters(g, width), "macs": generator_macs(g, width, nz),
            "latency_ms": {str(b): latency_ms(g, width, nz, b, repeats, warmup) for b in latency_batches}}


def evaluate_width(model: SlimGAN, width: float, extractor: FMNISTFeatureExtractor, real: FeatureSet, n_fake: int,
                   batch_size: int, knobs: dict[str, Any],
                   cost_kw: dict[str, Any]) -> tuple[dict[str, Any], torch.Tensor]:
    """One table row, plus the fake features (kept for mIC: the seed, hence z, is the same at every width)."""
    start = time.perf_counter()
    images = model.sample(n_fake, width, seed=knobs["seed"], batch_size=batch_size)
    fake = extract(extractor, images, batch_size)
    row = {"width": width, **width_cost(model, width, **cost_kw), **score(real, fake, **knobs)}
    row["seconds"] = round(time.perf_counter() - start, 2)
    return row, fake.features


def truncation_row(model: SlimGAN, width: float, threshold: float, extractor: FMNISTFeatureExtractor,
                   real: FeatureSet, n_fake: int, batch_size: int, is_splits: int, seed: int) -> dict[str, Any]:
    """FMNIST-FID and FMNIST-IS of one width with latents truncated at ``threshold``."""
    images = model.sample(n_fake, width, seed=seed, truncation=threshold, batch_size=batch_size)
    fake = extract(extractor, images, batch_size)
    iscore = inception_score(fake.logits, is_splits, seed)
    return {"width": width, "truncation": threshold, "fmnist_fid": frechet_distance(real.features, fake.features),
            "fmnist_is": iscore.mean, "fmnist_is_std": iscore.std}


def truncation_curves(model: SlimGAN, widths: Sequence[float], thresholds: Sequence[float],
                      extractor: FMNISTFeatureExtractor, real: FeatureSet, n_fake: int, batch_size: int,
                      is_splits: int, seed: int, say: Log) -> dict[str, Any]:
    """The ``truncation`` entry of metrics.json: a row per (width, threshold); same seed everywhere, so
    every threshold starts from the same z and only redraws its out-of-range entries."""
    rows = []
    for w in widths:
        for t in thresholds:
            rows.append(truncation_row(model, w, t, extractor, real, n_fake, batch_size, is_splits, seed))
            say(f"width {w}, truncation {t:g}: FMNIST-FID {rows[-1]['fmnist_fid']:.3f}, "
                f"FMNIST-IS {rows[-1]['fmnist_is']:.3f}")
    return {"method": "entries of z with |z| > threshold resampled (BigGAN)", "thresholds": list(thresholds),
            "rows": rows, "plot": None}


def check_thresholds(thresholds: Sequence[float]) -> list[float]:
    """Sorted distinct truncation thresholds; each must be > 0 (and finite)."""
    values = sorted({float(t) for t in thresholds})
    if not values or not all(0 < t < float("inf") for t in values):
        raise ValueError(f"--truncation thresholds must be finite and > 0, got {list(thresholds)}")
    return values


def plot_truncation(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """FMNIST-IS against FMNIST-FID, one line per width through its thresholds (points labelled)."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no display backend needed

    fig = Figure(figsize=(6.4, 4.8), layout="constrained")
    ax = fig.add_subplot()
    for width in sorted({r["width"] for r in rows}):
        points = sorted((r for r in rows if r["width"] == width), key=lambda r: r["truncation"])
        fids, iss = [r["fmnist_fid"] for r in points], [r["fmnist_is"] for r in points]
        ax.plot(fids, iss, marker="o", label=f"width {width}")
        for r, x, y in zip(points, fids, iss):
            ax.annotate(f"{r['truncation']:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel("FMNIST-FID (lower is better)")
    ax.set_ylabel("FMNIST-IS (higher is better)")
    ax.set_title("Truncation trade-off per width (labels: threshold)")
    ax.ticklabel_format(useOffset=False)  # plain values: an untrained G's IS of 1.0001 reads "+1" otherwise
    ax.grid(alpha=0.3)
    ax.legend()
    fig.savefig(path, dpi=120)
    return path


# ----------------------------------------------------------------------------- main entry
def load_model(checkpoint: Path) -> tuple[SlimGAN, dict[str, Any]]:
    """The checkpoint's model (the project's one loader) and its training progress."""
    model = load_slimgan(checkpoint)
    g = model.generator
    if g.img_channels != 1 or g.img_size != IMAGE_SIZE:
        raise ValueError(f"FMNIST metrics need a 1x{IMAGE_SIZE}x{IMAGE_SIZE} generator, this one makes "
                         f"{g.img_channels}x{g.img_size}x{g.img_size} images")
    step = model.checkpoint_global_step
    return model, {"global_step": step, "iteration": step // (model.hparams.n_dis + 1)}


def evaluate_checkpoint(checkpoint: str | os.PathLike, widths: Sequence[float] | None = None,
                        n_fake: int = 10_000, n_real: int = 10_000, split: str = "test", seed: int = 0,
                        data_root: str = DEBIAN_ROOT, classifier_path: str | os.PathLike | None = None,
                        cache_dir: str | os.PathLike | None = None, out_dir: str | os.PathLike | None = None,
                        is_splits: int = 10, kid_subsets: int = 100, kid_subset_size: int = 1000,
                        latency_batches: Sequence[int] = (1, 64), latency_repeats: int = 20,
                        latency_warmup: int = 3, batch_size: int = 500, sanity: bool = True,
                        truncation: Sequence[float] | None = None, write: bool = True,
                        log: Log | None = print) -> dict[str, Any]:
    """Evaluate every width of a checkpoint; returns the ``metrics.json`` content (and writes
    ``metrics.json`` / ``metrics.md``, plus ``truncation.png`` with ``truncation``, unless
    ``write=False``)."""
    thresholds = check_thresholds(truncation) if truncation is not None else None
    checkpoint = Path(checkpoint)
    model, progress = load_model(checkpoint)
    widths = [float(w) for w in (widths or model.widths)]
    for w in widths:
        model.generator.check_width(w)
    if split not in SPLIT_SIZES:
        raise ValueError(f"split must be one of {sorted(SPLIT_SIZES)}, got {split!r}")
    if n_fake < is_splits or n_fake < 2 or n_real < 2:
        raise ValueError(f"need n_fake >= max(2, is_splits={is_splits}) and n_real >= 2, got {n_fake}, {n_real}")
    say = log or (lambda _: None)
    # The sampling generator (EMA when the checkpoint has one); standing BN statistics for an EMA
    # generator trained with ema.standing_batches > 0, else each width's running statistics.
    sampling = {"weights": "ema" if model.generator_ema is not None else "live", "bn_statistics": model.bn_statistics}
    if model.bn_statistics == "standing":
        model.recompute_standing_statistics(seed=seed)
        sampling["standing"] = {"batches_per_width": model.hparams.ema_standing_batches,
                                "batch_size": model.hparams.ema_standing_batch_size, "seed": seed}
        say(f"standing BN statistics of the EMA generator: {model.hparams.ema_standing_batches} batches of "
            f"{model.hparams.ema_standing_batch_size} per width")

    loaded = load_classifier(classifier_path, root=data_root, log=log)
    if loaded.test_accuracy < MIN_CLASSIFIER_ACCURACY:
        say(f"warning: the FMNIST classifier {loaded.path} has test accuracy {loaded.test_accuracy:.3f} < "
            f"{MIN_CLASSIFIER_ACCURACY}; retrain it (python -m slimgan_pl.metrics.fmnist_classifier --train) "
            "before comparing numbers")
    extractor = FMNISTFeatureExtractor(loaded.model, "features", sha256=loaded.sha256)
    real = real_features(extractor, split, n_real, data_root, cache_dir, batch_size, log)
    knobs = dict(is_splits=is_splits, kid_subsets=kid_subsets, kid_subset_size=kid_subset_size, seed=seed)

    rows, fake_feats = [], []
    for w in widths:
        row, features = evaluate_width(model, w, extractor, real, n_fake, batch_size, knobs,
                                       dict(latency_batches=latency_batches, repeats=latency_repeats,
                                            warmup=latency_warmup))
        rows.append(row)
        fake_feats.append(features)
        say(f"width {w}: FMNIST-FID {row['fmnist_fid']:.3f}, FMNIST-IS {row['fmnist_is']:.3f}, "
            f"FMNIST-KID {row['fmnist_kid']:.5f} ({row['seconds']:.1f} s)")

    result: dict[str, Any] = {
        "checkpoint": str(checkpoint.resolve()), **progress, "note": NOTE,
        "generator": sampling,  # which weights and which BN statistics every number below used
        "settings": {"n_fake": n_fake, "n_real": n_real, "split": split, "seed": seed, "batch_size": batch_size,
                     "latency_batches": list(latency_batches), "latency_repeats": latency_repeats,
                     "latency_warmup": latency_warmup, "threads": torch.get_num_threads(), **knobs},
        "extractor": {"name": EXTRACTOR_NAME, "path": str(loaded.path), "sha256": loaded.sha256,
                      "test_accuracy": loaded.test_accuracy},
        "widths": rows,
        "consistency": mean_inconsistency(widths, fake_feats).to_json() if len(widths) > 1 else None,
        "sanity": None,
        "truncation": None,
    }
    if thresholds:
        result["truncation"] = truncation_curves(model, widths, thresholds, extractor, real, n_fake, batch_size,
                                                 is_splits, seed, say)
    if sanity:
        other = "train" if split == "test" else "test"
        ref = real_features(extractor, other, min(n_real, SPLIT_SIZES[other]), data_root, cache_dir, batch_size, log)
        result["sanity"] = {"pair": f"real {other} vs real {split}", **score(real, ref, **knobs)}
    if write:
        out = Path(out_dir) if out_dir is not None else run_directory(checkpoint)
        if result["truncation"]:
            out.mkdir(parents=True, exist_ok=True)
            result["truncation"]["plot"] = plot_truncation(result["truncation"]["rows"], out / "truncation.png").name
            say(f"wrote {out / result['truncation']['plot']}")
        paths = write_results(result, out)
        say(f"wrote {paths[0]} and {paths[1]}")
    say("\n" + markdown_table(result))
    return result


# ----------------------------------------------------------------------------- output
def _si(n: float) -> str:
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{suffix}"
    return f"{n:.0f}"


def markdown_table(result: dict[str, Any]) -> str:
    batches = result["settings"]["latency_batches"]
    head = ["width", "params", "MACs", "FMNIST-FID", "FMNIST-IS", "FMNIST-KID",
            *[f"latency b{b} (ms)" for b in batches]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def metrics(r: dict[str, Any]) -> list[str]:
        return [f"{r['fmnist_fid']:.2f}", f"{r['fmnist_is']:.2f} ± {r['fmnist_is_std']:.2f}",
                f"{r['fmnist_kid']:.4f} ± {r['fmnist_kid_std']:.4f}"]

    for r in result["widths"]:
        latency = [f"{r['latency_ms'][str(b)]:.2f}" for b in batches]
        cells = [f"{r['width']}", _si(r["params"]), _si(r["macs"]), *metrics(r), *latency]
        lines.append("| " + " | ".join(cells) + " |")
    if result["sanity"]:
        s = result["sanity"]
        lines.append("| " + " | ".join([f"{s['pair']} (sanity)", "-", "-", *metrics(s), *["-"] * len(batches)]) + " |")
    s = result["settings"]
    generator = result.get("generator") or {"weights": "live", "bn_statistics": "running"}  # older files
    text = [f"SlimGAN evaluation of `{result['checkpoint']}` (iteration {result['iteration']})", "",
            *lines, "",
            f"Generator: {generator['weights']} weights, BN {generator['bn_statistics']} statistics. "
            f"{s['n_fake']} fakes per width (seed {s['seed']}, same z at every width) vs {s['n_real']} real "
            f"{s['split']} images; IS over {s['is_splits']} splits; KID {s['kid_subsets']} subsets of "
            f"{s['kid_subset_size']}; latency: median of {s['latency_repeats']} CPU runs "
            f"(torch threads: {s['threads']}). "
            f"Classifier test accuracy {result['extractor']['test_accuracy']:.4f} "
            f"(sha256 {result['extractor']['sha256'][:12]}).", ""]
    if result["consistency"]:
        c = result["consistency"]
        adjacent = ", ".join(f"{k}: {v:.3f}" for k, v in c["adjacent"].items())
        text += [f"FMNIST-mIC (mean over all width pairs): {c['mIC']:.3f}; adjacent pairs: {adjacent}", ""]
    if result.get("truncation"):
        text += truncation_table(result["truncation"])
    text += [result["note"], ""]
    return "\n".join(text)


def truncation_table(truncation: dict[str, Any]) -> list[str]:
    lines = [f"Truncation: {truncation['method']}.", "",
             "| width | threshold | FMNIST-FID | FMNIST-IS |", "|---|---|---|---|"]
    for r in truncation["rows"]:
        lines.append(f"| {r['width']} | {r['truncation']:g} | {r['fmnist_fid']:.2f} | "
                     f"{r['fmnist_is']:.2f} ± {r['fmnist_is_std']:.2f} |")
    return [*lines, ""]


def write_results(result: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / "metrics.json", out_dir / "metrics.md"
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    md_path.write_text(markdown_table(result))
    return json_path, md_path


# ----------------------------------------------------------------------------- CLI
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="slimgan-eval", description="Evaluate every width of a SlimGAN checkpoint "
                                "(FMNIST-FID/IS/KID, FMNIST-mIC, params, MACs, CPU latency).")
    p.add_argument("checkpoint", help="Lightning checkpoint, e.g. outputs/<run>/checkpoints/last.ckpt")
    p.add_argument("--widths", type=float, nargs="+", default=None, help="subset of the trained widths")
    p.add_argument("--n-fake", type=int, default=10_000, help="generated images per width")
    p.add_argument("--n-real", type=int, default=10_000, help="real images of --split")
    p.add_argument("--split", choices=("test", "train"), default="test")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root", default=DEBIAN_ROOT)
    p.add_argument("--classifier", default=None, help="FMNIST classifier file (default $SLIMGAN_FMNIST_CLASSIFIER "
                   "or ~/.cache/slimgan_pl/fmnist_classifier_v1.pt; trained on first use)")
    p.add_argument("--cache-dir", default=None,
                   help=f"real-feature cache (default ${CACHE_ENV_VAR} or {DEFAULT_CACHE_DIR})")
    p.add_argument("--out", default=None, help="output folder (default: the checkpoint's run directory)")
    p.add_argument("--is-splits", type=int, default=10)
    p.add_argument("--kid-subsets", type=int, default=100)
    p.add_argument("--kid-subset-size", type=int, default=1000)
    p.add_argument("--latency-batches", type=int, nargs="+", default=[1, 64])
    p.add_argument("--latency-repeats", type=int, default=20)
    p.add_argument("--latency-warmup", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=500, help="batch for sampling and feature extraction")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--no-sanity", action="store_true", help="skip the real-vs-real sanity row")
    p.add_argument("--truncation", type=float, nargs="+", default=None, metavar="T",
                   help="also score FMNIST-FID/IS per width with |z| > T resampled, for each threshold T, "
                        "and plot IS against FID (truncation.png)")
    return p.parse_args(argv)


@cli_main("slimgan-eval")  # one-line errors, --debug for the traceback (slimgan_pl/cli.py)
def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        evaluate_checkpoint(args.checkpoint, widths=args.widths, n_fake=args.n_fake, n_real=args.n_real,
                            split=args.split, seed=args.seed, data_root=args.data_root,
                            classifier_path=args.classifier, cache_dir=args.cache_dir, out_dir=args.out,
                            is_splits=args.is_splits, kid_subsets=args.kid_subsets,
                            kid_subset_size=args.kid_subset_size, latency_batches=args.latency_batches,
                            latency_repeats=args.latency_repeats, latency_warmup=args.latency_warmup,
                            batch_size=args.batch_size, sanity=not args.no_sanity, truncation=args.truncation)
    except (CheckpointError, ClassifierCacheError, DataNotFoundError, FileNotFoundError, ValueError) as e:
        print(f"slimgan-eval: error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
