"""Pre-flight check of file-backed image datasets: every file is decoded once before training.

A folder with one unreadable image among thousands would otherwise train until the loader reaches
it and die mid-run. :func:`find_unreadable_images` decodes each file (JPEGs at reduced scale through
Pillow's draft mode: the whole compressed stream is read, so truncation shows, at a fraction of
the cost), in threads, with a progress bar on a terminal. Results are cached per file (size and
modification time) in ``$SLIMGAN_DATA_CHECK_CACHE`` (default ``~/.cache/slimgan_pl/data_check``), so
a second run over the same files checks nothing again.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image
from tqdm import tqdm

ON_CORRUPT = ("error", "skip")
DEFAULT_CACHE_DIR = Path("~/.cache/slimgan_pl/data_check")


def cache_dir() -> Path:
    return Path(os.environ.get("SLIMGAN_DATA_CHECK_CACHE", DEFAULT_CACHE_DIR)).expanduser()


def decode_problem(path: str) -> str | None:
    """None when ``path`` decodes as an image, else why not (``ErrorType: message``)."""
    try:
        with Image.open(path) as image:
            image.draft(image.mode, (32, 32))  # JPEG: DCT-domain downscale, still reads every byte
            image.load()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        return f"{type(e).__name__}: {' '.join(str(e).split())[:120]}"
    return None


def _cache_file(files: Sequence[str]) -> Path:
    common = os.path.commonpath([os.path.abspath(f) for f in files]) if files else ""
    return cache_dir() / f"{hashlib.sha1(common.encode()).hexdigest()[:16]}.json"


def _signature(path: str) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def find_unreadable_images(files: Sequence[str], workers: int = 4) -> list[tuple[str, str]]:
    """``[(file, why), ...]`` for the files that do not decode, in the order given; files unchanged
    since a previous check (same size and modification time) are not decoded again."""
    files = [str(f) for f in files]
    cache_path = _cache_file(files)
    try:
        cache = json.loads(cache_path.read_text())
    except (OSError, ValueError):
        cache = {}
    results: dict[str, str | None] = {}
    todo: list[str] = []
    signatures: dict[str, list[int] | None] = {}
    for f in files:
        key = os.path.abspath(f)
        signatures[f] = _signature(f)
        entry = cache.get(key)
        if signatures[f] is not None and entry is not None and entry[0] == signatures[f]:
            results[f] = entry[1]
        else:
            todo.append(f)
    if todo:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:  # Pillow decodes without the GIL
            checked = tqdm(
                pool.map(decode_problem, todo),
                total=len(todo),
                desc="checking images",
                unit="img",
                disable=None,
                leave=False,
            )  # disable=None: a bar on terminals only
            for f, problem in zip(todo, checked):
                results[f] = problem if signatures[f] is not None else "FileNotFoundError: cannot stat the file"
                if signatures[f] is not None:
                    cache[os.path.abspath(f)] = [signatures[f], problem]
        try:
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_path.with_name(f"{cache_path.name}.tmp-{os.getpid()}")
            tmp.write_text(json.dumps(cache))
            os.replace(tmp, cache_path)
        except OSError:
            pass  # no cache: the next run checks again
    return [(f, results[f]) for f in files if results[f] is not None]


def corrupt_files_message(bad: Sequence[tuple[str, str]], total: int, shown: int = 5) -> str:
    """One line: how many, which (the first ``shown``), why, and the two ways out."""
    listed = ", ".join(f"{name} ({why.split(':')[0]})" for name, why in bad[:shown])
    more = f" and {len(bad) - shown} more" if len(bad) > shown else ""
    return (
        f"data.on_corrupt=error: {len(bad)} of {total} images cannot be decoded: {listed}{more}; "
        "delete or replace them, or set data.on_corrupt=skip to train without them"
    )
