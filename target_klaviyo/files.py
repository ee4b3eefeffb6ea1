"""Folders for the files target-klaviyo writes: created owner-only, whatever the umask.

The rejects file holds personal data and the mirror plan decides who is removed from
a list; a folder others may write to would let them replace either. ``mkdir``'s mode
is filtered by the umask (``umask 000`` makes 0777 folders), and ``parents=True``
ignores the mode for the parents, so every missing level is created and chmodded here.
The settings are checked before any input is read, without creating anything, by
asking whether the writer's ``mkdir`` would succeed. Locks held for a run are open files
of their own (:func:`try_lock`).
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path
from typing import IO

PRIVATE_FOLDER = 0o700


def _missing_levels(folder: Path) -> tuple[list[Path], Path]:
    """The levels of ``folder`` that do not exist, deepest first, and the first one that does (at the
    latest the top, ``/`` or ``.``, which exists while this process runs)."""
    *below, top = (folder, *folder.parents)
    missing: list[Path] = []
    for level in below:
        if level.exists():
            return missing, level
        missing.append(level)
    return missing, top


def make_private_folders(folder: Path) -> None:
    """Create ``folder`` and its missing parents, each 0700; existing ones are left as they are.

    Raises ``OSError`` like ``mkdir``; callers turn it into a sentence naming their setting.
    """
    missing, _ = _missing_levels(folder)
    for level in reversed(missing):
        level.mkdir(mode=PRIVATE_FOLDER, exist_ok=True)
        os.chmod(level, PRIVATE_FOLDER)
    if not folder.is_dir():  # a file where a folder should be: mkdir's own error
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(folder))


def check_folder_creatable(folder: Path) -> None:
    """Raise the ``OSError`` that :func:`make_private_folders` would meet for ``folder``, creating nothing.

    The first existing level must be a folder; when levels are missing, the first of them
    must not be a link to nothing, the folder must be on a writable file system and this
    user allowed to add to it, and each missing name must fit the file system's longest.
    Whether an existing ``folder`` may be written is the caller's question, about the
    file it names.
    """
    missing, existing = _missing_levels(folder)
    if not existing.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(existing))
    if not missing:
        return
    # mkdir's first error wins: a name taken (by a link to nothing, which exists() does not see),
    # then a read-only file system, then no permission to add a name.
    first = missing[-1]
    if first.is_symlink():
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(first))
    if os.statvfs(existing).f_flag & os.ST_RDONLY:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(first))
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(first))
    longest = os.pathconf(existing, "PC_NAME_MAX")
    for level in missing:
        if len(os.fsencode(level.name)) > longest:
            raise OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG), str(level))


def try_lock(path: Path) -> IO[bytes] | None:
    """The file at ``path`` (created owner-only, never through a link) held under an exclusive
    lock, or None if another process holds it; the lock lasts until the file is closed or the
    process ends, however it ends. OSError if the file cannot be opened."""
    handle = open(  # noqa: SIM115 - the caller keeps it open: the lock is the open file
        os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600), "r+b"
    )
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle
