"""The slimmable generator cut at one width into a dense model: the library of ``slimgan-export``
(its command line is :mod:`slimgan_pl.deploy.export`, which also exports every name of this module).

The cut is generic: :func:`dense_generator` copies the generator, walks its module tree and replaces
every slimmable layer / switchable BN by an ordinary ``nn.Linear`` / ``nn.Conv2d`` /
``nn.ConvTranspose2d`` / ``nn.BatchNorm2d`` holding contiguous copies of that width's weight slices
and BN statistics (conditional BNs: ``nn.BatchNorm2d`` + an ``nn.Embedding`` with that width's class
gains and biases; see :data:`DENSE_CONVERTERS`), then pins the width in a :class:`DenseGenerator`. The
architecture's own forward code is reused, so new architectures export without changes as long as
their width-dependent layers have a converter; a width-dependent module without one raises
:class:`ExportError` instead of exporting wrong weights, and every export is checked numerically
against the slimmable model.

Files (``--formats``): ``<stem>.pt`` (``{"meta", "state_dict"}``, loadable with ``weights_only=True``
and :func:`load_dense`) with ``<stem>.json`` (the metadata), ``<stem>.torchscript.pt``
(``torch.jit.trace``) and ``<stem>.onnx`` (``torch.onnx.export``; needs ``pip install
slimgan-pl[deploy]``). Inputs: ``z`` (batch, nz) and, for class-conditional generators, ``y``
(batch,) int64 class ids; the batch size is free; output: ``images`` in [-1, 1].
"""

from __future__ import annotations

import copy
import importlib.util
import inspect
import json
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from slimgan_pl.choices import EXPORT_FORMATS
from slimgan_pl.deploy.common import prepare_sampling_generator
from slimgan_pl.models import GENERATORS, SlimmableGenerator
from slimgan_pl.models.baseline import NativeGenerator, build_model_generator, check_baseline
from slimgan_pl.module import SlimGAN
from slimgan_pl.nn import (
    ConditionalBatchNorm2d,
    SliceableConditionalBatchNorm2d,
    SlimmableConv2d,
    SlimmableConvTranspose2d,
    SlimmableLinear,
    SlimmableProjectedBatchNorm2d,
    SlimmableSelfAttention,
    SwitchableBatchNorm2d,
    SwitchableConditionalBatchNorm2d,
    slim_channels,
)
from slimgan_pl.nn.attention import non_local
from slimgan_pl.nn.conditional import modulate
from slimgan_pl.nn.universal import UniversalBatchNorm2d, width_key
from slimgan_pl.sampling import eval_mode
from slimgan_pl.universal import calibrate_model, calibrated_record, is_universal, make_universal

FORMAT = "slimgan-dense-v1"
FORMATS = EXPORT_FORMATS
ONNX_MISSING = (
    "ONNX export needs the onnx and onnxscript packages: pip install 'slimgan-pl[deploy]' "
    "(or pass --formats state_dict torchscript)"
)
VERIFY_ATOL = 1e-4  # export-time self-check; float32 reorderings stay far below this, wrong weights do not


class ExportError(Exception):
    """The generator cannot be cut to a dense model (unknown width-dependent module, failed check, ...)."""


# ----------------------------------------------------------------------------- dense layers
class _IgnoresWidth:
    """The architecture's forward passes ``width`` to every layer; dense layers are already cut to
    one width, so they accept the argument and ignore it."""

    def forward(self, x: torch.Tensor, width: float | None = None) -> torch.Tensor:
        return super().forward(x)  # type: ignore[misc]


class DenseLinear(_IgnoresWidth, nn.Linear):
    """``nn.Linear`` holding one width's weight slice."""


class DenseConv2d(_IgnoresWidth, nn.Conv2d):
    """``nn.Conv2d`` holding one width's weight slice."""


