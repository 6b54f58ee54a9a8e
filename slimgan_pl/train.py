"""Training entry point: ``slimgan-train [overrides]`` (same as ``python -m slimgan_pl.train``).

``slimgan-train --resume <run dir> [overrides]`` continues a run in place (same folder, same saved
overrides, ``resume=auto``); extra overrides such as a larger ``train.g_steps`` win over the saved ones.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slimgan_pl.cli import cli_main, hydra_one_line, one_line_errors
from slimgan_pl.config import NAME_KEYS, check_name, config_dir, register_resolvers
from slimgan_pl.run_lock import RunLock, check_run_folder_free

if TYPE_CHECKING:  # torch, Lightning and Hydra load inside the functions: --help answers without them
    import pytorch_lightning as pl
    from omegaconf import DictConfig

    from slimgan_pl.module import SlimGAN

log = logging.getLogger(__name__)


class ConfigError(ValueError):
    """A config value is invalid; raised before training starts."""

    cli_label = "config error"  # slimgan-train: config error: ...


CORRUPT_LIST = "corrupt_files.txt"  # run-directory list of the images data.on_corrupt=skip left out


def _check_data_fits_model(datamodule: pl.LightningDataModule, model: SlimGAN) -> None:
    """The real images must have the generator's size and channels (a ResNet D would otherwise
    score 48px reals against 32px fakes without complaint)."""
    g = model.generator
    arch = model.hparams.generator["arch"]
    size, channels = getattr(datamodule, "image_size", None), getattr(datamodule, "img_channels", None)
    if size is not None and size != g.img_size:
        raise ValueError(
            f"data.image_size={size} but model.generator.arch={arch} generates {g.img_size}x{g.img_size} "
            f"images: pick a model of that size or set data.image_size={g.img_size}"
        )
    if channels is not None and channels != g.img_channels:
        raise ValueError(f"data.img_channels={channels} but model.generator.img_channels={g.img_channels}")


def _check_inception_weights(cfg: DictConfig, datamodule: pl.LightningDataModule) -> None:
    """ValueError (one short line) when the FID during training (``callbacks.fid``) or after it
    (``evaluate.after_training``) would use Inception-v3 and its weights file is nowhere: both keys named
    at once, with the file and the environment variable (slimgan-train has no --inception-weights)."""
    from slimgan_pl.metrics.backbones import default_backbone
    from slimgan_pl.metrics.inception import ENV_VAR, WEIGHTS_FILENAME, InceptionWeightsError, resolve_inception_weights
    from slimgan_pl.metrics.reference import datamodule_config, dataset_kind

    try:
        dataset = dataset_kind(datamodule_config(datamodule))
    except ValueError:
        return  # an unsupported data module: the FID checks themselves say so
    evaluate = cfg.get("evaluate", {})
    after = evaluate if evaluate.get("after_training") else None
    needs = []  # (training-side switch, its weights key, how to turn it off) of each Inception user
    for switch, node, weights_key, off in (
        ("callbacks.fid", cfg.get("callbacks", {}).get("fid"), "callbacks.fid.inception_weights", "null"),
        ("evaluate.after_training", after, "evaluate.inception_weights", "false"),
    ):
        backbone = (node or {}).get("backbone") or "auto"
        if node is None or (default_backbone(dataset) if backbone == "auto" else backbone) != "inception":
            continue
        path = node.get("inception_weights")
        if path is None:
            needs.append((switch, weights_key, off))
        elif not Path(str(path)).expanduser().is_file():
            raise ValueError(f"{weights_key}={path}: no such file (the Inception-v3 weights for {switch})")
    if not needs:
        return
    try:
        resolve_inception_weights(None)  # $SLIMGAN_INCEPTION_WEIGHTS, else torch-fidelity's cache
    except InceptionWeightsError:
        keys = " / ".join(f"{weights_key}=" for _, weights_key, _ in needs)
        off = " ".join(f"{switch}={value}" for switch, _, value in needs)
        raise ValueError(
            f"no Inception-v3 weights for FID on RGB data: set ${ENV_VAR}=PATH of {WEIGHTS_FILENAME} "
            f"(or {keys}), or no FID: {off} (docs/evaluation.md)"
        ) from None


def build(cfg: DictConfig) -> tuple[SlimGAN, pl.LightningDataModule, pl.Trainer]:
    """Compose model, data and trainer from the config, validating everything before training."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate
    from omegaconf import OmegaConf
    from omegaconf.errors import MissingMandatoryValue

    from slimgan_pl.callbacks import DataConfigInCheckpoint
    from slimgan_pl.checkpoint_io import SafeCheckpointIO
    from slimgan_pl.data.fashion_mnist import DataNotFoundError
    from slimgan_pl.distributed import check_trainer_config
    from slimgan_pl.guard import NonFiniteGuard
    from slimgan_pl.module import SlimGAN
    from slimgan_pl.resume import check_resume_settings

    register_resolvers()  # here, not at import: slimgan-train --help answers without OmegaConf
    try:
        OmegaConf.resolve(cfg)
        ema = {f"ema_{key}": value for key, value in cfg.get("ema", {}).items()}  # ema.decay -> ema_decay
        model = SlimGAN(
            generator=cfg.model.generator,
            discriminator=cfg.model.discriminator,
            sync_bn=cfg.model.sync_bn,
            baseline=cfg.model.get("baseline"),
            channels_last=cfg.model.get("channels_last", False),
            compile_networks=cfg.model.get("compile", False),
            **cfg.slim,
            **cfg.optim,
            **ema,
        )
        check_trainer_config(
            cfg.trainer.get("accelerator", "auto"),
            cfg.trainer.get("precision", "32-true"),
            ema=cfg.get("ema", {}).get("decay") is not None,
        )
        datamodule = instantiate(cfg.data)
        _check_data_fits_model(datamodule, model)
        _check_inception_weights(cfg, datamodule)
        if hasattr(datamodule, "check"):
            datamodule.check()
        callbacks = [instantiate(c) for c in cfg.get("callbacks", {}).values() if c is not None]
        callbacks.append(DataConfigInCheckpoint())  # slimgan-eval CKPT reads the dataset from the checkpoint
        # First, so a non-finite iteration is caught before any callback saves it.
        callbacks.insert(
            0,
            NonFiniteGuard(
                cfg.train.get("on_nonfinite", "stop"),
                cfg.train.get("max_nonfinite_skips", 10),
                run_dir=cfg.paths.output_dir,
            ),
        )
        for key in ("name", "version"):  # CSVLogger folders below the run folder (also set in config files)
            if cfg.get("logger", {}).get("csv") is not None and cfg.logger.csv.get(key):
                check_name(f"logger.csv.{key}", cfg.logger.csv[key])
        loggers = [instantiate(lg) for lg in cfg.get("logger", {}).values() if lg is not None]
        # Every save is atomic (temp file, fsync, rename) and refuses a non-finite model.
        trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, plugins=[SafeCheckpointIO()])
        for callback in callbacks:  # callbacks that depend on the model, data or trainer check them now
            if hasattr(callback, "check_config"):
                callback.check_config(model, datamodule, trainer)
        if cfg.evaluate.after_training:
            from slimgan_pl.metrics.evaluation import check_after_training  # metrics stack only when needed

            check_after_training(cfg.evaluate, model, datamodule)
    except (ValueError, TypeError, DataNotFoundError) as e:
        raise ConfigError(str(e)) from e
    except MissingMandatoryValue as e:  # a ??? in the config (e.g. data=image_folder's root)
        raise ConfigError(f"{e.full_key} is required: set {e.full_key}=...") from e
    except InstantiationException as e:  # Hydra wraps a constructor's error; report the error itself
        raise ConfigError(str(e.__cause__ or e)) from e
    try:
        check_resume_settings(cfg.get("resume", "never"), cfg.ckpt_path)
    except ValueError as e:
        raise ConfigError(str(e)) from e
    return model, datamodule, trainer


