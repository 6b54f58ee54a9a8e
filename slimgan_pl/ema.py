"""BigGAN's EMA of the generator's weights, kept consistent with spectral norm.

torch's spectral-norm parametrization stores its power-iteration vectors ``_u`` and ``_v`` as
buffers and, in eval mode, divides the weight by ``sigma = u^T W v`` without iterating. Averaging
those unit vectors like any other buffer gives vectors of norm < 1 (so sigma is underestimated and
every spectrally normalised layer of the EMA generator is scaled up). Here they are never averaged:
after the weights are, :func:`converge_spectral_norms` runs power iterations on the EMA weights
themselves, warm-started from the EMA's own vectors, until sigma settles.

During training (:func:`ema_update`, after every G step) that loop must not read sigma back to the host:
on a GPU each read is a sync, two per spectrally normalised weight per iteration (BigGAN-32's G has 27
such weights). :func:`track_spectral_norms` runs the same iterations with the stopping test on the
device: at most ``POWER_ITERATIONS_PER_UPDATE`` per update, each weight's vectors frozen once its sigma
has settled, so the result is bit for bit the host loop's whenever that loop stops within that many
iterations (1-3 with a real decay), and otherwise the iteration carries on from there at the next update.
Sampling, evaluation and export converge fully first (:func:`converge_spectral_norms`, in
:func:`slimgan_pl.inference.prepare_sampling_generator`).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import _SpectralNorm

# Power iterations stop when sigma changes by less than this (relative) from one to the next. Worst
# case measured (half of every BigGAN-32 weight replaced by fresh noise): sigma within 0.4% of the
# true spectral norm; with a real EMA decay (>= 0.999) 1-3 iterations per update reach it.
SIGMA_RTOL = 1e-5
MAX_POWER_ITERATIONS = 500
# Device-side iterations per EMA update (training): sigma settles in 1-3 with decay >= 0.999.
POWER_ITERATIONS_PER_UPDATE = 4


def spectral_norms(module: nn.Module) -> Iterator[tuple[_SpectralNorm, torch.Tensor]]:
    """(parametrization, un-normalised weight) for every spectrally normalised weight under ``module``."""
    for m in module.modules():
        if not parametrize.is_parametrized(m):
            continue
        for plist in m.parametrizations.values():
            sn = plist[0]  # the first parametrization reads ``original`` itself
            if isinstance(sn, _SpectralNorm) and plist.original.ndim > 1:
                yield sn, plist.original


def weight_matrix(sn: _SpectralNorm, weight: torch.Tensor) -> torch.Tensor:
    """The weight as the parametrization sees it: ``sn.dim`` first, the other dims flattened."""
    return weight.movedim(sn.dim, 0).flatten(1)


def is_power_iteration_vector(module: nn.Module, buffer_name: str) -> bool:
    """Is ``buffer_name`` (as in ``module.named_buffers()``) a spectral norm's ``_u`` / ``_v``?"""
    owner_name, _, leaf = buffer_name.rpartition(".")
    return leaf in ("_u", "_v") and isinstance(module.get_submodule(owner_name), _SpectralNorm)


@torch.no_grad()
def converge_spectral_norms(
    module: nn.Module, rtol: float = SIGMA_RTOL, max_iterations: int = MAX_POWER_ITERATIONS
) -> int:
    """Power iterations (torch's update: ``u = normalize(W v)``, ``v = normalize(W^T u)``) on every
    spectrally normalised weight under ``module``, from its stored ``u``/``v``, until ``u^T W v``
    changes by at most ``rtol`` (relative) or ``max_iterations``; the vectors are stored back, so an
    eval-mode forward divides by the converged sigma. Returns the most iterations any weight took."""
    most = 0
    for sn, weight in spectral_norms(module):
        mat = weight_matrix(sn, weight)
        u, v = sn._u, sn._v
        sigma = torch.dot(u, torch.mv(mat, v))
        for step in range(1, max_iterations + 1):  # noqa: B007 (the count is read after the loop)
            u = F.normalize(torch.mv(mat, v), dim=0, eps=sn.eps)
            v = F.normalize(torch.mv(mat.H, u), dim=0, eps=sn.eps)
            previous, sigma = sigma, torch.dot(u, torch.mv(mat, v))
            if abs(float(sigma - previous)) <= rtol * abs(float(sigma)):
                break
        sn._u.copy_(u)
        sn._v.copy_(v)
        most = max(most, step)
    return most


@torch.no_grad()
def track_spectral_norms(
    module: nn.Module, rtol: float = SIGMA_RTOL, iterations: int = POWER_ITERATIONS_PER_UPDATE
) -> None:
    """:func:`converge_spectral_norms` without reading anything back to the host: exactly
    ``iterations`` power iterations per weight, each weight's ``u``/``v`` kept from the first
    iteration at which sigma changed by at most ``rtol`` (the host loop's stopping point, tested on
    the device). Float32 whatever the autocast state (the EMA's weights and vectors are float32)."""
    for sn, weight in spectral_norms(module):
        with torch.autocast(device_type=weight.device.type, enabled=False):
            mat = weight_matrix(sn, weight)
            u, v = sn._u, sn._v
            sigma = torch.dot(u, torch.mv(mat, v))
            settled = torch.zeros((), dtype=torch.bool, device=weight.device)
            for _ in range(iterations):
                u_next = F.normalize(torch.mv(mat, v), dim=0, eps=sn.eps)
                v_next = F.normalize(torch.mv(mat.H, u_next), dim=0, eps=sn.eps)
                sigma_next = torch.dot(u_next, torch.mv(mat, v_next))
                u = torch.where(settled, u, u_next)
                v = torch.where(settled, v, v_next)
                settled = settled | ((sigma_next - sigma).abs() <= rtol * sigma_next.abs())
                sigma = torch.where(settled, sigma, sigma_next)
            sn._u.copy_(u)
            sn._v.copy_(v)


@torch.no_grad()
def ema_update(target: nn.Module, source: nn.Module, decay: float) -> None:
    """``t = decay * t + (1 - decay) * s`` for every floating parameter and buffer of ``target``
    (a plain copy when ``decay`` is 0 and for integer buffers such as BN batch counters), except the
    spectral norms' power-iteration vectors, which are then recomputed for the new weights
    (:func:`track_spectral_norms`: no host sync). ``target`` and ``source`` have the same structure.
    Float32 under autocast (the lerp and the power iterations: autocast would run ``mv`` in half
    precision)."""
    device = next(target.parameters()).device
    with torch.autocast(device_type=device.type, enabled=False):
        _lerp_into(target, source, decay)
        track_spectral_norms(target)


def _lerp_into(target: nn.Module, source: nn.Module, decay: float) -> None:
    live = dict(source.named_parameters())
    live.update(source.named_buffers())
    for name, t in (*target.named_parameters(), *target.named_buffers()):
        if is_power_iteration_vector(target, name):
            continue
        s = live[name]
        if decay == 0.0 or not t.is_floating_point():
            t.copy_(s)
        else:
            t.lerp_(s, 1.0 - decay)  # t + (1 - decay) (s - t)
