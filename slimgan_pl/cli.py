"""One way every command-line tool reports a known error: one line on stderr, exit status 2.

``@cli_main("slimgan-eval")`` on a ``main(argv=None)`` entry point (and :func:`one_line_errors` inside
Hydra's task function, where Hydra would otherwise print its own multi-line report):

* a known error (bad input, config, checkpoint, data, disk, divergence: :func:`known_errors`) prints
  ``<prog>: error: <message>`` on one line and exits 2;
* ``--debug`` anywhere on the command line (removed before the tool parses it) or
  ``HYDRA_FULL_ERROR=1`` re-raises instead, with the full traceback;
* anything else (a bug) keeps its traceback.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

DEBUG_FLAG = "--debug"
EXIT_KNOWN_ERROR = 2


_HYDRA_QUIET = "SLIMGAN_HYDRA_ONE_LINE"  # marks a HYDRA_FULL_ERROR=1 set by hydra_one_line, not by the user


def debug_requested() -> bool:
    """Full tracebacks wanted: ``HYDRA_FULL_ERROR=1`` set by the user (or by ``--debug``)."""
    return os.environ.get("HYDRA_FULL_ERROR") == "1" and os.environ.get(_HYDRA_QUIET) != "1"


@contextmanager
def hydra_one_line(prog: str, explain: Callable[[str], str | None] | None = None) -> Iterator[None]:
    """Around ``@hydra.main``: Hydra's own errors (unknown config group or key, bad override syntax)
    become one line and exit 2 too. Hydra prints them over several lines unless HYDRA_FULL_ERROR=1,
    in which case it re-raises them: set it (marked as ours, so :func:`debug_requested` stays false).
    ``explain(message)`` may return a clearer line for a message (None: keep Hydra's)."""
    from hydra.errors import HydraException

    if debug_requested():
        yield
        return
    os.environ["HYDRA_FULL_ERROR"] = os.environ[_HYDRA_QUIET] = "1"
    try:
        yield
    except HydraException as e:
        message = one_line(e).split(" Config search path:")[0]  # the search path is noise for a user
        message = (explain(message) if explain is not None else None) or message
        print(f"{prog}: error: {message}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_KNOWN_ERROR) from None
    finally:
        os.environ.pop("HYDRA_FULL_ERROR", None)
        os.environ.pop(_HYDRA_QUIET, None)


def known_errors() -> tuple[type[BaseException], ...]:
    """The error classes whose message alone tells the user what to fix. Each is looked up only in a module
    that is already imported (an error of a class can only exist once its module is loaded), so reporting
    a bad argument never imports torch."""
    found: list[type[BaseException]] = [ValueError, OSError]
    for module, name in (
        ("slimgan_pl.checkpoint", "CheckpointError"),
        ("slimgan_pl.guard", "NonFiniteError"),
        ("slimgan_pl.deploy.dense", "ExportError"),
        ("slimgan_pl.metrics.fmnist_classifier", "ClassifierCacheError"),
    ):
        cls = getattr(sys.modules.get(module), name, None)
        if cls is not None:
            found.append(cls)
    return tuple(found)


def one_line(error: BaseException) -> str:
    """The error's message on one line (newlines and runs of spaces collapsed)."""
    text = " ".join(str(error).split())
    if isinstance(error, KeyError):  # str(KeyError) quotes its argument
        text = text.strip("'\"")
    return text or type(error).__name__


@contextmanager
def one_line_errors(prog: str) -> Iterator[None]:
    """Inside: a known error becomes ``<prog>: error: <message>`` on stderr and ``SystemExit(2)``."""
    try:
        yield
    except SystemExit as stop:
        # A tool that reported the error itself (``fail()``/``sys.exit(2)`` inside its ``except``):
        # with --debug, re-raise the error it handled, so its traceback shows.
        handled = stop.__context__
        if debug_requested() and stop.code not in (0, None) and isinstance(handled, Exception):
            raise handled from None
        raise
    except known_errors() as e:
        if debug_requested():
            raise
        label = getattr(e, "cli_label", "error")  # e.g. "config error"
        print(f"{prog}: {label}: {one_line(e)}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_KNOWN_ERROR) from None


def strip_debug_flag(argv: list[str]) -> list[str]:
    """``argv`` without ``--debug``; when it was there, turn full tracebacks on (also Hydra's)."""
    if DEBUG_FLAG in argv:
        os.environ["HYDRA_FULL_ERROR"] = "1"
        argv = [a for a in argv if a != DEBUG_FLAG]
    return argv


def cli_main(prog: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator for a console-script ``main(argv=None)``: ``--debug`` handling and one-line errors."""

    def wrap(main: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(main)
        def run(argv: Sequence[str] | None = None) -> Any:
            if argv is None:
                sys.argv[1:] = strip_debug_flag(sys.argv[1:])
            else:
                argv = strip_debug_flag(list(argv))
            with one_line_errors(prog):
                return main(argv) if argv is not None else main()

        return run

    return wrap