def resume_command(run_dir: str | Path) -> str:
    """The one command that continues ``run_dir`` in place."""
    return f"slimgan-train --resume {run_dir}"


_fitted_runs: list[str] = []  # run folders whose training this process started (read by main())


def _already_trained(
    checkpoint: dict[str, Any], trainer: pl.Trainer, cfg: DictConfig, ckpt_path: str, out: Path
) -> dict[str, Any] | None:
    """When the checkpoint to continue from has already run ``train.g_steps`` iterations: say so (and how
    to train longer) and return the result of this no-op run; None when there is something to train."""
    done = int(checkpoint.get("global_step", 0))
    if not 0 < trainer.max_steps <= done:
        return None
    iterations = done // (int(cfg.optim.n_dis) + 1)
    at = f"train.g_steps={iterations}" if iterations == cfg.train.g_steps else f"iteration {iterations}"
    longer = f"train.g_steps={2 * iterations}"
    command = f": {resume_command(out)} {longer}" if cfg.ckpt_path is None else ""  # ckpt_path=: a new folder
    if trainer.is_global_zero:  # DDP: every rank stops here, one says why
        print(f"Nothing to train: already at {at} ({ckpt_path}); add {longer} to train longer{command}", flush=True)
    return {"output_dir": str(out), "iterations": iterations, "already_trained": True, "last_checkpoint": ckpt_path}


