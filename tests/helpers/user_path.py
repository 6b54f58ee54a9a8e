"""The user's path for tests of user-facing behaviour: the installed console scripts of the venv that
``make setup`` made (an editable install of this checkout), run through bash from a working folder
outside the checkout, with no ``PYTHONPATH``: exactly what a user types after ``source .venv/bin/activate``.

A test that passes only because ``PYTHONPATH`` points at the checkout hides install bugs (the editable
finder once hid the Hydra launcher plugins from Hydra's plugin scan), so these helpers remove it and check
that the venv imports this checkout's package by itself (:func:`check_installed`).
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent  # slimgan-train & co. of the interpreter running the tests


def user_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of an activated venv: its bin/ first on PATH, VIRTUAL_ENV set, no PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PATH"] = os.pathsep.join([str(VENV_BIN), env.get("PATH", "/usr/bin:/bin")])
    env["VIRTUAL_ENV"] = str(VENV_BIN.parent)
    env.setdefault("WANDB_MODE", "offline")
    env.update(extra or {})
    return env


@functools.cache
def check_installed() -> Path:
    """Fail (not skip) unless the venv imports ``slimgan_pl`` from this checkout without PYTHONPATH:
    user-path tests must test the code under review, as installed. Returns the package folder."""
    if not (VENV_BIN / "slimgan-train").is_file():
        pytest.fail(f"no slimgan-train in {VENV_BIN}: run the tests with the venv `make setup` made (make test)")
    found = subprocess.run(
        [str(VENV_BIN / "python"), "-c", "import slimgan_pl, pathlib; print(pathlib.Path(slimgan_pl.__file__).parent)"],
        cwd="/",
        env=user_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    package = Path(found.stdout.strip() or "/nonexistent")
    if found.returncode != 0 or package.resolve() != (REPO / "slimgan_pl").resolve():
        pytest.fail(
            f"the venv at {VENV_BIN.parent} imports slimgan_pl from {package} (stderr: {found.stderr.strip()[-300:]}), "
            f"not from this checkout {REPO}: install it with `make setup` (pip install -e .)"
        )
    return package


def run_user(
    command: str,
    cwd: Path,
    timeout: float = 600,
    env: Mapping[str, str] | None = None,
    check: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run ``command`` as a user types it (bash, the venv activated, ``cwd`` outside the checkout)."""
    check_installed()
    cwd = Path(cwd)
    assert not cwd.resolve().is_relative_to(REPO.resolve()), f"user-path commands run outside the checkout: {cwd}"
    result = subprocess.run(
        ["bash", "-c", command], cwd=cwd, env=user_env(env), capture_output=True, text=True, timeout=timeout
    )
    if check and result.returncode != 0:
        output = f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"
        pytest.fail(f"{command!r} exited {result.returncode}\n{output}")
    return result
