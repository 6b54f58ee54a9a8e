"""Per-width evaluation of a SlimGAN checkpoint, the library behind ``slimgan-eval``
(:mod:`slimgan_pl.evaluate` is its command line) and ``evaluate.after_training``.

For every width: the sampling generator (the EMA generator when there is one, with the BN statistics
``slimgan-sample`` and ``slimgan-export`` use: :func:`slimgan_pl.inference.prepare_sampling_generator`)
in eval mode, the same fixed seed (hence the same z at every width); features from the dataset's
backbone (:mod:`.backbones`: Inception-v3 for RGB data, the project's classifier for Fashion-MNIST),
scores against cached real features (:mod:`.reference`) or a ``mu``/``sigma`` statistics file
(:mod:`.scores`), mIC (:mod:`.consistency`), parameters, MACs and CPU latency (:mod:`.cost`), optional
truncation curves and a real-vs-real sanity row; results as ``metrics.json`` / ``metrics.md``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from slimgan_pl.checkpoint import load_slimgan, read_checkpoint, run_directory
from slimgan_pl.data.fashion_mnist import DEBIAN_ROOT, DataNotFoundError
from slimgan_pl.inference import prepare_sampling_generator
from slimgan_pl.metrics.backbones import Backbone, FeatureSet, default_backbone, load_backbone
from slimgan_pl.metrics.consistency import mean_inconsistency
from slimgan_pl.metrics.cost import MAX_ROUNDS, Timing, active_parameters, generator_macs, time_generator
from slimgan_pl.metrics.fmnist_classifier import FMNISTFeatureExtractor
from slimgan_pl.metrics.reference import (
    FASHION_MNIST_CONFIG,
    Protocol,
    cache_dir,
    cache_paths,
    checkpoint_data_config,
    datamodule_config,
    dataset_kind,
    default_protocol,
    load_protocol,
    read_stats,
    real_cache_key,
    split_size,
)
from slimgan_pl.metrics.reference import real_features as reference_features
from slimgan_pl.metrics.scores import frechet_distance, frechet_distance_from_stats, inception_score, kernel_distance
from slimgan_pl.module import SlimGAN, width_tag
from slimgan_pl.sampling import generate, latents, sample
from slimgan_pl.universal import calibrate_model, calibrate_universal, calibrated_record

MIN_CLASSIFIER_ACCURACY = 0.9  # below this the file is a smoke-test classifier, not the real one

Log = Callable[[str], None]


# ----------------------------------------------------------------------------- features
def _as_backbone(extractor: Backbone | FMNISTFeatureExtractor) -> Backbone:
    if isinstance(extractor, Backbone):
        return extractor
    return Backbone("fmnist_classifier", extractor, {"name": "fmnist_classifier_v1", "sha256": extractor.sha256}, 500)


def extract(extractor: Backbone | FMNISTFeatureExtractor, images: torch.Tensor, batch_size: int = 500) -> FeatureSet:
    """Features and logits of ``images`` (any backbone, or a bare FMNIST extractor)."""
    return _as_backbone(extractor).extract(images, batch_size)


def real_features(
    extractor: Backbone | FMNISTFeatureExtractor,
    split: str,
    n: int,
    root: str = DEBIAN_ROOT,
    cache_dir: str | os.PathLike | None = None,
    batch_size: int = 500,
    log: Log | None = print,
) -> FeatureSet:
    """Fashion-MNIST real features of ``n`` images of ``split`` (cached), as the FMNIST-FID callback uses."""
    data = {**FASHION_MNIST_CONFIG, "root": root}
    return reference_features(_as_backbone(extractor), data, split, n, cache_dir, batch_size, log)[0]


# ----------------------------------------------------------------------------- scores
class Reference:
    """The real side of FID/KID: real features, or only (mu, sigma) from a ``--ref-stats`` file."""

    def __init__(
        self,
        features: FeatureSet | None = None,
        stats: tuple[torch.Tensor, torch.Tensor] | None = None,
        source: str = "",
    ) -> None:
        self.features, self.stats, self.source = features, stats, source

    def fid(self, fake: torch.Tensor) -> float:
        if self.features is not None:
            return frechet_distance(self.features.features, fake)
        assert self.stats is not None
        return frechet_distance_from_stats(*self.stats, fake)


def score(
    real: Reference, fake: FeatureSet, is_logits: torch.Tensor, protocol: Protocol, seed: int, prefix: str
) -> dict[str, float | None]:
    """FID and KID of ``fake`` against ``real``, IS of ``is_logits``; keys prefixed (``fmnist_`` or none)."""
    iscore = inception_score(is_logits, protocol.is_splits, seed)
    row: dict[str, float | None] = {
        f"{prefix}fid": real.fid(fake.features),
        f"{prefix}is": iscore.mean,
        f"{prefix}is_std": iscore.std,
        f"{prefix}kid": None,
        f"{prefix}kid_std": None,
    }
    if real.features is not None:  # KID needs the real features, a statistics file has none
        kid = kernel_distance(
            real.features.features, fake.features, protocol.kid_subsets, protocol.kid_subset_size, seed
        )
        row[f"{prefix}kid"], row[f"{prefix}kid_std"] = kid.mean, kid.std
    return row


def width_costs(
    generator: nn.Module,
    widths: Sequence[float],
    latency_batches: Sequence[int],
    repeats: int = 20,
    warmup: int = 3,
    threads: int = 1,
    rounds: int = MAX_ROUNDS,
) -> tuple[dict[float, dict[str, Any]], dict[str, Timing]]:
    """Per width: active parameters, MACs of one image, and per batch size the CPU latency (median of single
    forwards, widths timed together with ``threads`` torch threads: :func:`slimgan_pl.metrics.cost.time_generator`)
    and its spread (IQR/median); plus the timings per batch size (how they were measured, stable or not)."""
    nz = generator.nz
    timings = {
        str(b): time_generator(generator, widths, nz, b, repeats, warmup, threads, max_rounds=rounds)
        for b in latency_batches
    }
    costs = {
        w: {
            "params": active_parameters(generator, w),
            "macs": generator_macs(generator, w, nz),
            "latency_ms": {b: t.latencies[w].median_ms for b, t in timings.items()},
            "latency_spread": {b: round(t.latencies[w].spread, 4) for b, t in timings.items()},
        }
        for w in widths
    }
    return costs, timings


def prepare_generator(model: SlimGAN, say: Log) -> tuple[nn.Module, dict[str, Any]]:
    """The sampling generator in its evaluation state for every width, and the ``generator`` entry
    of metrics.json. The statistics are those slimgan-sample and slimgan-export
    use (:func:`slimgan_pl.inference.prepare_sampling_generator`: standing statistics of an EMA
    generator trained with ema.standing_batches > 0, with their fixed seed; else each width's running
    statistics), so an exported generator reproduces the evaluated numbers."""
    generator, record = prepare_sampling_generator(model)
    if record["bn_statistics"] == "standing":
        say(
            f"standing BN statistics of the EMA generator: {model.hparams.ema_standing_batches} batches of "
            f"{model.hparams.ema_standing_batch_size} per width"
        )
    return generator, record


def evaluate_width(
    generator: nn.Module,
    width: float,
    backbone: Backbone,
    real: Reference,
    protocol: Protocol,
    seed: int,
    batch_size: int,
    progress: Callable[[int], Any] | None = None,
) -> tuple[dict[str, Any], torch.Tensor]:
    """Metrics of one width, plus its FID fakes' features (kept for mIC: same seed, hence same z, at
    every width). One sample of max(n_fake, is_n_fake) images: the first n_fake give FID/KID/mIC,
    the first is_n_fake give IS. ``progress(n)`` after each batch of features."""
    start = time.perf_counter()
    images = sample(generator, max(protocol.n_fake, protocol.is_n_fake), width, seed=seed, batch_size=batch_size)
    feats = backbone.extract(images, batch_size, progress)
    fake = FeatureSet(feats.features[: protocol.n_fake], feats.logits[: protocol.n_fake])
    row = {"width": width, **score(real, fake, feats.logits[: protocol.is_n_fake], protocol, seed, backbone.key_prefix)}
    row["seconds"] = round(time.perf_counter() - start, 2)
    return row, compact_features(fake.features)


def compact_features(features: torch.Tensor) -> torch.Tensor:
    """``features`` (float64) in float32 when that is exact, else unchanged. The backbones compute in
    float32 and :meth:`Backbone.extract` widens to float64, so the float32 copy is exact and mIC (which
    widens again) is unchanged, at half the memory: mIC keeps every width's FID features until all
    widths are scored (4 x 50k x 2048 Inception features: 3.3 GB in float64, 1.6 GB in float32), while
    each width's images, logits and float64 features are freed once it is scored."""
    narrow = features.float()
    return narrow if torch.equal(narrow.double(), features) else features


