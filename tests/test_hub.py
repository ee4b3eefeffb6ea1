"""plugin/target-klaviyo.yml passes Meltano Hub's own checks: its loader schema and its yamllint."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

ROOT = Path(__file__).resolve().parents[1]
HUB = ROOT / "tests" / "fixtures" / "meltano_hub"
DEFINITION = ROOT / "plugin" / "target-klaviyo.yml"
SCHEMAS = {path.name: json.loads(path.read_text()) for path in (HUB / "schemas").rglob("*.schema.json")}


def _retrieve(uri: str) -> Resource:
    """The Hub's schemas refer to each other by relative paths; each file name is unique."""
    return Resource.from_contents(SCHEMAS[uri.rsplit("/", 1)[-1]], default_specification=DRAFT7)


def hub_validator() -> jsonschema.Draft7Validator:
    schema = SCHEMAS["loaders.schema.json"]
    registry: Registry = Registry(retrieve=_retrieve)
    return jsonschema.Draft7Validator(schema, registry=registry, format_checker=jsonschema.FormatChecker())


def test_the_definition_passes_the_hubs_loader_schema():
    errors = sorted(hub_validator().iter_errors(yaml.safe_load(DEFINITION.read_text())), key=str)
    assert errors == []


def test_the_vendored_schema_still_catches_what_the_hub_refuses():
    """The checks are live: the old definition's faults (no quality, an unknown kind) are refused."""
    definition = yaml.safe_load(DEFINITION.read_text())
    validator = hub_validator()
    assert not validator.is_valid({key: value for key, value in definition.items() if key != "quality"})
    broken = {**definition, "settings": [{"name": "x", "kind": "number"}]}
    assert not validator.is_valid(broken)
    assert not validator.is_valid({**definition, "capabilities": ["record-flattening"]})


def test_the_definition_passes_the_hubs_yamllint():
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "yamllint",
            "-c",
            str(HUB / ".yamllint.yaml"),
            "-f",
            "parsable",
            str(DEFINITION),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout


def test_the_definition_looks_like_the_hubs_loaders():
    definition = yaml.safe_load(DEFINITION.read_text())
    assert definition["logo_url"].startswith("/assets/logos/loaders/")
    assert definition["supported_python_versions"][0] == "3.10"
    names = [setting["name"] for setting in definition["settings"]]
    assert names == sorted(names)
    assert "faker_config.seed" in names
    assert "faker_config" not in names
    assert definition["settings_group_validation"] == [["api_key", "list_id"], ["api_key", "stream_lists"]]
    assert next(s for s in definition["settings"] if s["name"] == "api_key")["sensitive"] is True