def global_rank() -> int:
    """This process's global rank as Lightning derives it from the environment (its ``_get_rank``: RANK,
    LOCAL_RANK, SLURM_PROCID, JSM_NAMESPACE_RANK; 0 outside DDP). Read here, not imported: importing
    Lightning before Hydra configures logging makes Lightning add its own stderr handler, and its "GPU
    available" lines would then precede every one-line error."""
    import os

    for key in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        if key in os.environ:
            return int(os.environ[key])
    return 0


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train, then write ``summary.json`` (per-width final losses, checkpoint and sample paths).

    The run folder is locked while training (:mod:`slimgan_pl.run_lock`; DDP: by rank 0): a second
    trainer into it is refused in one line before it writes anything."""
    with RunLock(cfg.paths.output_dir) if global_rank() == 0 else nullcontext():
        return _train(cfg)


def _train(cfg: DictConfig) -> dict[str, Any]:
    import pytorch_lightning as pl
    from omegaconf import OmegaConf

    from slimgan_pl.checkpoint_io import CheckpointSaveError
    from slimgan_pl.distributed import leave_process_group
    from slimgan_pl.module import width_tag
    from slimgan_pl.resume import PreemptionCheckpoint, check_checkpoint_fits, in_slurm_job, resume_checkpoint

    try:  # first: a damaged or unsafe checkpoint is refused before anything is built
        ckpt_path = resume_checkpoint(cfg.get("resume", "never"), cfg.ckpt_path, cfg.paths.output_dir)
    except ValueError as e:
        raise ConfigError(str(e)) from e
    pl.seed_everything(cfg.seed, workers=True, verbose=False)  # quiet: a config error stays the only stderr line
    model, datamodule, trainer = build(cfg)
    out = Path(cfg.paths.output_dir)
    if ckpt_path is not None:  # before anything is written: the run folder stays as it is
        try:  # a checkpoint of other networks: one line instead of Lightning's size-mismatch traceback
            checkpoint = check_checkpoint_fits(ckpt_path, model, explicit=cfg.ckpt_path is not None)
        except ValueError as e:
            raise ConfigError(str(e)) from e
        finished = _already_trained(checkpoint, trainer, cfg, ckpt_path, out)
        if finished is not None:
            return finished
    out.mkdir(parents=True, exist_ok=True)
    if trainer.is_global_zero:  # DDP: every rank runs this function (popen launcher: the whole script)
        (out / "config_resolved.yaml").write_text(OmegaConf.to_yaml(cfg))
        corrupt = getattr(datamodule, "corrupt_files", None)
        if corrupt:  # data.on_corrupt=skip: the files left out, for the user to fix
            (out / CORRUPT_LIST).write_text("".join(f"{name}\t{why}\n" for name, why in corrupt))
            log.warning(
                "%d unreadable images left out (data.on_corrupt=skip), listed in %s", len(corrupt), out / CORRUPT_LIST
            )
    for logger in trainer.loggers:  # the whole resolved config (wandb config, CSV hparams.yaml)
        logger.log_hyperparams(OmegaConf.to_container(cfg))
    if ckpt_path is not None:
        print(f"Resuming from {ckpt_path}", flush=True)
    preemption = next((c for c in trainer.callbacks if isinstance(c, PreemptionCheckpoint)), None)
    _fitted_runs.append(str(out))
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    except CheckpointSaveError as e:  # disk full / permission: the previous checkpoint is intact
        raise CheckpointSaveError(f"{e}; fix it, then continue with: {resume_command(out)}") from e
    except SystemExit:  # Lightning's SIGTERMException after our checkpoint (SLURM kills a requeued job)
        if preemption is None or not preemption.preempted:
            raise
    leave_process_group()  # DDP: what follows runs on rank 0 alone and must enter no collective
    if preemption is not None and preemption.preempted:
        if preemption.requeued or in_slurm_job():
            # No result for submitit/Hydra: the requeued job (ours, or SLURM's after its SIGTERM) resumes
            # and finishes this run; a cancelled job just ends.
            raise SystemExit(0)
        print(f"\nStopped by a signal after {model.iteration} iterations; continue with: {resume_command(out)}")
        return {
            "output_dir": str(out),
            "iterations": model.iteration,
            "preempted": True,
            "last_checkpoint": str(out / "checkpoints" / "last.ckpt"),
        }

    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    summary = {
        "output_dir": str(out),
        "iterations": model.iteration,
        "resumed_from": ckpt_path,
        "resumed_at_iteration": preemption.start_iteration if preemption is not None and ckpt_path else None,
        "widths": model.widths,
        "last_checkpoint": str(out / "checkpoints" / "last.ckpt"),
        "final_losses": {
            width_tag(w): {
                "d": metrics.get(f"train/d_loss_{width_tag(w)}"),
                "g": metrics.get(f"train/g_loss_{width_tag(w)}"),
            }
            for w in model.widths
        },
        "distill_loss": metrics.get("train/distill_loss"),
    }
    if trainer.is_global_zero:
        if cfg.evaluate.after_training:
            from slimgan_pl.metrics.evaluation import evaluate_after_training  # metrics stack only when needed

            summary.update(evaluate_after_training(cfg.evaluate, summary["last_checkpoint"], trainer))
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
        print(f"\nTrained {model.iteration} iterations; outputs in {out}")
        for w in model.widths:
            # No losses when this fit ran no step (e.g. resumed from the final checkpoint).
            d, g = (f"{v:.3f}" if v is not None else "-" for v in summary["final_losses"][width_tag(w)].values())
            print(f"  width {w:<5}  d_loss {d}  g_loss {g}  samples {out / 'samples' / width_tag(w)}")
    return summary


def _task(cfg: DictConfig) -> None:
    """Hydra's task function: one training run (every job of a multirun, every DDP rank)."""
    from slimgan_pl._warnings import silence_third_party_noise

    silence_third_party_noise()  # here, not in main(): submitit jobs and DDP ranks run this function
    try:
        with one_line_errors("slimgan-train"):  # inside the task: Hydra would print its own report
            check_command_line_keys(cfg)
            train(cfg)
    finally:
        finish_wandb()  # the next job of a multirun in this process must get its own wandb run