def truncation_row(
    generator: nn.Module,
    width: float,
    threshold: float,
    backbone: Backbone,
    real: Reference,
    n_fake: int,
    batch_size: int,
    is_splits: int,
    seed: int,
) -> dict[str, Any]:
    """FID and IS (backbone-prefixed keys) of one width with latents truncated at ``threshold``."""
    images = sample(generator, n_fake, width, seed=seed, truncation=threshold, batch_size=batch_size)
    fake = backbone.extract(images, batch_size)
    iscore = inception_score(fake.logits, is_splits, seed)
    p = backbone.key_prefix
    return {
        "width": width,
        "truncation": threshold,
        f"{p}fid": real.fid(fake.features),
        f"{p}is": iscore.mean,
        f"{p}is_std": iscore.std,
    }


def truncation_curves(
    generator: nn.Module,
    widths: Sequence[float],
    thresholds: Sequence[float],
    backbone: Backbone,
    real: Reference,
    n_fake: int,
    batch_size: int,
    is_splits: int,
    seed: int,
    say: Log,
) -> dict[str, Any]:
    """The ``truncation`` entry of metrics.json: a row per (width, threshold); same seed everywhere, so
    every threshold starts from the same z and only redraws its out-of-range entries."""
    rows = []
    p, label = backbone.key_prefix, backbone.label_prefix
    for w in widths:
        for t in thresholds:
            rows.append(truncation_row(generator, w, t, backbone, real, n_fake, batch_size, is_splits, seed))
            say(
                f"width {w}, truncation {t:g}: {label}FID {rows[-1][f'{p}fid']:.3f}, {label}IS {rows[-1][f'{p}is']:.3f}"
            )
    return {
        "method": "entries of z with |z| > threshold resampled (BigGAN)",
        "thresholds": list(thresholds),
        "rows": rows,
        "plot": None,
    }


