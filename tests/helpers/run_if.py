"""Skip markers for tests that need hardware this machine may not have."""

from __future__ import annotations

import pytest
import torch


def run_if(min_gpus: int = 0) -> pytest.MarkDecorator:
    """``@run_if(min_gpus=1)``: skip, saying why, unless at least ``min_gpus`` CUDA devices are visible."""
    found = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return pytest.mark.skipif(found < min_gpus, reason=f"needs {min_gpus} CUDA GPU(s), found {found}")
