"""plugin/target-klaviyo.yml and plugin/klaviyo-mirror.yml pass Meltano Hub's own checks: its
plugin schemas and its yamllint; their settings say what the target and the mirror read."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from target_klaviyo.errors import RunError
from target_klaviyo.mirror.apply import load_config

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


UTILITY = ROOT / "plugin" / "klaviyo-mirror.yml"
# The Hub kind of each JSON schema type, as the Hub's SDK-based loaders declare them.
KIND_OF_TYPE = {
    "string": "string",
    "integer": "integer",
    "number": "decimal",
    "boolean": "boolean",
    "object": "object",
    "array": "array",
}
# Settings whose schema admits more than one type, and the kind each takes on the Hub.
UNION_KINDS = {
    # a number, string or boolean: every SDK-based loader on the Hub (target-postgres, target-snowflake,
    # target-csv of MeltanoLabs...) says string, the one kind Meltano passes on as written
    "faker_config.seed": "string",
    # a locale or a list of them: the Hub's SDK-based loaders say array
    "faker_config.locale": "array",
    # "unmapped", "none" or a list of names: a word is the default, which an array kind would refuse
    "custom_properties": "string",
}


@functools.cache
def about_settings() -> dict[str, dict]:
    """Every setting's JSON schema from ``--about``, an object of named settings split as the Hub splits it."""
    about = subprocess.run(
        [sys.executable, "-m", "target_klaviyo.target", "--about", "--format=json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = {}
    for name, schema in json.loads(about)["settings"]["properties"].items():
        children = schema.get("properties")
        if children and not isinstance(schema.get("additionalProperties"), dict):
            found |= {f"{name}.{child}": sub for child, sub in children.items()}
        else:
            found[name] = schema
    return found


def json_types(schema: dict) -> set[str]:
    """The types a value may have, null aside (every setting may be unset), through oneOf and anyOf too."""
    declared = schema.get("type") or []
    types = {declared} if isinstance(declared, str) else set(declared)
    for option in [*schema.get("oneOf", []), *schema.get("anyOf", [])]:
        types |= json_types(option)
    return types - {"null"}


def test_every_settings_kind_matches_its_json_schema_type():
    schemas = about_settings()
    for setting in yaml.safe_load(DEFINITION.read_text())["settings"]:
        name, schema = setting["name"], schemas[setting["name"]]
        types = json_types(schema)
        if schema.get("secret"):
            expected = "password"
        elif "enum" in schema:
            expected = "options"
            assert {option["value"] for option in setting["options"]} == set(schema["enum"]) - {None}, name
        elif len(types) > 1:
            assert name in UNION_KINDS, f"{name} admits {sorted(types)}: choose its Hub kind in UNION_KINDS"
            expected = UNION_KINDS[name]
        else:
            [single] = types
            expected = KIND_OF_TYPE[single]
        assert setting["kind"] == expected, (
            f"{name}: {sorted(types)} is kind {expected}, not {setting['kind']}"
        )


def utility_validator() -> jsonschema.Draft7Validator:
    """The Hub's loader schema less its loader-only part (capabilities, dialect, target_schema).

    The Hub's utilities schema is not vendored in tests/fixtures/meltano_hub/; at the vendored
    commit it is the same composition of the common and hub_metadata schemas, without the
    loader-specific one.
    """
    loader = SCHEMAS["loaders.schema.json"]
    specific = SCHEMAS["loaders_specific.schema.json"]["properties"]
    parts = []
    for part in loader["allOf"]:
        if part.get("$ref", "").endswith("/loaders_specific.schema.json"):
            continue
        if "properties" in part:
            part = {**part, "properties": {k: v for k, v in part["properties"].items() if k not in specific}}
        parts.append(part)
    schema = {**loader, "title": "JSON Schema for utility plugins.", "allOf": parts}
    return jsonschema.Draft7Validator(
        schema, registry=Registry(retrieve=_retrieve), format_checker=jsonschema.FormatChecker()
    )


def test_the_utility_definition_passes_the_hubs_schema():
    utility = yaml.safe_load(UTILITY.read_text())
    assert sorted(utility_validator().iter_errors(utility), key=str) == []
    assert not utility_validator().is_valid({**utility, "capabilities": ["about"]})  # a loader's key


def test_the_utility_definition_passes_the_hubs_yamllint():
    result = subprocess.run(
        [sys.executable, "-m", "yamllint", "-c", str(HUB / ".yamllint.yaml"), "-f", "parsable", str(UTILITY)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout


def test_the_utility_runs_target_klaviyo_mirror_with_the_loaders_settings():
    utility = yaml.safe_load(UTILITY.read_text())
    loader = yaml.safe_load(DEFINITION.read_text())
    assert utility["logo_url"].startswith("/assets/logos/utilities/")
    assert (utility["namespace"], utility["pip_url"]) == (loader["namespace"], loader["pip_url"])
    assert utility["executable"] == "target-klaviyo-mirror"
    assert utility["commands"]["apply"]["args"] == "--config ENV"
    # Each setting as the loader declares it: the same kind and default, so both see one config.
    loaders = {setting["name"]: setting for setting in loader["settings"]}
    assert all(setting == loaders[setting["name"]] for setting in utility["settings"])
    names = [setting["name"] for setting in utility["settings"]]
    assert names == sorted(names)
    project = yaml.safe_load((ROOT / "meltano.yml").read_text())
    [mirror] = [plugin for plugin in project["plugins"]["utilities"] if plugin["name"] == "klaviyo-mirror"]
    assert set(names) >= {setting["name"] for setting in mirror["settings"]}
    assert mirror["commands"]["apply"]["args"] == utility["commands"]["apply"]["args"]


def mirror_outcome(environ: dict[str, str]) -> tuple:
    """What target-klaviyo-mirror makes of an environment: the settings it uses (apply_mirror's
    load_config, main and apply), or the sentence it refuses the config with."""
    try:
        settings = load_config(None, environ)
    except RunError as error:
        return ("refused", str(error))
    return (
        settings.api_key,
        settings.api_url,
        settings.api_revision,
        settings.lists,
        settings.mirror,
        settings.mirror_plan_path,
        settings.report_path,
        settings.dry_run,
    )


def as_environment(config: dict, names: list[str]) -> dict[str, str]:
    """The named settings of a config as Meltano passes them to a plugin of namespace target_klaviyo."""
    return {
        f"TARGET_KLAVIYO_{name.upper()}": value if isinstance(value, str) else json.dumps(value)
        for name, value in config.items()
        if name in names
    }


def test_the_utilitys_settings_are_all_that_target_klaviyo_mirror_reads(tmp_path):
    """Given only the utility's settings, the mirror does what the loader's whole config says;
    without any one of them it does something else for one of two configs."""
    applies = {
        "api_key": "pk_hub_test",
        "api_url": "http://127.0.0.1:9",
        "api_revision": "2025-10-15",
        "list_id": "LIST01",
        "stream_lists": {"vip": "VIPS01"},
        "sync_mode": "mirror",
        "mirror_plan_path": str(tmp_path / "plans" / "plan.json"),
        "report_path": str(tmp_path / "report.json"),
        "dry_run": False,
        # The loader's other settings, none of them a default: the mirror must not depend on them.
        "email_property": "contact.email",
        "property_mapping": {"first_name": "FirstName"},
        "custom_properties": "none",
        "default_phone_region": "SE",
        "consent_property": "consent",
        "rejects_path": str(tmp_path / "rejects.jsonl"),
        "max_profiles_per_run": 10,
        "on_limit_exceeded": "truncate",
        "mirror_max_removal_fraction": 0.9,
        "max_jobs_in_flight": 2,
        "stop_grace_seconds": 5,
        "batch_size_rows": 100,
        "validate_records": False,
    }
    dry = {**applies, "dry_run": True}
    every = list(applies)
    names = [setting["name"] for setting in yaml.safe_load(UTILITY.read_text())["settings"]]
    for config in (applies, dry):
        assert mirror_outcome(as_environment(config, names)) == mirror_outcome(as_environment(config, every))
    assert mirror_outcome(as_environment(applies, names))[0] != "refused"
    for name in names:
        fewer = [other for other in names if other != name]
        assert any(
            mirror_outcome(as_environment(config, fewer)) != mirror_outcome(as_environment(config, names))
            for config in (applies, dry)
        ), f"target-klaviyo-mirror does not need {name}"