def check_thresholds(thresholds: Sequence[float]) -> list[float]:
    """Sorted distinct truncation thresholds; each must be > 0 (and finite)."""
    values = sorted({float(t) for t in thresholds})
    if not values or not all(0 < t < float("inf") for t in values):
        raise ValueError(f"--truncation thresholds must be finite and > 0, got {list(thresholds)}")
    return values


def plot_truncation(
    rows: Sequence[dict[str, Any]], path: Path, prefix: str = "fmnist_", label: str = "FMNIST-"
) -> Path:
    """IS against FID, one line per width through its thresholds (points labelled)."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no display backend needed

    fig = Figure(figsize=(6.4, 4.8), layout="constrained")
    ax = fig.add_subplot()
    for width in sorted({r["width"] for r in rows}):
        points = sorted((r for r in rows if r["width"] == width), key=lambda r: r["truncation"])
        fids, iss = [r[f"{prefix}fid"] for r in points], [r[f"{prefix}is"] for r in points]
        ax.plot(fids, iss, marker="o", label=f"width {width}")
        for r, x, y in zip(points, fids, iss):
            ax.annotate(f"{r['truncation']:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel(f"{label}FID (lower is better)")
    ax.set_ylabel(f"{label}IS (higher is better)")
    ax.set_title("Truncation trade-off per width (labels: threshold)")
    ax.ticklabel_format(useOffset=False)  # plain values: an untrained G's IS of 1.0001 reads "+1" otherwise
    ax.grid(alpha=0.3)
    ax.legend()
    fig.savefig(path, dpi=120)
    return path


# ----------------------------------------------------------------------------- a checkpoint
def load_model(checkpoint: Path) -> tuple[SlimGAN, dict[str, Any]]:
    """The checkpoint's model (the project's one loader) and its training progress."""
    model = load_slimgan(checkpoint)
    step = model.checkpoint_global_step
    return model, {"global_step": step, "iteration": step // (model.hparams.n_dis + 1)}


def data_config_for(checkpoint: Path, model: SlimGAN, data_root: str | None) -> tuple[dict[str, Any], str]:
    """The checkpoint's data config (``--data-root`` replaces its root) and where it came from."""
    g = model.generator
    config, source = checkpoint_data_config(
        checkpoint, read_checkpoint(checkpoint), (g.img_channels, g.img_size, g.img_size)
    )
    if data_root is not None:
        config["root"] = data_root
    size, channels = config.get("image_size", g.img_size), config.get("img_channels", g.img_channels)
    if (int(channels), int(size)) != (g.img_channels, g.img_size):
        raise ValueError(
            f"the data config ({source}) gives {channels}x{size}x{size} images but the generator makes "
            f"{g.img_channels}x{g.img_size}x{g.img_size}"
        )
    return config, source


