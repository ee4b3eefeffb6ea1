"""Folders for the files target-klaviyo writes: created owner-only, whatever the umask.

The rejects file holds personal data and the mirror plan decides who is removed from
a list; a folder others may write to would let them replace either. ``mkdir``'s mode
is filtered by the umask (``umask 000`` makes 0777 folders), and ``parents=True``
ignores the mode for the parents, so every missing level is created and chmodded here.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

PRIVATE_FOLDER = 0o700


def make_private_folders(folder: Path) -> None:
    """Create ``folder`` and its missing parents, each 0700; existing ones are left as they are.

    Raises ``OSError`` like ``mkdir``; callers turn it into a sentence naming their setting.
    """
    missing = []
    for level in (folder, *folder.parents):
        if level.exists():
            break
        missing.append(level)
    for level in reversed(missing):
        level.mkdir(mode=PRIVATE_FOLDER, exist_ok=True)
        os.chmod(level, PRIVATE_FOLDER)
    if not folder.is_dir():  # a file where a folder should be: mkdir's own error
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(folder))