def check_command_line_keys(cfg: DictConfig) -> None:
    """ConfigError for a ``+key=value`` of the command line that nothing reads (Hydra added it)."""
    from hydra.core.hydra_config import HydraConfig

    from slimgan_pl.overrides import check_added_keys

    try:
        check_added_keys(cfg, list(HydraConfig.get().overrides.task))
    except ValueError as e:
        raise ConfigError(str(e)) from e


def finish_wandb() -> None:
    """End the active wandb run, if any (Lightning's WandbLogger leaves it open)."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish()


def _override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _quote(value: str) -> str:
    return value if re.fullmatch(r"[\w./:@-]+", value) else "'" + value.replace("'", "\\'") + "'"


def resume_overrides(run_dir: str, overrides: list[str]) -> list[str]:
    """Hydra overrides that continue ``run_dir`` in place: the run's saved overrides
    (``.hydra/overrides.yaml``), replaced by any of ``overrides`` with the same key, plus
    ``hydra.run.dir=<run_dir>`` and ``resume=auto``."""
    run = Path(run_dir)
    saved_file = run / ".hydra" / "overrides.yaml"
    if not saved_file.is_file():
        raise ValueError(f"--resume {run_dir}: not a slimgan-train run folder (no .hydra/overrides.yaml)")
    if any(_override_key(o) in ("ckpt_path", "resume", "hydra.run.dir", "paths.output_dir") for o in overrides):
        raise ValueError(
            "--resume continues the run folder's own checkpoints: do not combine it with ckpt_path=, "
            "resume=, hydra.run.dir= or paths.output_dir="
        )
    given = {_override_key(o) for o in overrides}
    dropped = given | {"ckpt_path", "resume", "hydra.run.dir", "paths.output_dir"}
    from omegaconf import OmegaConf

    saved = [str(o) for o in OmegaConf.load(saved_file) if _override_key(str(o)) not in dropped]
    return [*saved, *overrides, f"hydra.run.dir={_quote(str(run))}", "resume=auto"]


def _resume_dir(argv: list[str]) -> Path | None:
    """The run folder of ``--resume DIR`` / ``--resume=DIR`` in ``argv``, if any."""
    for i, arg in enumerate(argv):
        if arg.startswith("--resume="):
            return Path(arg.split("=", 1)[1])
        if arg == "--resume" and i + 1 < len(argv):
            return Path(argv[i + 1])
    return None


def _resume_argv(argv: list[str]) -> list[str]:
    """``--resume DIR`` (or ``--resume=DIR``) in ``argv`` -> the overrides of :func:`resume_overrides`."""
    for i, arg in enumerate(argv):
        if arg == "--resume" or arg.startswith("--resume="):
            if arg == "--resume":
                if i + 1 >= len(argv):
                    raise ValueError("--resume needs a run folder: slimgan-train --resume outputs/<run>")
                run_dir, rest = argv[i + 1], argv[:i] + argv[i + 2 :]
            else:
                run_dir, rest = arg.split("=", 1)[1], argv[:i] + argv[i + 1 :]
            if any(a in ("-m", "--multirun") for a in rest):
                raise ValueError("--resume continues one run folder: it cannot be combined with -m/--multirun")
            return resume_overrides(run_dir, rest)
    return argv


LAUNCHER_PACKAGE = "hydra_plugins.slimgan_launchers"


class LauncherNotFoundError(ValueError):
    """``hydra/launcher=slurm|local`` asked for, but this install has no slimgan-pl launcher plugins."""


def ensure_launcher_plugins(argv: list[str]) -> None:
    """Let Hydra's plugin scan find ``hydra/launcher=slurm|local`` under any install.

    Hydra finds plugins by walking ``hydra_plugins.__path__`` with ``pkgutil``. A wheel puts our
    ``hydra_plugins/slimgan_launchers`` beside hydra-submitit-launcher's, but setuptools' editable install
    (what ``make setup`` does) maps it through a path hook that ``pkgutil`` cannot list, so Hydra said
    "Unknown plugin class". Adding the folder the import system resolves to the namespace's path fixes the
    scan for every install kind; an install without the package gets one line naming the fix."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(LAUNCHER_PACKAGE)
    except ImportError:
        spec = None
    if spec is None or not spec.submodule_search_locations:
        asked = [a for a in argv if _override_key(a) == "hydra/launcher" and a.endswith(("slurm", "local"))]
        if asked:
            raise LauncherNotFoundError(
                f"{asked[0]} needs the {LAUNCHER_PACKAGE} plugin, which this install of slimgan-pl lacks: "
                "reinstall the package (`make setup`, or `pip install -e .` in the checkout)"
            )
        return
    import hydra_plugins

    folder = str(Path(next(iter(spec.submodule_search_locations))).parent)
    if folder not in list(hydra_plugins.__path__):
        hydra_plugins.__path__.append(folder)  # a namespace package's path: one more portion