def resolve_protocol(name: str | None, dataset: str, **overrides: int | str | None) -> Protocol:
    """A preset with the given (non-None) counts/split replaced."""
    protocol = load_protocol(name, dataset)
    changed = {k: v for k, v in overrides.items() if v is not None}
    if (
        "n_fake" in changed
        and "is_n_fake" not in changed
        and (protocol.is_n_fake == protocol.n_fake or changed["n_fake"] < protocol.is_n_fake)
    ):  # IS on the FID fakes stays so; a reduced --n-fake reduces IS too: min(is_n_fake, n_fake)
        changed["is_n_fake"] = changed["n_fake"]
    protocol = replace(protocol, **changed)
    if protocol.n_fake < max(2, protocol.is_splits) or protocol.n_real < 2 or protocol.is_n_fake < protocol.is_splits:
        raise ValueError(
            f"need n_fake >= max(2, is_splits={protocol.is_splits}), is_n_fake >= is_splits and "
            f"n_real >= 2, got n_fake={protocol.n_fake}, is_n_fake={protocol.is_n_fake}, "
            f"n_real={protocol.n_real}"
        )
    return protocol


def metrics_stem(protocol: Protocol, dataset: str, ref_stats: str | os.PathLike | None) -> str:
    """``metrics`` for the dataset's default protocol at full counts, else a name that says what
    differs (so a reduced evaluation never overwrites the full one)."""
    preset = load_protocol(protocol.name, dataset)
    if protocol == preset and ref_stats is None and protocol.name == default_protocol(dataset):
        return "metrics"
    parts = [f"metrics-{protocol.name}"]
    if protocol.split != preset.split:
        parts.append(protocol.split)
    if (protocol.n_fake, protocol.n_real, protocol.is_n_fake) != (preset.n_fake, preset.n_real, preset.is_n_fake):
        parts.append(f"fake{protocol.n_fake}-real{protocol.n_real}-is{protocol.is_n_fake}")
    if (protocol.is_splits, protocol.kid_subsets, protocol.kid_subset_size) != (
        preset.is_splits,
        preset.kid_subsets,
        preset.kid_subset_size,
    ):
        parts.append(f"splits{protocol.is_splits}-kid{protocol.kid_subsets}x{protocol.kid_subset_size}")
    if ref_stats is not None:
        parts.append(f"ref-{Path(ref_stats).stem}")
    return "-".join(parts)


def _cached(backbone: Backbone, data: Mapping[str, Any], split: str, n: int, directory: Any) -> bool:
    """Whether the real features of (split, n) are in the cache (a file under their key; not read here)."""
    return cache_paths(real_cache_key(data, split, n, backbone), cache_dir(directory))[0].is_file()


def is_count_note(protocol: Protocol, preset: Protocol, n_fake: int | None, is_n_fake: int | None) -> str | None:
    """The line saying that ``--n-fake`` also changed the IS count (None when it did not)."""
    if n_fake is None or is_n_fake is not None or protocol.is_n_fake == preset.is_n_fake:
        return None
    return (
        f"IS on {protocol.is_n_fake} fakes per width, following --n-fake (protocol {protocol.name}: "
        f"{preset.is_n_fake}); --is-n-fake N sets it"
    )


def counts_line(
    widths: Sequence[float],
    protocol: Protocol,
    reals: Mapping[str, tuple[int, bool]],
    thresholds: Sequence[float] | None,
) -> str:
    """What the evaluation will compute, in one line: widths, fakes per width for FID/KID/mIC and for IS,
    real images per split (and whether their features are cached), KID subsets, truncation rows."""
    real = ", ".join(
        f"{n} real {split} images ({'cached' if hit else 'to extract'})" for split, (n, hit) in reals.items()
    )
    text = (
        f"evaluating {len(widths)} widths {list(widths)}: {protocol.n_fake} fakes per width for FID/KID/mIC, "
        f"{protocol.is_n_fake} for IS ({protocol.is_splits} splits), one sample of "
        f"{max(protocol.n_fake, protocol.is_n_fake)} per width; {real or 'reference statistics file'}; "
        f"KID {protocol.kid_subsets} subsets of {protocol.kid_subset_size}"
    )
    if thresholds:
        text += f"; truncation {list(thresholds)}: {protocol.n_fake} more fakes per width and threshold"
    return text


@torch.inference_mode()
def seconds_per_image(
    generator: nn.Module, width: float, backbone: Backbone, batch_size: int, n: int = 16
) -> tuple[float, float]:
    """(generator, backbone) seconds per image, timed on a second batch of ``n`` images at ``width`` (the
    first one warms up): the throughput behind the time estimate."""
    n = max(1, min(n, batch_size))
    z, y = latents(generator, n, seed=0)
    seconds = []
    for _ in range(2):
        start = time.perf_counter()
        images = generate(generator, z, width, y, batch_size)
        middle = time.perf_counter()
        backbone.extract(images, batch_size)
        seconds.append(((middle - start) / n, (time.perf_counter() - middle) / n))
    return seconds[-1]


