"""The data path on an accelerator (issue 32): pinned batches for CUDA trainers (Lightning copies them
with non_blocking=True), workers per dataset (data.num_workers), and evaluation's per-width memory."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from slimgan_pl.data.fashion_mnist import FashionMNISTDataModule
from slimgan_pl.metrics.consistency import mean_inconsistency
from slimgan_pl.metrics.evaluation import compact_features


def _fake_trainer(device: str) -> SimpleNamespace:
    return SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device(device)), world_size=1, global_rank=0)


@pytest.mark.parametrize("device, pinned", [("cpu", False), ("cuda:0", True)])
def test_training_batches_are_pinned_only_for_cuda_trainers(fmnist_root, device, pinned):
    data = FashionMNISTDataModule(root=fmnist_root, batch_size=4, n_dis=2, limit=64, num_workers=1)
    data.setup()
    data.trainer = _fake_trainer(device)
    loader = data.train_dataloader()
    assert loader.pin_memory is pinned
    assert loader.num_workers == 1  # data.num_workers reaches the loader


def test_data_num_workers_is_configurable_per_dataset(make_cfg):
    for dataset, workers in (("fashion_mnist", 0), ("celeba", 4), ("image_folder", 2)):
        assert make_cfg(f"data={dataset}").data.num_workers == workers
    assert make_cfg("data.num_workers=3").data.num_workers == 3


def test_evaluation_keeps_float32_features_for_mic_with_identical_numbers():
    """Backbones compute float32 features that extract() widens to float64: the float32 copy kept for
    mIC is exact (half the memory), and mIC is bit for bit the same; anything else stays float64."""
    torch.manual_seed(0)
    widths = [0.25, 0.5, 0.75, 1.0]
    features = [torch.randn(200, 64).double() for _ in widths]  # float32 values, as from a backbone
    kept = [compact_features(f) for f in features]
    assert all(k.dtype == torch.float32 and k.element_size() * 2 == f.element_size() for k, f in zip(kept, features))
    assert mean_inconsistency(widths, kept).to_json() == mean_inconsistency(widths, features).to_json()
    genuinely_double = torch.randn(10, 4, dtype=torch.float64)
    assert compact_features(genuinely_double) is genuinely_double