HELP_FLAGS = ("-h", "--help")
MULTIRUN_FLAGS = ("-m", "--multirun")
_HIDDEN_GROUPS = ("eval", "hydra", "paths")  # not chosen on the command line (hydra/launcher is listed apart)


def config_groups() -> dict[str, list[str]]:
    """{group: options} of the packaged conf/ (file names only: nothing is composed)."""
    root = Path(config_dir())
    groups = {d.name: d for d in sorted(root.iterdir()) if d.is_dir() and d.name not in _HIDDEN_GROUPS}
    groups["hydra/launcher"] = root / "hydra" / "launcher"
    return {name: sorted(f.stem for f in folder.glob("*.yaml")) for name, folder in groups.items()}


def help_text() -> str:
    """``slimgan-train --help``: what the command does, its own flags, the config groups, examples."""
    groups = "\n".join(
        textwrap.fill(", ".join(options), 104, initial_indent=f"  {name:<15} ", subsequent_indent=" " * 18)
        for name, options in config_groups().items()
    )
    return f"""usage: slimgan-train [--resume RUN_DIR] [-m] [--debug] [GROUP=OPTION ...] [KEY=VALUE ...]

Train a slimmable GAN (SlimGAN: one generator, several widths) with PyTorch Lightning. Every setting is
a Hydra override: GROUP=OPTION picks a config file, KEY=VALUE sets one key. A run writes checkpoints,
sample grids, logs and summary.json to outputs/<task_name>/<date_time>/.

options:
  -h, --help         show this help and exit
  --resume RUN_DIR   continue RUN_DIR in place from its newest loadable checkpoint, with the run's own
                     overrides; add train.g_steps=N (more than it has) to train a finished run longer
  -m, --multirun     one run per combination of comma-separated values (seed=0,1,2), or an ablation
                     sweep=NAME (conf/sweep/); folders multirun/<name>/<date_time>/<job>/
  --debug            full tracebacks instead of one-line errors (or HYDRA_FULL_ERROR=1)
  --cfg job          print the composed config (every key) and exit; with overrides, theirs
  --hydra-help       Hydra's own flags (--info, --cfg hydra, shell completion, ...)

config groups (GROUP=OPTION):
{groups}

frequent keys:
  debug=smoke        a few iterations of tiny networks, no evaluation (seconds on a CPU)
  train.g_steps=N    iterations (each: optim.n_dis D steps + 1 G step)
  slim.widths=[0.25,0.5,1.0]   seed=S   task_name=NAME   trainer.accelerator=cpu|gpu   ckpt_path=FILE

examples:
  slimgan-train debug=smoke trainer.accelerator=cpu
  slimgan-train experiment=fmnist_demo
  slimgan-train -m sweep=width_sets seed=0,1,2
  slimgan-train --resume outputs/train/2026-11-30_22-00-00 train.g_steps=2000
  slimgan-train experiment=cifar10_sndcgan --cfg job

Docs: README.md, docs/training.md; errors and --resume: docs/robustness.md."""