def estimate_line(
    widths: Sequence[float],
    protocol: Protocol,
    reals_to_extract: int,
    thresholds: Sequence[float] | None,
    per_image: tuple[float, float],
    backbone: str,
    device: torch.device,
) -> tuple[str, float]:
    """(the line, seconds): the time sampling and features will take at the measured throughput."""
    fakes = len(widths) * (max(protocol.n_fake, protocol.is_n_fake) + len(thresholds or ()) * protocol.n_fake)
    g, b = per_image
    seconds = fakes * (g + b) + reals_to_extract * b
    return (
        f"estimate: ~{_duration(seconds)} for {fakes} fakes and {reals_to_extract} real images to extract "
        f"(generator {g * 1e3:.2f} + {backbone} {b * 1e3:.2f} ms per image on {device}, measured on a small "
        f"batch; latency timing comes on top)",
        seconds,
    )


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def evaluate_checkpoint(
    checkpoint: str | os.PathLike,
    widths: Sequence[float] | None = None,
    protocol: str | None = None,
    n_fake: int | None = None,
    n_real: int | None = None,
    is_n_fake: int | None = None,
    split: str | None = None,
    seed: int = 0,
    data_root: str | None = None,
    backbone: str = "auto",
    classifier_path: str | os.PathLike | None = None,
    inception_weights: str | os.PathLike | None = None,
    ref_stats: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    out_dir: str | os.PathLike | None = None,
    is_splits: int | None = None,
    kid_subsets: int | None = None,
    kid_subset_size: int | None = None,
    latency_batches: Sequence[int] = (1, 64),
    latency_repeats: int = 20,
    latency_warmup: int = 3,
    latency_threads: int = 1,
    batch_size: int = 500,
    sanity: bool = True,
    truncation: Sequence[float] | None = None,
    device: str | None = None,
    write: bool = True,
    log: Log | None = print,
) -> dict[str, Any]:
    """Evaluate every width of a checkpoint; returns the metrics content (and writes
    ``<stem>.json`` / ``<stem>.md``, plus ``truncation.png`` with ``truncation``, unless
    ``write=False``; ``result["files"]`` lists them). Before starting it says what it will compute
    (:func:`counts_line`) and how long sampling and features will take (:func:`estimate_line`), then
    shows a progress bar over the widths' images (stderr; not with ``log=None``)."""
    say = log or (lambda _: None)
    started = time.perf_counter()
    thresholds = check_thresholds(truncation) if truncation is not None else None
    checkpoint = Path(checkpoint)
    model, progress = load_model(checkpoint)
    widths = [float(w) for w in (widths or model.widths)]
    for w in widths:
        model.generator.check_width(w)
    for note in calibrate_universal(model, widths):  # universal models: say which widths are one network
        say(note)
    data, data_source = data_config_for(checkpoint, model, data_root)
    dataset = dataset_kind(data)
    proto = resolve_protocol(
        protocol,
        dataset,
        n_fake=n_fake,
        n_real=n_real,
        is_n_fake=is_n_fake,
        split=split,
        is_splits=is_splits,
        kid_subsets=kid_subsets,
        kid_subset_size=kid_subset_size,
    )
    note = is_count_note(proto, load_protocol(protocol, dataset), n_fake, is_n_fake)
    if note:
        say(note)
    g = model.generator
    kind = default_backbone(dataset) if backbone in (None, "auto") else backbone
    net = load_backbone(kind, (g.img_channels, g.img_size, g.img_size), classifier_path, inception_weights, log)
    if kind == "fmnist_classifier" and net.description["test_accuracy"] < MIN_CLASSIFIER_ACCURACY:
        say(
            f"warning: the FMNIST classifier {net.description['path']} has test accuracy "
            f"{net.description['test_accuracy']:.3f} < {MIN_CLASSIFIER_ACCURACY}: a smoke-test classifier"
        )
    stats = read_stats(ref_stats, net.num_features) if ref_stats is not None else None  # bad file: fail now
    run_device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    net.to(run_device)
    # what will run and for how long, before anything long starts
    reals = {}
    if stats is None:
        reals[proto.split] = (proto.n_real, _cached(net, data, proto.split, proto.n_real, cache_dir))
        other = {"test": "train", "train": "test"}.get(proto.split)
        if sanity and other is not None:
            try:
                n_other = min(proto.n_real, split_size(data, other))
                reals[other] = (n_other, _cached(net, data, other, n_other, cache_dir))
            except (DataNotFoundError, FileNotFoundError):
                pass  # sanity_row says so later
    say(counts_line(widths, proto, reals, thresholds))
    model.to(run_device)
    per_image = seconds_per_image(model.generator, max(widths), net, batch_size)
    model.cpu()
    to_extract = sum(n for n, hit in reals.values() if not hit)
    line, estimate_s = estimate_line(widths, proto, to_extract, thresholds, per_image, net.name, run_device)
    say(line)
    costs, timings = width_costs(  # CPU latency, before moving G
        model.generator, widths, latency_batches, latency_repeats, latency_warmup, latency_threads
    )
    for b, timing in timings.items():
        if timing.warning():
            say(f"latency at batch {b}: {timing.warning('close other jobs or raise --latency-repeats')}")
    model.to(run_device)

    if stats is not None:
        real, stats_file = Reference(stats=stats, source=str(ref_stats)), str(ref_stats)
    else:
        feats, stats_path = reference_features(net, data, proto.split, proto.n_real, cache_dir, batch_size, log)
        real, stats_file = Reference(features=feats, source="computed"), str(stats_path)

    generator, sampling = prepare_generator(model, say)  # once, before any width is sampled
    calibrate_model(model, widths, generator=generator)  # universal models: each width's BN statistics
    sampling = calibrated_record(model, sampling)
    p, label = net.key_prefix, net.label_prefix
    rows, fake_feats = [], []
    per_width = max(proto.n_fake, proto.is_n_fake)
    with tqdm(
        total=len(widths) * per_width, unit="img", disable=log is None, dynamic_ncols=True, mininterval=1.0
    ) as bar:
        for i, w in enumerate(widths):
            bar.set_description(f"width {w} ({i + 1}/{len(widths)})")
            row, features = evaluate_width(generator, w, net, real, proto, seed, batch_size, bar.update)
            row = {"width": w, **costs[w], **{k: v for k, v in row.items() if k != "width"}}
            rows.append(row)
            fake_feats.append(features)  # float32 (exact): mIC needs every width's; the rest is freed
            kid = "-" if row[f"{p}kid"] is None else f"{row[f'{p}kid']:.5f}"
            with tqdm.external_write_mode():  # the result line above the bar, not through it
                say(
                    f"width {w}: {label}FID {row[f'{p}fid']:.3f}, {label}IS {row[f'{p}is']:.3f}, {label}KID {kid} "
                    f"({row['seconds']:.1f} s)"
                )

    result: dict[str, Any] = {
        "checkpoint": str(checkpoint.resolve()),
        **progress,
        "note": net.note,
        "dataset": {
            "name": dataset,
            "config_source": data_source,
            "root": data.get("root"),
            "image_size": data.get("image_size"),
        },
        "backbone": {"kind": kind, "metrics": [f"{label}{m}" for m in ("FID", "IS", "KID", "mIC")], "key_prefix": p},
        "protocol": proto.to_json(),
        "generator": sampling,  # which weights and which BN statistics every number below used
        "settings": {
            "n_fake": proto.n_fake,
            "n_real": proto.n_real,
            "is_n_fake": proto.is_n_fake,
            "split": proto.split,
            "seed": seed,
            "batch_size": batch_size,
            "device": str(run_device),
            "latency_batches": list(latency_batches),
            "latency_repeats": latency_repeats,
            "latency_warmup": latency_warmup,
            "latency_threads": latency_threads,
            "latency_timing": {b: t.to_json() for b, t in timings.items()},
            "threads": torch.get_num_threads(),
            "is_splits": proto.is_splits,
            "kid_subsets": proto.kid_subsets,
            "kid_subset_size": proto.kid_subset_size,
            "fakes_per_width": per_width,  # one sample serves FID/KID/mIC and IS
            "is_n_fake_from": "--is-n-fake" if is_n_fake is not None else ("--n-fake" if note else "protocol"),
            "reals": {split: n for split, (n, _) in reals.items()},
            "estimate_s": round(estimate_s, 1),
        },
        "extractor": net.description,  # path and sha256 of the exact feature network
        "reference": {"source": real.source, "stats_file": stats_file},
        "widths": rows,
        "consistency": mean_inconsistency(widths, fake_feats).to_json() if len(widths) > 1 else None,
        "sanity": None,
        "truncation": None,
    }
    if thresholds:
        result["truncation"] = truncation_curves(
            generator, widths, thresholds, net, real, proto.n_fake, batch_size, proto.is_splits, seed, say
        )
    if sanity and real.features is not None:
        result["sanity"] = sanity_row(net, data, dataset, proto, real, cache_dir, batch_size, seed, log)
    result["settings"]["seconds"] = round(time.perf_counter() - started, 1)
    if write:
        out = Path(out_dir) if out_dir is not None else run_directory(checkpoint)
        stem = "metrics" if out_dir is not None else metrics_stem(proto, dataset, ref_stats)
        if result["truncation"]:
            out.mkdir(parents=True, exist_ok=True)
            plot = out / ("truncation.png" if stem == "metrics" else f"{stem}-truncation.png")
            result["truncation"]["plot"] = plot_truncation(result["truncation"]["rows"], plot, p, label).name
            say(f"wrote {plot}")
        paths = write_results(result, out, stem)
        result["files"] = [str(x) for x in paths]
        say(f"wrote {paths[0]} and {paths[1]}")
    say("\n" + markdown_table(result))
    return result


