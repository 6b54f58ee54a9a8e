"""A training loader whose shuffled order survives a mid-epoch restart.

Lightning 2.x restores a mid-epoch checkpoint's loop counters but, for a plain ``DataLoader``,
starts the epoch's iterator over (with a new ``RandomSampler`` permutation drawn from the global
RNG) and only warns. Here the permutation is a function of ``(seed, epoch)`` (``DistributedSampler``'s
seeded shuffle, one shard per rank) and the loader is *stateful*: Lightning stores its
``state_dict()`` (epoch, batches consumed in it) in every checkpoint and hands it back through
``load_state_dict()`` on restart, so the resumed epoch skips exactly the consumed batches and goes
on with the same sequence. Skipping happens in the sampler, so no skipped batch is loaded.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler


class ResumableSampler(DistributedSampler):
    """Seeded per-epoch shuffle (``seed + epoch``) of this rank's shard that can start ``skip`` samples in.

    A ``DistributedSampler`` subclass, so Lightning keeps it under DDP instead of wrapping it
    (it already shards by ``rank`` / ``num_replicas``) and calls :meth:`set_epoch` every epoch.
    """

    def __init__(self, dataset: Dataset, seed: int, num_replicas: int = 1, rank: int = 0) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=True)
        self.skip = 0  # samples of epoch ``skip_epoch`` to leave out (consumed before a restart)
        self.skip_epoch = 0

    def pending_skip(self) -> int:
        """Samples the next pass leaves out: ``skip`` when it is the epoch they were consumed in, else 0.
        A checkpoint written after an epoch's last batch holds that whole epoch as consumed; Lightning
        then resumes with the next epoch (``set_epoch(epoch + 1)``), which must start from its beginning."""
        return self.skip if self.epoch == self.skip_epoch else 0

    def __iter__(self) -> Iterator[int]:
        skip, self.skip = self.pending_skip(), 0  # only the first pass after a restart skips
        indices = list(super().__iter__())
        return iter(indices[skip:])


class ResumableDataLoader(DataLoader):
    """``DataLoader`` over a :class:`ResumableSampler` (``drop_last``) with Lightning's stateful-loader API."""

    def __init__(self, dataset: Dataset, batch_size: int, sampler: ResumableSampler, **kwargs: Any) -> None:
        super().__init__(dataset, batch_size=batch_size, sampler=sampler, drop_last=True, **kwargs)
        self._consumed = 0  # batches of the current epoch handed out (skipped ones included)

    def __iter__(self) -> Iterator[Any]:
        sampler: ResumableSampler = self.sampler  # type: ignore[assignment]
        self._consumed = sampler.pending_skip() // self.batch_size
        for batch in super().__iter__():
            self._consumed += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        sampler: ResumableSampler = self.sampler  # type: ignore[assignment]
        return {
            "epoch": sampler.epoch,
            "consumed_batches": self._consumed,
            "batch_size": int(self.batch_size),
            "seed": sampler.seed,
            "num_replicas": sampler.num_replicas,
        }

    def load_state_dict(self, state: dict[str, int]) -> None:
        sampler: ResumableSampler = self.sampler  # type: ignore[assignment]
        mismatched = [
            k
            for k, now in (
                ("batch_size", self.batch_size),
                ("seed", sampler.seed),
                ("num_replicas", sampler.num_replicas),
            )
            if state.get(k, now) != now
        ]
        if mismatched:
            # Another batch size / seed / world size: the old sequence does not exist here.
            from pytorch_lightning.utilities import rank_zero_warn

            rank_zero_warn(
                f"resuming with different {', '.join(mismatched)} than the checkpoint: the data "
                "order restarts at the beginning of the epoch instead of continuing the same sequence"
            )
            return
        sampler.set_epoch(int(state["epoch"]))
        sampler.skip_epoch = int(state["epoch"])
        sampler.skip = int(state["consumed_batches"]) * int(self.batch_size)


def resumable_loader(
    dataset: Dataset,
    batch_size: int,
    seed: int,
    num_replicas: int = 1,
    rank: int = 0,
    num_workers: int = 0,
    pin_memory: bool = False,
) -> ResumableDataLoader:
    """The training loader of every data module, in-memory and file-backed (see module docstring).

    The loader gets its own ``torch.Generator`` so that creating an iterator (every epoch, and once
    more on a restart) never draws from the global RNG, which drives the GAN's noise.
    ``pin_memory``: batches in page-locked memory, so Lightning's ``non_blocking=True`` copy to a CUDA
    device is asynchronous (from pageable memory it blocks the host).
    """
    sampler = ResumableSampler(dataset, seed=seed, num_replicas=num_replicas, rank=rank)
    generator = torch.Generator().manual_seed(seed)
    return ResumableDataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        pin_memory=pin_memory,
        generator=generator,
    )
