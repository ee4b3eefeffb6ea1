import errno
import os
from pathlib import Path

import pytest

from target_klaviyo.files import check_folder_creatable, make_private_folders


def outcome(call, folder: Path) -> int | None:
    """The errno ``call(folder)`` fails with, or None when it succeeds."""
    try:
        call(folder)
    except OSError as error:
        return error.errno
    return None


def situations(root: Path) -> dict[str, Path]:
    (root / "file").write_text("")
    (root / "gone").symlink_to(root / "nowhere")
    long_name = "x" * (os.pathconf(root, "PC_NAME_MAX") + 1)
    return {
        "existing": root,
        "missing levels": root / "a" / "b",
        "a file": root / "file",
        "below a file": root / "file" / "a",
        "a link to nothing": root / "gone" / "a",
        "a name too long": root / "c" / long_name,
    }


@pytest.mark.parametrize(
    "situation",
    ["existing", "missing levels", "a file", "below a file", "a link to nothing", "a name too long"],
)
def test_the_check_predicts_what_creating_meets_and_creates_nothing(tmp_path, situation):
    folder = situations(tmp_path)[situation]
    before = sorted(tmp_path.rglob("*"))
    predicted = outcome(check_folder_creatable, folder)
    assert sorted(tmp_path.rglob("*")) == before, "the check creates nothing"
    assert predicted == outcome(make_private_folders, folder)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may add to any folder")
def test_a_folder_this_user_may_not_add_to_is_refused_as_mkdir_refuses_it(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    assert outcome(check_folder_creatable, locked / "a") == errno.EACCES
    assert outcome(make_private_folders, locked / "a") == errno.EACCES