def sanity_row(
    backbone: Backbone,
    data: Mapping[str, Any],
    dataset: str,
    protocol: Protocol,
    real: Reference,
    cache_dir: str | os.PathLike | None,
    batch_size: int,
    seed: int,
    log: Log | None,
) -> dict[str, Any] | None:
    """Real images of another split scored against the real reference, like a generator (FID of
    real vs real); None when the dataset has no second split."""
    other = {"test": "train", "train": "test"}.get(protocol.split)
    if other is None:
        return None
    try:
        n = min(protocol.n_real, split_size(data, other))
    except (DataNotFoundError, FileNotFoundError) as e:
        if log:
            log(f"no sanity row: {e}")
        return None
    feats, _ = reference_features(backbone, data, other, n, cache_dir, batch_size, log)
    n_is = min(len(feats.logits), protocol.is_n_fake)
    proto = replace(protocol, is_splits=min(protocol.is_splits, n_is))
    return {
        "pair": f"real {other} vs real {protocol.split}",
        **score(real, feats, feats.logits[:n_is], proto, seed, backbone.key_prefix),
    }


# ----------------------------------------------------------------------------- after training (slimgan-train)
def _after_training_backbone(ev: Mapping[str, Any], dataset: str) -> str:
    kind = ev.get("backbone") or "auto"
    return default_backbone(dataset) if kind == "auto" else kind


