"""Files written so that nobody sees half of one: write a temporary file beside the target, then rename.

A process killed mid-write leaves only a hidden ``.NAME.XXXX.tmp`` beside the target, never a damaged target;
:func:`remove_stale_temp_files` clears those at the next start of whatever writes there.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

PathLike = str | os.PathLike


def _new_file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _temp_prefix(name: str) -> str:
    return f".{name}."


def atomic_write(path: PathLike, write: Callable[[str], object]) -> None:
    """Call ``write(tmp_path)`` then rename over ``path``: readers never see half a file.

    An error while writing (a full disk, a read-only folder, Ctrl-C) removes the temporary file and leaves
    ``path`` as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path.name), suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        # mkstemp makes the file private (0600); the result gets the mode a plain open() would give it (or keeps
        # the mode of the file it replaces), so that outputs stay readable by whoever could read them before
        os.chmod(tmp, path.stat().st_mode & 0o7777 if path.exists() else _new_file_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def remove_stale_temp_files(folder: PathLike, names: list[str]) -> list[Path]:
    """Delete the temporary files that :func:`atomic_write` left for ``names`` in ``folder`` when a process was
    killed mid-write (``kill -9`` skips its clean-up). Call it only where no other process writes those names.
    Returns the removed paths."""
    folder = Path(folder)
    removed = []
    for name in names:
        for stale in folder.glob(f"{_temp_prefix(name)}*.tmp"):
            if stale.is_file():
                stale.unlink()
                removed.append(stale)
    return removed