def check_sweep_has_multirun(argv: list[str]) -> None:
    """ValueError for ``sweep=NAME`` without ``-m``: Hydra would train the base run once, ignoring the
    sweep's parameters."""
    if any(a in MULTIRUN_FLAGS for a in argv):
        return
    for arg in argv:
        key, _, value = arg.lstrip("+").partition("=")
        if key == "sweep" and value not in ("", "null"):
            raise ValueError(
                f"sweep={value} is a multirun sweep: add -m (slimgan-train -m sweep={value} ...); "
                "without it one base run would train and the sweep's values would be ignored"
            )


def _hydra_main() -> None:
    """Hydra's ``@hydra.main`` around :func:`_task` (applied here: importing this module loads no Hydra)."""
    import hydra

    register_resolvers()
    hydra.main(version_base="1.3", config_path=config_dir(), config_name="config")(_task)()


def _parsed_overrides(argv: list[str]) -> list[Any]:
    """Hydra's parse of the ``key=value`` overrides of ``argv``; [] when one is malformed (Hydra then
    reports it in one line itself)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        return OverridesParser.create().parse_overrides([a for a in argv if "=" in a and not a.startswith("-")])
    except Exception:  # noqa: BLE001 - any parse error: left to Hydra
        return []


def check_name_overrides(argv: list[str]) -> None:
    """One-line ValueError for a name-like override (:data:`~slimgan_pl.config.NAME_KEYS`, every value of
    a sweep) that would leave its folder, before Hydra creates any folder."""
    for override in _parsed_overrides(argv):
        if override.key_or_group in NAME_KEYS and not override.is_delete():
            values = override.sweep_string_iterator() if override.is_sweep_override() else [override.value()]
            for value in values:
                check_name(override.key_or_group, value)


def explicit_run_dir(argv: list[str]) -> str | None:
    """The run folder an override of ``argv`` names (``hydra.run.dir=`` or ``paths.output_dir=``, the last
    one; ``--resume`` adds the former), or None (Hydra picks a new dated folder; or a multirun)."""
    if any(a in ("-m", "--multirun") for a in argv):
        return None
    found = None
    for override in _parsed_overrides(argv):
        if override.key_or_group in ("hydra.run.dir", "paths.output_dir") and not override.is_delete():
            value = override.value()
            found = value if isinstance(value, str) else found
    return found


@cli_main("slimgan-train")
def main() -> None:
    argv = sys.argv[1:]
    if any(a in HELP_FLAGS for a in argv):  # ours, before Hydra and torch load (--hydra-help is Hydra's)
        print(help_text())
        return
    check_sweep_has_multirun(argv)
    ensure_launcher_plugins(argv)  # hydra/launcher=slurm|local visible to Hydra's plugin scan
    sys.argv[1:] = _resume_argv(argv)
    check_name_overrides(sys.argv[1:])  # config files' names: the safe_name resolver of the run/sweep dirs
    run_dir = explicit_run_dir(sys.argv[1:])
    if run_dir is not None and global_rank() == 0:
        check_run_folder_free(run_dir)  # before Hydra writes .hydra/ and the job log into a folder in use
    with hydra_one_line("slimgan-train", explain=_explain_hydra_error), _kept_unless_trained(_resume_dir(argv)):
        _hydra_main()


@contextmanager
def _kept_unless_trained(run_dir: Path | None) -> Iterator[None]:
    """``--resume RUN_DIR``: Hydra rewrites ``RUN_DIR/.hydra/*.yaml`` (the saved overrides that the next
    ``--resume`` re-runs) before the task starts; put the old files back unless training started.
    A refused or no-op resume (``model.generator.ngf=48`` on a run of 16) must not change the run."""
    saved = {f: f.read_bytes() for f in (run_dir / ".hydra").glob("*.yaml")} if run_dir is not None else {}
    del _fitted_runs[:]
    try:
        yield
    finally:
        if saved and not _fitted_runs:
            for path, content in saved.items():
                path.write_bytes(content)


def _explain_hydra_error(message: str) -> str | None:
    """A clearer line for Hydra's "Could not override 'KEY'. To append to your config use +KEY=VALUE"
    (the + form would add a key nothing reads): the closest existing key instead."""
    found = re.match(r"Could not override '([^']+)'\. To append to your config use \+[^=]+=(.*)$", message)
    if found is None:
        return None
    from slimgan_pl.overrides import unknown_key_message

    return unknown_key_message(found.group(1), found.group(2), sys.argv[1:], "slimgan-train")


if __name__ == "__main__":
    main()