def check_after_training(ev: Mapping[str, Any], model: SlimGAN, datamodule: Any) -> None:
    """Before training: the evaluation that ``evaluate.after_training`` runs at the end can run
    (dataset supported, protocol known, backbone file present); one-line ValueError otherwise."""
    try:
        dataset = dataset_kind(datamodule_config(datamodule))
        load_protocol(ev.get("protocol"), dataset)
        g = model.generator
        load_backbone(
            _after_training_backbone(ev, dataset),
            (g.img_channels, g.img_size, g.img_size),
            ev.get("classifier"),
            ev.get("inception_weights"),
            log=None,
        )
    except (FileNotFoundError, RuntimeError, ValueError) as e:
        raise ValueError(
            f"evaluate.after_training=true cannot evaluate this run: {e} (or set evaluate.after_training=false)"
        ) from None


def evaluate_after_training(ev: Mapping[str, Any], checkpoint: str | os.PathLike, trainer: Any) -> dict[str, Any]:
    """slimgan-eval on the run's last checkpoint with the ``evaluate`` config; returns the summary
    entries (metrics file, per-width FID under ``fid`` or ``fmnist_fid``) and logs them as
    ``eval/<key>_w<width>`` to the trainer's loggers."""
    result = evaluate_checkpoint(
        checkpoint,
        protocol=ev.get("protocol"),
        n_fake=ev.get("n_fake"),
        n_real=ev.get("n_real"),
        split=ev.get("split"),
        backbone=ev.get("backbone") or "auto",
        classifier_path=ev.get("classifier"),
        inception_weights=ev.get("inception_weights"),
        latency_repeats=ev.get("latency_repeats", 20),
    )
    key = f"{result['backbone']['key_prefix']}fid"
    fids = {width_tag(r["width"]): r[key] for r in result["widths"]}
    for logger in trainer.loggers:  # e.g. wandb's summary gets the final per-width FID
        logger.log_metrics({f"eval/{key}_{tag}": fid for tag, fid in fids.items()}, step=trainer.global_step)
    return {"metrics": result["files"][0], key: fids}


