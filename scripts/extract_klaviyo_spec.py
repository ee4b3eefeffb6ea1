"""Extract the part of Klaviyo's OpenAPI spec that target-klaviyo and its sandbox use.

The full spec (3 MB) lives outside the repository, in ``../shared/klaviyo``. This
script keeps only the operations we call or serve, every component they reference,
and a note of where the file came from, so that a fresh clone can validate requests
and responses without the full spec::

    python scripts/extract_klaviyo_spec.py ../shared/klaviyo/openapi-stable.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
from pathlib import Path

OPERATIONS = {
    "/api/lists/{id}": ["get"],
    "/api/lists/{id}/profiles": ["get"],
    "/api/lists/{id}/relationships/profiles": ["post", "delete"],
    "/api/profiles": ["get"],
    "/api/profile-bulk-import-jobs": ["get", "post"],
    "/api/profile-bulk-import-jobs/{job_id}": ["get"],
    "/api/profile-bulk-import-jobs/{id}/import-errors": ["get"],
    "/api/profile-import": ["post"],
    "/api/profile-subscription-bulk-create-jobs": ["post"],
}
DEFAULT_OUTPUT = Path(__file__).parent.parent / "klaviyo_sandbox/klaviyo-openapi-subset.json"
REF = re.compile(r'"#/components/(schemas|responses)/([^"]+)"')


def referenced_components(spec: dict, roots: list) -> dict[str, dict]:
    """Follow ``$ref`` links from ``roots`` and return every component they reach."""
    found: dict[str, dict] = {"schemas": {}, "responses": {}}
    pending = [json.dumps(root) for root in roots]
    while pending:
        for kind, name in REF.findall(pending.pop()):
            if name not in found[kind]:
                component = spec["components"][kind][name]
                found[kind][name] = component
                pending.append(json.dumps(component))
    return found


def extract(spec: dict, source: Path) -> dict:
    paths = {
        path: {method: spec["paths"][path][method] for method in methods}
        for path, methods in OPERATIONS.items()
    }
    return {
        "openapi": spec["openapi"],
        "info": {
            **spec["info"],
            "x-extracted-from": {
                "file": "openapi/stable.json of Klaviyo's public repository klaviyo/openapi",
                "sha256": hashlib.sha256(source.read_bytes()).hexdigest(),
                "script": "scripts/extract_klaviyo_spec.py",
            },
        },
        "paths": paths,
        "components": referenced_components(spec, list(paths.values())),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", type=Path, help="path to Klaviyo's openapi-stable.json")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    subset = extract(json.loads(args.spec.read_text()), args.spec)
    args.output.write_text(json.dumps(subset, indent=1, sort_keys=True) + "\n")
    print(f"wrote {args.output} ({args.output.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
