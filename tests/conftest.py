from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from slimgan_pl.config import config_dir, register_resolvers
from slimgan_pl.data.fashion_mnist import DEBIAN_ROOT

register_resolvers()
torch.set_num_threads(2)

TINY = ["model.generator.ngf=16", "model.discriminator.ndf=16", "evaluate.after_training=false"]


@pytest.fixture
def make_cfg(tmp_path: Path):
    """Compose the real Hydra config with test overrides; outputs go to a temporary folder."""

    def _make(*overrides: str, output_dir: Path | None = None):
        out = output_dir or tmp_path / "run"
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            return compose(
                "config",
                overrides=[
                    f"paths.output_dir={out}",
                    "trainer.accelerator=cpu",
                    "trainer.enable_model_summary=false",
                    *TINY,
                    *overrides,
                ],
            )

    return _make


@pytest.fixture(scope="session")
def fmnist_root() -> str:
    if not (Path(DEBIAN_ROOT) / "train-images-idx3-ubyte.gz").is_file():
        pytest.fail(f"Fashion-MNIST missing: apt-get install dataset-fashion-mnist ({DEBIAN_ROOT})")
    return DEBIAN_ROOT


@pytest.fixture
def one_thread():
    """One torch thread for this test. Tiny tensors: one thread is as fast and immune to other jobs on the
    cores. Forked DDP ranks need it: they hang in OpenMP (libgomp is not fork-safe) once this process has
    run torch ops on several threads; with one thread torch never enters an OpenMP region. Modules of tiny
    tests take it for every test with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_classifier(tmp_path_factory, fmnist_root: str) -> Path:
    """Two epochs on 2000 images (~65% accuracy, a few seconds): not the real classifier, but its
    features separate image sets enough for FMNIST-FIDs to be meaningful numbers."""
    from slimgan_pl.metrics import fmnist_classifier as fc

    model, acc, info = fc.train_classifier(root=fmnist_root, epochs=2, limit=2000, test_limit=200, log=None)
    return fc.save_classifier(model, tmp_path_factory.mktemp("clf") / "clf.pt", acc, info)