class DenseConvTranspose2d(_IgnoresWidth, nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` holding one width's weight slice."""


class DenseBatchNorm2d(_IgnoresWidth, nn.BatchNorm2d):
    """``nn.BatchNorm2d`` with one width's affine parameters and running statistics."""


class DenseConditionalBatchNorm2d(ConditionalBatchNorm2d):
    """Conditional BN at one width: an ``nn.BatchNorm2d`` with that width's statistics (and affine)
    and an ``nn.Embedding`` (K, 2 C_w) holding that width's class gains and biases."""

    def forward(self, x: torch.Tensor, width: float | None = None, y: torch.Tensor | None = None) -> torch.Tensor:
        return super().forward(x, y)


class DenseSelfAttention(nn.Module):
    """Self-attention at one width: four dense 1x1 convs (theta, phi, g, o) and the shared ``gamma``;
    the same arithmetic as :class:`SlimmableSelfAttention` (:func:`slimgan_pl.nn.attention.non_local`)."""

    def __init__(self, theta: nn.Module, phi: nn.Module, g: nn.Module, o: nn.Module, gamma: torch.Tensor) -> None:
        super().__init__()
        self.theta, self.phi, self.g, self.o = theta, phi, g, o
        self.gamma = nn.Parameter(gamma.detach().clone())

    def forward(self, x: torch.Tensor, width: float | None = None) -> torch.Tensor:
        return non_local(x, self.theta(x), self.phi(x), self.g(x), self.o, self.gamma)


class DenseProjectedBatchNorm2d(nn.Module):
    """BigGAN conditional BN at one width: ``nn.BatchNorm2d`` (that width's statistics, no affine) and
    the dense gain/bias projections cut to the width's channels: ``bn(x) * (1 + gain(c)) + bias(c)``."""

    def __init__(self, bn: nn.Module, gain: nn.Module, bias: nn.Module) -> None:
        super().__init__()
        self.bn, self.gain, self.bias = bn, gain, bias

    def forward(self, x: torch.Tensor, width: float | None = None, c: torch.Tensor | None = None) -> torch.Tensor:
        return modulate(self.bn(x), self.gain(c), self.bias(c))


@torch.no_grad()
def _fill(layer: nn.Module, weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Module:
    layer.weight.copy_(weight)  # copy_ into the new contiguous parameter: no view of the big weight
    if bias is not None:
        layer.bias.copy_(bias)
    return layer


def _dense_linear(m: SlimmableLinear, width: float) -> nn.Module:
    in_w, out_w = m.active(width)
    layer = DenseLinear(in_w, out_w, bias=m.bias is not None, device=m.weight.device, dtype=m.weight.dtype)
    return _fill(layer, m.weight[:out_w, :in_w], None if m.bias is None else m.bias[:out_w])


def _dense_conv(m: SlimmableConv2d, width: float) -> nn.Module:
    in_w, out_w = m.active(width)
    # stride and padding are all SlimmableConv2d.forward passes to F.conv2d
    layer = DenseConv2d(
        in_w,
        out_w,
        m.kernel_size,
        stride=m.stride,
        padding=m.padding,
        bias=m.bias is not None,
        device=m.weight.device,
        dtype=m.weight.dtype,
    )
    return _fill(layer, m.weight[:out_w, :in_w], None if m.bias is None else m.bias[:out_w])


def _dense_conv_transpose(m: SlimmableConvTranspose2d, width: float) -> nn.Module:
    in_w, out_w = m.active(width)
    layer = DenseConvTranspose2d(
        in_w,
        out_w,
        m.kernel_size,
        stride=m.stride,
        padding=m.padding,
        bias=m.bias is not None,
        device=m.weight.device,
        dtype=m.weight.dtype,
    )
    return _fill(layer, m.weight[:in_w, :out_w], None if m.bias is None else m.bias[:out_w])


def _dense_batchnorm(m: SwitchableBatchNorm2d, width: float) -> nn.Module:
    bn = m.for_width(width)
    layer = DenseBatchNorm2d(
        bn.num_features,
        eps=bn.eps,
        momentum=bn.momentum,
        affine=bn.affine,
        track_running_stats=bn.track_running_stats,
        device=bn.running_mean.device if bn.running_mean is not None else None,
    )
    layer.load_state_dict(bn.state_dict())  # affine + running stats, copied
    return layer


def _dense_conditional(bn: nn.BatchNorm2d, class_affine: torch.Tensor, num_classes: int) -> nn.Module:
    layer = DenseConditionalBatchNorm2d(
        bn.num_features, num_classes, affine=bn.affine, momentum=bn.momentum, eps=bn.eps
    ).to(class_affine.device)
    layer.bn.load_state_dict(bn.state_dict())
    with torch.no_grad():
        layer.embed.weight.copy_(class_affine)
    return layer


def _dense_scbn(m: SliceableConditionalBatchNorm2d, width: float) -> nn.Module:
    # the shared embedding is [gamma (C_max) | beta (C_max)]; width w reads the first C_w of each half
    c, c_max = slim_channels(m.num_features, width), m.num_features
    e = m.embed.weight
    bn = _dense_universal_bn(m.norm, width) if isinstance(m.norm, UniversalBatchNorm2d) else m.norm.for_width(width)
    return _dense_conditional(bn, torch.cat([e[:, :c], e[:, c_max : c_max + c]], dim=1), m.num_classes)


def _dense_switchable_cbn(m: SwitchableConditionalBatchNorm2d, width: float) -> nn.Module:
    cbn = m.for_width(width)
    return _dense_conditional(cbn.bn, cbn.embed.weight, cbn.num_classes)


def _dense_attention(m: SlimmableSelfAttention, width: float) -> nn.Module:
    return DenseSelfAttention(*(_dense_conv(conv, width) for conv in (m.theta, m.phi, m.g, m.o)), m.gamma)


def _dense_projected_bn(m: SlimmableProjectedBatchNorm2d, width: float) -> nn.Module:
    norm = _dense_universal_bn if isinstance(m.norm, UniversalBatchNorm2d) else _dense_batchnorm  # universal models
    return DenseProjectedBatchNorm2d(norm(m.norm, width), _dense_linear(m.gain, width), _dense_linear(m.bias, width))


def _dense_universal_bn(m: UniversalBatchNorm2d, width: float) -> nn.Module:
    # the width's calibrated statistics baked in (none cached: placeholders that a loaded state dict
    # replaces; exporting an uncalibrated width fails in verify, where the slimmable model refuses it)
    c = slim_channels(m.num_features, width)
    device = m.weight.device if m.weight is not None else None
    layer = DenseBatchNorm2d(c, eps=m.eps, affine=m.affine, device=device)
    with torch.no_grad():
        if m.affine:
            layer.weight.copy_(m.weight[:c])
            layer.bias.copy_(m.bias[:c])
        if width_key(width) in m.statistics:
            mean, var = m.statistics[width_key(width)]
            layer.running_mean.copy_(mean)
            layer.running_var.copy_(var)
    return layer


def _dense_native(m: NativeGenerator, width: float) -> nn.Module:
    # the native baseline keeps its forward (answers to its width); its network is cut at full size
    net, inner_width = m.network_at(width)
    m.net = _cut(net, inner_width, "net")
    return m


# Exact types: a subclass may change forward and must get its own converter (see _width_dependent).
DENSE_CONVERTERS: dict[type[nn.Module], Callable[[Any, float], nn.Module]] = {
    SlimmableLinear: _dense_linear,
    SlimmableConv2d: _dense_conv,
    SlimmableConvTranspose2d: _dense_conv_transpose,
    SwitchableBatchNorm2d: _dense_batchnorm,
    SliceableConditionalBatchNorm2d: _dense_scbn,
    SwitchableConditionalBatchNorm2d: _dense_switchable_cbn,
    SlimmableSelfAttention: _dense_attention,
    SlimmableProjectedBatchNorm2d: _dense_projected_bn,
    NativeGenerator: _dense_native,
    UniversalBatchNorm2d: _dense_universal_bn,
}


def _takes_width(module: nn.Module) -> bool:
    try:
        return "width" in inspect.signature(module.forward).parameters
    except (TypeError, ValueError):
        return False


def _width_dependent(module: nn.Module) -> bool:
    """Does this module (which has no converter) look like it computes something width-specific?
    Subclasses of convertible types, modules with ``active``/``for_width``, and modules whose
    forward takes ``width`` and that own parameters/buffers or are building blocks of
    ``slimgan_pl.nn`` (architectures' containers, which only pass the width on, live elsewhere)."""
    if isinstance(module, tuple(DENSE_CONVERTERS)) or hasattr(module, "active") or hasattr(module, "for_width"):
        return True
    if not _takes_width(module):
        return False
    owns_tensors = any(True for _ in module.parameters(recurse=False)) or any(
        True for _ in module.buffers(recurse=False)
    )
    return owns_tensors or type(module).__module__.startswith("slimgan_pl.nn")


def _converter_type(module: nn.Module) -> type[nn.Module]:
    """The module's class; for a parametrized module (spectral norm) the class parametrize wrapped,
    whose forward it keeps (the dense copy holds the parametrized, i.e. normalised, weight)."""
    cls = type(module)
    return cls.__bases__[0] if parametrize.is_parametrized(module) else cls


def _cut(module: nn.Module, width: float, path: str) -> nn.Module:
    convert = DENSE_CONVERTERS.get(_converter_type(module))
    if convert is not None:
        return convert(module, width)
    if _width_dependent(module):
        raise ExportError(
            f"cannot export: module '{path or '<root>'}' ({type(module).__name__}) depends on the "
            "width but has no dense converter; add one to slimgan_pl.deploy.export.DENSE_CONVERTERS"
        )
    for name, child in list(module.named_children()):
        module.add_module(name, _cut(child, width, f"{path}.{name}" if path else name))
    return module


# ----------------------------------------------------------------------------- dense generator
class DenseGenerator(nn.Module):
    """A generator cut to one width: ``forward(z, y=None)`` -> images, no slicing at run time.

    ``width`` may still be passed (as to the slimmable generator) but must equal the pinned width.
    ``meta``: arch, width, nz, img_channels, img_size, generator kwargs, trained widths, source.
    """

    def __init__(self, body: nn.Module, width: float, meta: dict[str, Any]) -> None:
        super().__init__()
        self.body, self.width, self.meta = body, float(width), dict(meta)
        self.nz, self.img_channels = int(meta["nz"]), int(meta["img_channels"])
        self.num_classes = int(meta.get("n_classes", 0))  # as SlimmableGenerator: 0 = unconditional

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None, width: float | None = None) -> torch.Tensor:
        if width is not None and abs(width - self.width) > 1e-6:
            raise ValueError(f"this generator was exported at width {self.width}, got width={width}")
        return self.body(z, self.width, y)


def generator_meta(
    generator: SlimmableGenerator,
    generator_hparams: dict[str, Any],
    width: float,
    weights: str = "live",
    source: str | None = None,
    statistics: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``statistics``: which BN statistics the dense model holds (``bn_statistics`` and, when
    ``standing``, how they were computed; see :func:`slimgan_pl.inference.bn_statistics`)."""
    statistics = {k: v for k, v in (statistics or {"bn_statistics": "running"}).items() if k != "weights"}
    return {
        "format": FORMAT,
        "arch": generator_hparams["arch"],
        "width": float(width),
        "nz": generator.nz,
        "img_channels": generator.img_channels,
        "img_size": generator.img_size,
        "n_classes": int(getattr(generator, "n_classes", 0) or 0),
        "generator": dict(generator_hparams),
        "widths": list(generator.widths),
        "weights": weights,
        **statistics,
        "source_checkpoint": source,
        "torch": str(torch.__version__),
        # native baseline (model.baseline): rebuilt as one by build_dense; null for slimmable generators
        "baseline": {"g_width": generator.width} if isinstance(generator, NativeGenerator) else None,
        # universal model (slim.mode=universal): rebuilt as one by build_dense; null otherwise
        "universal": {"range": list(generator.width_range)} if is_universal(generator) else None,
    }


def example_inputs(dense: DenseGenerator, batch: int = 2, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """(z,) or (z, y) for conditional generators, on the model's device."""
    device = next(dense.parameters()).device
    z = torch.randn(batch, dense.nz, generator=torch.Generator().manual_seed(seed)).to(device)
    k = dense.num_classes
    return (z,) if not k else (z, torch.arange(batch, device=device) % k)


@torch.no_grad()
def verify(generator: nn.Module, dense: DenseGenerator, atol: float = VERIFY_ATOL) -> float:
    """Max abs difference between the slimmable generator at the dense width and the dense model
    (eval mode, random z); :class:`ExportError` above ``atol``."""
    inputs = example_inputs(dense)
    with eval_mode(generator):
        ref = generator(inputs[0], width=dense.width, y=inputs[1] if len(inputs) > 1 else None)
    diff = (dense(*inputs) - ref).abs().max().item()
    if not diff <= atol:
        raise ExportError(
            f"exported width {dense.width} differs from the slimmable model by {diff:.3g} "
            f"(> {atol}); a layer was cut wrongly"
        )
    return diff


def dense_generator(
    generator: SlimmableGenerator, width: float, meta: dict[str, Any] | None = None, check: bool = True
) -> DenseGenerator:
    """Cut ``generator`` at ``width`` (a trained width) into a :class:`DenseGenerator` in eval mode;
    the slimmable generator is not changed. ``check``: compare outputs (see :func:`verify`).
    ``meta``: see :func:`generator_meta`; pass it (with the generator's constructor kwargs) for
    files that :func:`load_dense` can rebuild."""
    generator.check_width(width)
    if meta is None:  # without the constructor kwargs the state dict cannot be rebuilt by load_dense
        # several archs share a class (sndcgan32/48/64): the one whose fixed kwargs the generator has
        arch = next(
            (
                name
                for name, (cls, fixed) in GENERATORS.items()
                if type(generator) is cls and all(getattr(generator, k, v) == v for k, v in fixed.items())
            ),
            type(generator).__name__,
        )
        meta = generator_meta(generator, {"arch": arch}, width)
    # eval: a spectrally normalised weight is read without another power iteration, as the forward does
    body = _cut(copy.deepcopy(generator).eval(), float(width), "")
    dense = DenseGenerator(body, width, meta).eval()
    if check:
        verify(generator, dense)
    return dense


def export_model(model: SlimGAN, width: float, weights: str = "auto", source: str | None = None) -> DenseGenerator:
    """The SlimGAN's generator (EMA or live, see ``--weights``) cut at ``width``, checked, with the
    BN statistics that ``slimgan-eval`` and ``slimgan-sample`` use (standing statistics baked in
    when the run uses them: :func:`slimgan_pl.inference.prepare_sampling_generator`, which changes
    that generator's BN buffers in ``model``); ``meta["bn_statistics"]`` says which."""
    generator, statistics = prepare_sampling_generator(model, weights)
    notes = calibrate_model(model, [width], generator=generator)  # universal models: calibrated statistics
    statistics = {**calibrated_record(model, statistics), **({"notes": notes} if notes else {})}
    meta = generator_meta(generator, dict(model.hparams.generator), width, statistics["weights"], source, statistics)
    return dense_generator(generator, width, meta)


# ----------------------------------------------------------------------------- files
def save_state_dict(dense: DenseGenerator, path: Path) -> list[Path]:
    """``path`` (meta + state dict, weights_only-loadable) and its metadata as ``.json`` beside it."""
    torch.save({"meta": dense.meta, "state_dict": dense.state_dict()}, path)
    meta_path = path.with_suffix(".json")
    meta_path.write_text(json.dumps(dense.meta, indent=2) + "\n")
    return [path, meta_path]


def build_dense(meta: dict[str, Any]) -> DenseGenerator:
    """The dense module structure described by ``meta`` (weights random until a state dict is loaded)."""
    if meta.get("format") != FORMAT:
        raise ExportError(f"metadata format {meta.get('format')!r} is not {FORMAT!r}")
    generator = build_model_generator(meta["generator"], meta["widths"], check_baseline(meta.get("baseline")))
    if meta.get("universal"):
        make_universal(generator, tuple(meta["universal"]["range"]))
    return dense_generator(generator, meta["width"], meta, check=False)


def load_dense(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> DenseGenerator:
    """A :class:`DenseGenerator` from a ``<stem>.pt`` file written by :func:`save_state_dict`, eval mode."""
    path = Path(path)
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        first_line = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise ExportError(f"{path}: not a readable exported generator ({first_line})") from None
    if not isinstance(payload, dict) or "meta" not in payload or "state_dict" not in payload:
        raise ExportError(f"{path}: not an exported generator (expected a dict with 'meta' and 'state_dict')")
    dense = build_dense(payload["meta"])
    dense.load_state_dict(payload["state_dict"], strict=True)
    return dense.to(map_location).eval()


def save_torchscript(dense: DenseGenerator, path: Path) -> Path:
    """Traced (the width is fixed, so the graph has no Python control flow left); metadata in
    the archive's extra file ``meta.json``."""
    with warnings.catch_warnings():
        # TorchScript is deprecated upstream but still what many runtimes load; the input checks of
        # the generators' forward (label shapes) are Python-level and rightly left out of the trace.
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.(trace|save)", category=FutureWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        traced = torch.jit.trace(dense.eval(), example_inputs(dense), check_trace=False)
        torch.jit.save(traced, str(path), _extra_files={"meta.json": json.dumps(dense.meta)})
    return path


def onnx_available() -> bool:
    """The dynamo ONNX exporter needs ``onnx`` and ``onnxscript`` (``pip install slimgan-pl[deploy]``)."""
    return all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxscript"))


def save_onnx(dense: DenseGenerator, path: Path, opset: int | None = None) -> Path:
    """ONNX graph with input ``z`` (and ``y``), a free batch dimension, output ``images``; the
    metadata goes into the model's ``metadata_props`` (key ``slimgan``)."""
    if not onnx_available():
        raise ExportError(ONNX_MISSING)
    inputs = example_inputs(dense)
    batch = torch.export.Dim("batch", min=1)
    names = ["z", "y"][: len(inputs)]
    with warnings.catch_warnings():  # z and y share the batch dimension: torch notes it drops one name
        warnings.filterwarnings("ignore", message="# The axis name")
        program = torch.onnx.export(
            dense.eval(),
            inputs,
            input_names=names,
            output_names=["images"],
            dynamic_shapes={n: {0: batch} for n in names},
            opset_version=opset,
            dynamo=True,
            verbose=False,
        )
    program.model.metadata_props["slimgan"] = json.dumps(dense.meta)
    program.save(str(path), external_data=False)  # small models: weights inside the .onnx file
    return path


def export_files(
    dense: DenseGenerator, out_dir: Path, stem: str, formats: Sequence[str] = FORMATS, opset: int | None = None
) -> dict[str, list[Path]]:
    """Write the requested formats; returns {format: [paths]}."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"--formats must be among {list(FORMATS)}, got {unknown}")
    if "onnx" in formats and not onnx_available():  # fail before writing anything
        raise ExportError(ONNX_MISSING)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, list[Path]] = {}
    if "state_dict" in formats:
        written["state_dict"] = save_state_dict(dense, out_dir / f"{stem}.pt")
    if "torchscript" in formats:
        written["torchscript"] = [save_torchscript(dense, out_dir / f"{stem}.torchscript.pt")]
    if "onnx" in formats:
        written["onnx"] = [save_onnx(dense, out_dir / f"{stem}.onnx", opset)]
    return written


# ----------------------------------------------------------------------------- checks of the files
@torch.no_grad()
def check_files(dense: DenseGenerator, written: dict[str, list[Path]], batch: int = 3) -> dict[str, float | None]:
    """Max abs difference of each written file's output from the dense model's, on a batch size
    other than the one traced (checks the free batch dimension). ONNX: ``None`` without onnxruntime."""
    inputs = example_inputs(dense, batch=batch, seed=1)
    ref = dense(*inputs)
    diffs: dict[str, float | None] = {}
    if "state_dict" in written:
        diffs["state_dict"] = (load_dense(written["state_dict"][0])(*inputs) - ref).abs().max().item()
    if "torchscript" in written:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*torch\.jit\.load", category=FutureWarning)
            scripted = torch.jit.load(str(written["torchscript"][0]), map_location="cpu")
        diffs["torchscript"] = (scripted(*inputs) - ref).abs().max().item()
    if "onnx" in written:
        diffs["onnx"] = onnx_max_diff(written["onnx"][0], inputs, ref)
    bad = {k: v for k, v in diffs.items() if v is not None and not v <= VERIFY_ATOL}
    if bad:
        raise ExportError(f"written files differ from the dense model: {bad} (max abs, > {VERIFY_ATOL})")
    return diffs


def onnx_max_diff(path: Path, inputs: Sequence[torch.Tensor], ref: torch.Tensor) -> float | None:
    if importlib.util.find_spec("onnxruntime") is None:
        return None
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {i.name: t.cpu().numpy() for i, t in zip(session.get_inputs(), inputs)}
    (out,) = session.run(["images"], feeds)
    return float((torch.from_numpy(out) - ref.cpu()).abs().max())
