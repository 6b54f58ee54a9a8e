"""Multi-process training: a DDP strategy for GAN steps, and per-rank noise seeds.

A SlimGAN training step runs ``n_dis`` D backwards and one G backward; each touches only one
network. ``torch.nn.parallel.DistributedDataParallel`` expects every parameter in every backward:
without ``find_unused_parameters`` it fails ("parameters that were not used in producing the loss"),
with it every backward traverses the autograd graph to find the unused ones and still all-reduces
every bucket, the other network's included. :class:`GANDDPStrategy` keeps Lightning's DDP machinery
(launchers, process group, distributed sampler, rank-zero logic) but does not wrap the model in DDP:
when an optimizer steps, it averages the gradients of exactly that optimizer's parameters over all
ranks, in flat buckets, then steps. One all-reduce of |D| per D step, one of |G| per G step.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any, Literal

import numpy as np
import pytorch_lightning as pl
import torch
import torch.distributed as dist
from pytorch_lightning.overrides.distributed import _sync_module_states
from pytorch_lightning.strategies import DDPStrategy
from torch.distributed.constants import default_pg_timeout
from torch.optim import Optimizer


def rank_seed(seed: int, rank: int, step: int = 0) -> int:
    """A 63-bit seed for rank ``rank`` of a run seeded with ``seed``, starting at optimizer step
    ``step``: independent streams per rank, (seed, rank) pairs never collide the way ``seed + rank``
    does (seed 0 rank 1 = seed 1 rank 0), and a resumed run does not replay its first noise."""
    entropy = [int(seed) % 2**64, int(rank), int(step)]
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0] >> 1)


HALF_TRUE_PRECISIONS = ("bf16-true", "16-true", "transformer-engine")


def check_trainer_config(accelerator: str, precision: str | int, ema: bool, cuda_available: bool | None = None) -> None:
    """One-line refusals of trainer settings that cannot work, before Lightning builds anything.

    * a GPU run on a machine without CUDA (Lightning says only "No supported gpu backend found!"):
      ``trainer=ddp`` is multi-GPU; its CPU twin is ``trainer=ddp_cpu``;
    * ``bf16-true`` / ``16-true`` with an EMA generator: the weights (and so the EMA) would be half
      precision, where a ``1 - decay = 1e-4`` step is below the resolution and the EMA freezes.
      The mixed precisions keep float32 weights (and EMA)."""
    cuda = torch.cuda.is_available() if cuda_available is None else cuda_available
    if str(accelerator) in ("gpu", "cuda") and not cuda:
        raise ValueError(
            f"trainer.accelerator={accelerator} but no CUDA GPU is visible here: for DDP on CPU "
            "processes use trainer=ddp_cpu, for one CPU process trainer=cpu"
        )
    if ema and str(precision) in HALF_TRUE_PRECISIONS:
        raise ValueError(
            f"trainer.precision={precision} keeps the weights in half precision, which freezes the "
            "EMA generator (its updates are below half-precision resolution): use "
            "trainer.precision=bf16-mixed or 16-mixed, or ema=none"
        )


def leave_process_group() -> None:
    """After training, on every rank: wait for the others, then leave the default process group.

    What follows ``trainer.fit`` runs on rank 0 alone (evaluation, summaries). Any collective it
    entered would wait for ranks that have left, or fail ("Connection closed by peer"): torchmetrics
    syncs its states on ``compute`` whenever a group exists, cross-replica BN all-reduces in train
    mode. Without a group every library behaves as in one process. Lightning initialises a new
    group for a later ``fit`` in the same process."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def average_gradients(
    params: list[torch.Tensor], bucket_cap_mb: float = 25.0, group: dist.ProcessGroup | None = None
) -> None:
    """Replace each parameter's ``.grad`` by its mean over the ranks of ``group``.

    Parameters without a gradient are skipped: every rank must have gradients for the same
    parameters (true when all ranks run the same code path, as DDP also requires). Gradients are
    packed into flat buckets of at most ``bucket_cap_mb`` (one per device and dtype) so that a
    model with hundreds of small tensors costs a few collectives, launched together."""
    world = dist.get_world_size(group)
    grads = [p.grad for p in params if p.grad is not None]
    cap = int(bucket_cap_mb * 2**20)
    buckets: dict[tuple[torch.device, torch.dtype], list[list[torch.Tensor]]] = {}
    filled: dict[tuple[torch.device, torch.dtype], int] = {}  # bytes in the last bucket of each chain
    for g in grads:
        if g.is_sparse:
            raise ValueError("average_gradients does not support sparse gradients")
        key, size = (g.device, g.dtype), g.numel() * g.element_size()
        chain = buckets.setdefault(key, [[]])
        if chain[-1] and filled[key] + size > cap:
            chain.append([])
            filled[key] = 0
        chain[-1].append(g)
        filled[key] = filled.get(key, 0) + size
    pending = []
    for chain in buckets.values():
        for bucket in chain:
            flat = torch.cat([g.reshape(-1) for g in bucket])
            pending.append((bucket, flat, dist.all_reduce(flat, group=group, async_op=True)))
    for bucket, flat, work in pending:
        work.wait()
        flat.div_(world)
        for g, reduced in zip(bucket, flat.split([g.numel() for g in bucket])):
            g.copy_(reduced.view_as(g))