# ----------------------------------------------------------------------------- output
def _si(n: float) -> str:
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{suffix}"
    return f"{n:.0f}"


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def markdown_table(result: dict[str, Any]) -> str:
    backbone = result.get("backbone") or {"key_prefix": "fmnist_"}  # older files: FMNIST only
    p = backbone["key_prefix"]
    label = "FMNIST-" if p == "fmnist_" else ""
    batches = result["settings"]["latency_batches"]
    head = [
        "width",
        "params",
        "MACs",
        f"{label}FID",
        f"{label}IS",
        f"{label}KID",
        *[f"latency b{b} (ms)" for b in batches],
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def metrics(r: dict[str, Any]) -> list[str]:
        kid = "-" if r.get(f"{p}kid") is None else f"{r[f'{p}kid']:.4f} ± {r[f'{p}kid_std']:.4f}"
        return [f"{r[f'{p}fid']:.2f}", f"{r[f'{p}is']:.2f} ± {r[f'{p}is_std']:.2f}", kid]

    for r in result["widths"]:
        spread = r.get("latency_spread") or {}  # older files: no spread
        latency = [
            f"{r['latency_ms'][str(b)]:.2f}" + (f" ± {spread[str(b)]:.0%}" if str(b) in spread else "") for b in batches
        ]
        cells = [f"{r['width']}", _si(r["params"]), _si(r["macs"]), *metrics(r), *latency]
        lines.append("| " + " | ".join(cells) + " |")
    if result["sanity"]:
        s = result["sanity"]
        lines.append("| " + " | ".join([f"{s['pair']} (sanity)", "-", "-", *metrics(s), *["-"] * len(batches)]) + " |")
    s = result["settings"]
    generator = result.get("generator") or {"weights": "live", "bn_statistics": "running"}  # older files
    extractor = result["extractor"]
    if "test_accuracy" in extractor:
        network = f"Classifier test accuracy {extractor['test_accuracy']:.4f} (sha256 {extractor['sha256'][:12]})."
    else:
        network = (
            f"Inception-v3 weights {Path(extractor['path']).name} (sha256 {extractor['sha256'][:12]}"
            f"{'' if extractor.get('official_weights') else ', NOT the official file'})."
        )
    protocol = result.get("protocol") or {"name": "fmnist"}
    reference = result.get("reference") or {"source": "computed"}
    against = (
        f"{s['n_real']} real {s['split']} images"
        if reference["source"] == "computed"
        else f"the statistics file {reference['source']}"
    )
    text = [
        f"SlimGAN evaluation of `{result['checkpoint']}` (iteration {result['iteration']})",
        "",
        *lines,
        "",
        f"Protocol `{protocol['name']}`. Generator: {generator['weights']} weights, BN {generator['bn_statistics']} "
        f"statistics. {s['n_fake']} fakes per width (seed {s['seed']}, same z at every width) vs {against}; "
        f"IS on {s.get('is_n_fake', s['n_fake'])} fakes in {s['is_splits']} splits; KID {s['kid_subsets']} "
        f"subsets of {s['kid_subset_size']}; {_latency_text(s)}. {network}",
        "",
    ]
    if result["consistency"]:
        c = result["consistency"]
        adjacent = ", ".join(f"{k}: {v:.3f}" for k, v in c["adjacent"].items())
        text += [f"{label}mIC (mean over all width pairs): {c['mIC']:.3f}; adjacent pairs: {adjacent}", ""]
    if result.get("truncation"):
        text += truncation_table(result["truncation"], p, label)
    text += [result["note"], ""]
    return "\n".join(text)


def _latency_text(settings: Mapping[str, Any]) -> str:
    timing = settings.get("latency_timing")
    if not timing:  # older files
        return f"latency: median of {settings['latency_repeats']} CPU runs (torch threads: {settings['threads']})"
    first = next(iter(timing.values()))
    clock = "CPU time" if first["clock"] == "cpu" else "wall-clock time"
    rounds = "/".join(str(t["rounds"]) for t in timing.values())
    unstable = [b for b, t in timing.items() if not t["stable"]]
    text = (
        f"latency: {clock} of single forwards on the CPU with {first['threads']} torch thread(s), median ± IQR/median "
        f"of {settings['latency_repeats']} x {rounds} rounds per width"
    )
    return text + (f" (UNSTABLE at batch {', '.join(unstable)})" if unstable else "")


def truncation_table(truncation: dict[str, Any], prefix: str = "fmnist_", label: str = "FMNIST-") -> list[str]:
    lines = [
        f"Truncation: {truncation['method']}.",
        "",
        f"| width | threshold | {label}FID | {label}IS |",
        "|---|---|---|---|",
    ]
    for r in truncation["rows"]:
        lines.append(
            f"| {r['width']} | {r['truncation']:g} | {r[f'{prefix}fid']:.2f} | "
            f"{r[f'{prefix}is']:.2f} ± {r[f'{prefix}is_std']:.2f} |"
        )
    return [*lines, ""]


def write_results(result: dict[str, Any], out_dir: Path, stem: str = "metrics") -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    result["files"] = [str(json_path), str(md_path)]
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    md_path.write_text(markdown_table(result))
    return json_path, md_path
