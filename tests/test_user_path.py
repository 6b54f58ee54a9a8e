"""The install as a user has it: Hydra finds slimgan-pl's launchers after ``make setup`` (editable) and after a
wheel install, sweeps run through the installed ``slimgan-train`` from a folder outside the checkout with
no PYTHONPATH, and an install without the launcher package says so in one line."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from helpers.user_path import REPO, VENV_BIN, check_installed, run_user

LIST_LAUNCHERS = (
    "from hydra.core.plugins import Plugins; from hydra.plugins.launcher import Launcher; "
    "from slimgan_pl.train import ensure_launcher_plugins; ensure_launcher_plugins([]); "
    "print(sorted(c.__module__ + '.' + c.__name__ for c in Plugins.instance().discover(Launcher)))"
)


def test_the_venv_imports_this_checkout_without_pythonpath():
    assert check_installed() == (REPO / "slimgan_pl").resolve()


def test_local_launcher_sweep_runs_from_the_installed_script(tmp_path):
    """README/docs: ``slimgan-train -m ... hydra/launcher=local``. Before the fix: "Unknown plugin class
    : 'hydra_plugins.slimgan_launchers.LocalLauncher'" and a 37-line traceback, from any folder."""
    result = run_user(
        "slimgan-train -m debug=smoke trainer.accelerator=cpu hydra/launcher=local hydra.launcher.cpus_per_task=1 "
        "seed=0,1 hydra.sweep.dir=sweep",
        cwd=tmp_path,
        env={"OMP_NUM_THREADS": "1"},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Unknown plugin class" not in result.stderr
    assert "Submitit 'local' sweep output dir" in result.stdout + result.stderr
    for job in ("0", "1"):
        assert (tmp_path / "sweep" / job / "summary.json").is_file()
    assert list((tmp_path / "sweep" / ".submitit").iterdir())  # submitit ran the jobs, not Hydra's basic launcher


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory) -> Path:
    """A venv with slimgan-pl installed from its wheel (dependencies borrowed from the test venv)."""
    folder = tmp_path_factory.mktemp("wheel")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(folder / "dist"), str(REPO)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if build.returncode != 0:
        pytest.fail(f"building the wheel failed: {build.stderr[-2000:]}")
    wheel = next((folder / "dist").glob("slimgan_pl-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "hydra_plugins/slimgan_launchers/__init__.py" in names and "slimgan_pl/conf/config.yaml" in names
    venv = folder / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = next(venv.glob("lib/python*/site-packages"))
    deps = next(Path(p) for p in sys.path if p.endswith("site-packages") and Path(p).is_relative_to(VENV_BIN.parent))
    (site / "test_deps.pth").write_text(f"{deps}\n")  # a plain path: the editable install's finder stays out
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stderr[-2000:]
    return venv


def test_launchers_are_found_after_a_wheel_install(wheel_venv, tmp_path):
    python = wheel_venv / "bin" / "python"
    where = subprocess.run(
        [str(python), "-c", "import slimgan_pl; print(slimgan_pl.__file__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert str(wheel_venv) in where.stdout, where.stdout + where.stderr  # the wheel, not the checkout
    found = subprocess.run([str(python), "-c", LIST_LAUNCHERS], cwd=tmp_path, capture_output=True, text=True)
    assert "hydra_plugins.slimgan_launchers.SlurmLauncher" in found.stdout, found.stderr[-2000:]
    assert "hydra_plugins.slimgan_launchers.LocalLauncher" in found.stdout


def test_launchers_are_found_after_the_editable_install(tmp_path):
    found = run_user(f'python -c "{LIST_LAUNCHERS}"', cwd=tmp_path)
    assert "hydra_plugins.slimgan_launchers.SlurmLauncher" in found.stdout, found.stderr[-2000:]
    assert "hydra_plugins.slimgan_launchers.LocalLauncher" in found.stdout


def test_an_install_without_the_launchers_gets_one_line(wheel_venv, tmp_path):
    site = next(wheel_venv.glob("lib/python*/site-packages"))
    plugin = site / "hydra_plugins" / "slimgan_launchers"
    moved = plugin.with_name("slimgan_launchers_away")
    plugin.rename(moved)
    try:
        result = subprocess.run(
            [str(wheel_venv / "bin" / "python"), "-m", "slimgan_pl.train", "-m", "debug=smoke", "hydra/launcher=slurm"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        moved.rename(plugin)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "hydra/launcher=slurm" in lines[0] and "make setup" in lines[0], result.stderr


DOCS_LAUNCHER_LINES = [
    line.split("#")[0].strip()
    for line in (REPO / "docs" / "distributed.md").read_text().splitlines()
    if line.startswith("slimgan-train -m") and "hydra/launcher=" in line
]


@pytest.mark.parametrize(
    "command", DOCS_LAUNCHER_LINES, ids=[c.split("hydra/launcher=")[1][:5] for c in DOCS_LAUNCHER_LINES]
)
def test_docs_launcher_commands_run_or_refuse_in_one_line(command, tmp_path):
    """docs/distributed.md's sweep commands, smoke-sized, as a user types them. A local sweep runs; a SLURM
    one either runs (a GPU cluster) or is refused before submission in one line naming what to change (here:
    no partition 'gpu', no GPUs); never Hydra's "Unknown plugin class" traceback."""
    assert DOCS_LAUNCHER_LINES, "docs/distributed.md lost its launcher commands"
    smoke = f"{command} debug=smoke trainer.accelerator=cpu hydra.launcher.cpus_per_task=1 hydra.sweep.dir=sweep"
    result = run_user(smoke, cwd=tmp_path, env={"OMP_NUM_THREADS": "1"}, timeout=400)
    assert "Unknown plugin class" not in result.stderr and "Traceback" not in result.stderr, result.stderr[-3000:]
    if "hydra/launcher=local" in command:
        assert result.returncode == 0, result.stderr[-3000:]
        assert len(list((tmp_path / "sweep").glob("[0-9]*/summary.json"))) >= 2
    else:
        errors = [line for line in result.stderr.splitlines() if line.startswith("slimgan-train:")]
        assert result.returncode == 0 or (result.returncode == 2 and len(errors) == 1), result.stderr[-3000:]