class GANDDPStrategy(DDPStrategy):
    """Lightning's DDP strategy without the DDP wrapper: gradients are averaged per optimizer step.

    For manual optimization with several optimizers over disjoint parameter sets (a GAN): each
    ``opt.step()`` first averages that optimizer's gradients over all ranks (:func:`average_gradients`),
    so any number of backward passes per training step works, nothing is traversed to find unused
    parameters and nothing of the other network is communicated. At setup, rank 0's parameters
    and buffers are broadcast (as DDP does at construction). Buffers are not re-broadcast before
    each step (DDP's ``broadcast_buffers``): rank 0's BN running statistics are the same either way
    (DDP only overwrites the other ranks' copies), and spectral-norm vectors evolve identically from
    identical weights. Communication is not overlapped with the backward pass (DDP overlaps per bucket).

    Args: as :class:`~pytorch_lightning.strategies.DDPStrategy` (``process_group_backend``: ``gloo`` for
    CPU, ``nccl`` for GPUs; ``start_method``: ``popen`` re-runs the script per rank, which is what a
    command line needs), plus ``bucket_cap_mb``. DDP's own keyword arguments (``find_unused_parameters``,
    ``static_graph``, comm hooks) do not apply and are refused.
    """

    def __init__(
        self,
        accelerator: pl.accelerators.Accelerator | None = None,
        parallel_devices: list[torch.device] | None = None,
        cluster_environment: Any = None,
        checkpoint_io: Any = None,
        precision_plugin: Any = None,
        process_group_backend: str | None = None,
        timeout: timedelta | None = default_pg_timeout,
        start_method: Literal["popen", "spawn", "fork", "forkserver"] = "popen",
        bucket_cap_mb: float = 25.0,
    ) -> None:
        if not bucket_cap_mb > 0:
            raise ValueError(f"trainer.strategy.bucket_cap_mb must be > 0, got {bucket_cap_mb}")
        super().__init__(
            accelerator=accelerator,
            parallel_devices=parallel_devices,
            cluster_environment=cluster_environment,
            checkpoint_io=checkpoint_io,
            precision_plugin=precision_plugin,
            process_group_backend=process_group_backend,
            timeout=timeout,
            start_method=start_method,
        )
        self.bucket_cap_mb = bucket_cap_mb

    def configure_ddp(self) -> None:
        # Same start for every rank, as DDP's constructor would do; no wrapper, no reducer.
        _sync_module_states(self.model)

    def optimizer_step(
        self,
        optimizer: Optimizer,
        closure: Callable[[], Any],
        model: pl.LightningModule | torch.nn.Module | None = None,
        **kwargs: Any,
    ) -> Any:
        # The closure runs the backward under automatic optimization (a no-op under manual
        # optimization): average after it, before the precision plugin's hooks and the step.
        def closure_then_average() -> Any:
            result = closure()
            if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
                average_gradients([p for group in optimizer.param_groups for p in group["params"]], self.bucket_cap_mb)
            return result

        return super().optimizer_step(optimizer, closure_then_average, model, **kwargs)
