"""Check that the built wheel and sdist hold what an install needs (used by check_package.sh)."""

from __future__ import annotations

import sys
import tarfile
import zipfile

WHEEL_NEEDS = [
    "target_klaviyo/py.typed",
    "klaviyo_sandbox/py.typed",
    "klaviyo_sandbox/klaviyo-openapi-subset.json",
    "klaviyo_sandbox/pytest_plugin.py",
]
SDIST_NEEDS = ["LICENSE", "README.md", "pyproject.toml", "klaviyo_sandbox/klaviyo-openapi-subset.json"]


def main() -> None:
    wheel, sdist = sys.argv[1], sys.argv[2]
    names = zipfile.ZipFile(wheel).namelist()
    missing = [name for name in WHEEL_NEEDS if name not in names]
    if not any(name.endswith(".dist-info/licenses/LICENSE") for name in names):
        missing.append("*.dist-info/licenses/LICENSE")
    entry_points = next(name for name in names if name.endswith(".dist-info/entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    for needed in ("[pytest11]", "klaviyo-sandbox = klaviyo_sandbox.cli:main", "target-klaviyo ="):
        if needed not in text:
            missing.append(f"entry point {needed}")
    with tarfile.open(sdist) as archive:
        sdist_names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    missing += [f"sdist {name}" for name in SDIST_NEEDS if name not in sdist_names]
    if any(name.startswith("tests/") for name in sdist_names):
        missing.append("an sdist without the test suite (it needs the whole repository to run)")
    if missing:
        raise SystemExit(f"The package lacks: {', '.join(missing)}")
    print(
        f"wheel and sdist hold the spec, the type markers, the license and the entry points ({len(names)} files)"
    )


if __name__ == "__main__":
    main()
