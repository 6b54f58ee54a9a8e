"""Load the repository's scripts (benchmarks, the study, the model zoo) as modules: they are not a package."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]


def load_script(relative_path: str) -> ModuleType:
    """``relative_path`` (from the repository root) executed as a module named after the file; registered in
    ``sys.modules`` because dataclasses resolve their annotations through it."""
    path = REPO / relative_path
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[path.stem]  # no half-initialised module for the next test to find
        raise
    return module
