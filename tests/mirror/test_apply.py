"""target-klaviyo-mirror's config: the loader's own, from a file or the environment Meltano gives it."""

from __future__ import annotations

import json

import pytest

from target_klaviyo.errors import RunError
from target_klaviyo.mirror.apply import load_config, main
from target_klaviyo.settings.settings import default_plan_path

KEY = "pk_test_never_shown_0123456789"


def test_the_environment_as_meltano_gives_it_to_a_utility_in_the_loaders_namespace():
    environ = {
        "TARGET_KLAVIYO_API_KEY": KEY,
        "TARGET_KLAVIYO_API_URL": "http://127.0.0.1:9",
        "TARGET_KLAVIYO_STREAM_LISTS": json.dumps({"vip": "VIPS01"}),
        "TARGET_KLAVIYO_SYNC_MODE": "mirror",
        # Meltano's own, beside them: an object setting key by key, the plugin's name, its extras.
        "TARGET_KLAVIYO_STREAM_LISTS_VIP": "VIPS01",
        "TARGET_KLAVIYO_SEGMENTS_LIST_ID": "XX",
        "TARGET_KLAVIYO__DIALECT": "target_klaviyo",
    }
    settings = load_config(None, environ)
    assert settings.lists == ["VIPS01"]
    assert settings.mirror_plan_path == default_plan_path("http://127.0.0.1:9", None, {"vip": "VIPS01"})
    assert load_config("ENV", environ) == settings


def test_the_plan_path_is_one_per_api_url_and_routing_of_streams_to_lists():
    same = default_plan_path("http://x", "L", {"b": "B", "a": "A"})
    assert same == default_plan_path("http://x", "L", {"a": "A", "b": "B"})
    assert default_plan_path("http://x", "A", {}) != default_plan_path("http://x", None, {"vip": "A"})
    assert default_plan_path("http://x", None, {"vip": "A"}) != default_plan_path(
        "http://x", None, {"c": "A"}
    )
    assert default_plan_path("http://x", "A", {}) != default_plan_path("http://y", "A", {})


@pytest.mark.parametrize(
    ("environ", "text"),
    [
        (
            {"TARGET_KLAVIYO_API_KEY": KEY, "TARGET_KLAVIYO_STREAM_LISTS": '{"vip": 5}'},
            "stream_lists.vip is not valid",
        ),
        (
            {
                "TARGET_KLAVIYO_API_KEY": KEY,
                "TARGET_KLAVIYO_LIST_ID": "L1",
                "TARGET_KLAVIYO_SYNC_MODE": "mirror",
                "TARGET_KLAVIYO_DRY_RUN": "true",
            },
            "dry_run, so target-klaviyo-mirror removes nobody",
        ),
        ({"TARGET_KLAVIYO_LIST_ID": "L1", "TARGET_KLAVIYO_SYNC_MODE": "mirror"}, "No API key"),
        ({"TARGET_KLAVIYO_API_KEY": KEY, "TARGET_KLAVIYO_LIST_ID": "L1"}, "sync_mode is not mirror"),
        (
            {"TARGET_KLAVIYO_API_KEY": KEY, "TARGET_KLAVIYO_STREAM_LISTS": "{not json"},
            "TARGET_KLAVIYO_STREAM_LISTS",
        ),
        ({"TARGET_KLAVIYO_API_KEY": KEY, "TARGET_KLAVIYO_SYNC_MODE": "mirror"}, "No Klaviyo list is set"),
    ],
)
def test_a_config_that_cannot_apply_a_plan_is_one_sentence(environ, text):
    with pytest.raises(RunError, match=text) as raised:
        load_config(None, environ)
    assert KEY not in str(raised.value)


@pytest.mark.parametrize(
    "bad",
    [
        {"list_id": 123},
        {"mirror_max_removal_fraction": "x"},
        {"api_url": 5},
        {"mirror_plan_path": 5},
        {"report_path": ["a"]},
        {"email_property": {}},
        {"property_mapping": "x"},
        {"custom_properties": 5},
        {"api_revision": 5},
        {"max_profiles_per_run": "x"},
        {"api_url": "http://[::1"},
        {"mirror_plan_path": "a\u0000b"},
        {"mirror_plan_path": "~nosuchuser/x.json"},
        {"report_path": "/tmp/" + "a" * 300 + ".json"},
        {"mirror_plan_path": "/tmp/" + "a" * 5000},
    ],
)
def test_a_config_file_of_any_shape_is_one_sentence(tmp_path, bad):
    config = {"api_key": KEY, "list_id": "L1", "sync_mode": "mirror", **bad}
    (tmp_path / "c.json").write_text(json.dumps(config))
    with pytest.raises(RunError) as raised:
        load_config(str(tmp_path / "c.json"), {})
    assert "\n" not in str(raised.value)
    assert KEY not in str(raised.value)


def test_deep_nesting_in_a_config_file_or_a_variable_is_one_sentence(tmp_path):
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(RunError, match="cannot be read as a JSON file"):
        load_config(str(tmp_path / "deep.json"), {})
    deep = {"TARGET_KLAVIYO_API_KEY": KEY, "TARGET_KLAVIYO_STREAM_LISTS": "[" * 100_000 + "]" * 100_000}
    with pytest.raises(RunError, match="TARGET_KLAVIYO_STREAM_LISTS"):
        load_config(None, deep)


def test_a_config_file_that_is_not_an_object_of_settings(tmp_path):
    (tmp_path / "c.json").write_text("[1]")
    with pytest.raises(RunError, match="does not hold a JSON object of settings"):
        load_config(str(tmp_path / "c.json"), {})
    with pytest.raises(RunError, match="cannot be read as a JSON file"):
        load_config(str(tmp_path / "missing.json"), {})


def test_version(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith("target-klaviyo-mirror ")
