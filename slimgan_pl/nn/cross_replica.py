"""Cross-replica (synchronised) batch norm for the per-width BNs of slimmable layers.

:class:`CrossReplicaBatchNorm2d` is an ``nn.BatchNorm2d`` whose training-mode statistics are those of
the global batch over all ranks of the default process group: every rank all-reduces its per-channel
count, sum and sum of squares (one all-reduce per call, differentiable, so gradients flow through
the global statistics to every rank's input). It works with any backend that supports all-reduce
(gloo on CPU, NCCL on GPU: the same code). Outside ``torch.distributed`` (or with one rank), inside
:func:`local_batch_statistics` and in eval mode it is exactly ``nn.BatchNorm2d``.

:func:`convert_cross_replica_batchnorm` swaps every ``nn.BatchNorm2d`` of a model for one (same
parameters, same buffers, same state-dict keys), like torch's ``SyncBatchNorm.convert_sync_batchnorm``:
the per-width BNs inside :class:`~slimgan_pl.nn.SwitchableBatchNorm2d` and the conditional BNs are
plain ``nn.BatchNorm2d``, so converting after construction covers every architecture.

Why not torch's ``SyncBatchNorm`` (Lightning's ``sync_batchnorm=True``): it refuses CPU tensors in
training mode ("SyncBatchNorm expected input tensor to be on GPU"), so neither gloo tests nor CPU
DDP can use it, and it is not an ``nn.BatchNorm2d`` (code that checks for one stops recognising it).

Every rank must run the same sequence of training-mode BN calls (each is a collective): true for
SlimGAN's training step, where all ranks run the same widths in the same order. Sampling in eval mode
(grids, FID) communicates nothing, so rank 0 alone may do it. Code that runs train-mode BN on one
rank only (standing statistics, evaluation after training) wraps itself in :func:`local_batch_statistics`:
a collective entered by one rank waits for the others forever, or fails once they have left.

Precision: the statistics are computed in float32 (float64 for the all-reduced sums) whatever the
input dtype (under fp16 autocast ``(x - mean)^2`` overflows for |x - mean| > 256); the output has
the input's dtype. No host synchronisation per call: the global count stays a tensor.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.distributed as dist
from torch import nn

_local = threading.local()


@contextmanager
def local_batch_statistics() -> Iterator[None]:
    """Inside, every :class:`CrossReplicaBatchNorm2d` (of this thread) normalises with this
    process's batch alone, as ``nn.BatchNorm2d``: for code that one rank runs without the others
    (evaluation, standing statistics, anything under ``if trainer.is_global_zero``). Nestable."""
    depth = getattr(_local, "depth", 0)
    _local.depth = depth + 1
    try:
        yield
    finally:
        _local.depth = depth


def _world_size() -> int:
    """Ranks that share batch statistics now: 1 outside an initialised group or inside
    :func:`local_batch_statistics`."""
    if getattr(_local, "depth", 0) > 0 or not (dist.is_available() and dist.is_initialized()):
        return 1
    return dist.get_world_size()


class _AllReduceSum(torch.autograd.Function):
    """Differentiable sum over ranks: every rank gets the sum; the gradient of rank r's input is the
    sum of all ranks' output gradients (each rank's loss depends on every rank's input).
    (``torch.distributed.nn.functional.all_reduce`` does the same but is deprecated in torch 2.14.)"""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        tensor = tensor.clone()
        dist.all_reduce(tensor)
        return tensor

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class CrossReplicaBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` with batch statistics over all ranks in training mode.

    Statistics: each rank computes its count n_r, mean m_r and centred sum of squares M2_r per
    channel (stable, in float32 whatever the input dtype); the all-reduced quantities are n_r, n_r m_r and
    M2_r + n_r m_r^2 in float64, so the global variance sum/N - mean^2 loses no precision to
    cancellation. Running statistics get the global mean and the unbiased global variance with
    the same momentum rule as ``nn.BatchNorm2d``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bn_training = self.training or (self.running_mean is None and self.running_var is None)
        if not bn_training or _world_size() == 1:
            return super().forward(x)
        self._check_input_dim(x)
        mean, var, count = self._global_statistics(x)
        if self.training and self.track_running_stats:
            self._update_running_stats(mean.detach(), var.detach(), count.detach())
        # normalise in float32 (autocast: the input may be bf16/fp16), return the input's dtype
        scale = torch.rsqrt(var + self.eps).float()
        shift = mean.float()
        out = (x.float() - shift[None, :, None, None]) * scale[None, :, None, None]
        if self.affine:
            out = out * self.weight.float()[None, :, None, None] + self.bias.float()[None, :, None, None]
        return out.to(x.dtype)

    def _global_statistics(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Global per-channel mean and biased variance (float64) and the global count (a tensor; >= 2
        with >= 2 ranks, so unlike nn.BatchNorm2d no check needs its value on the host)."""
        dims = (0, 2, 3)
        n = x.numel() // x.shape[1]
        xf = x.float()  # fp16/bf16 inputs: statistics in float32 (the square overflows fp16 otherwise)
        local_mean = xf.mean(dims)
        local_m2 = (xf - local_mean[None, :, None, None]).square().sum(dims)
        local_mean, local_m2 = local_mean.double(), local_m2.double()
        stats = torch.cat([local_mean.new_full((1,), float(n)), n * local_mean, local_m2 + n * local_mean.square()])
        stats = _AllReduceSum.apply(stats)
        c = x.shape[1]
        count, total, total_sq = stats[0], stats[1 : 1 + c], stats[1 + c :]
        mean = total / count
        var = (total_sq / count - mean.square()).clamp_min(0.0)
        return mean, var, count

    @torch.no_grad()
    def _update_running_stats(self, mean: torch.Tensor, var: torch.Tensor, count: torch.Tensor) -> None:
        assert self.num_batches_tracked is not None
        self.num_batches_tracked.add_(1)
        # momentum None: cumulative average, factor 1 / batches kept on the device (no host sync)
        factor = self.num_batches_tracked.reciprocal() if self.momentum is None else self.momentum
        unbiased = var * (count / (count - 1))
        for buffer, value in ((self.running_mean, mean), (self.running_var, unbiased)):
            weight = factor.to(buffer.dtype) if isinstance(factor, torch.Tensor) else factor
            buffer.lerp_(value.to(buffer.dtype), weight)


def convert_cross_replica_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every ``nn.BatchNorm2d`` in ``module`` (itself included) by a
    :class:`CrossReplicaBatchNorm2d` that shares its parameters and buffers; returns the module
    (the new one if ``module`` itself was a BN). Idempotent; state-dict keys do not change."""
    if isinstance(module, nn.BatchNorm2d) and not isinstance(module, CrossReplicaBatchNorm2d):
        converted = CrossReplicaBatchNorm2d(
            module.num_features,
            eps=module.eps,
            momentum=module.momentum,
            affine=module.affine,
            track_running_stats=module.track_running_stats,
            device="meta",
        )
        # share, not copy: optimizers or other references to the old tensors stay valid
        for name, param in module.named_parameters(recurse=False):
            setattr(converted, name, param)
        for name, buffer in module.named_buffers(recurse=False):
            converted.register_buffer(name, buffer)
        converted.train(module.training)
        return converted
    for name, child in module.named_children():
        module.add_module(name, convert_cross_replica_batchnorm(child))
    return module
