import os

import pytest

from target_klaviyo.run.report import RunReport
from target_klaviyo.settings.schema import MAPPABLE_ATTRIBUTES
from target_klaviyo.settings.settings import Settings, SettingsError

BASE = {"api_key": "pk_x", "list_id": "L1"}


def test_defaults():
    settings = Settings.from_config(BASE)
    assert settings.email_path == ("email",)
    assert settings.custom_properties == "unmapped"
    assert settings.max_profiles == 100_000
    assert settings.on_limit_exceeded == "fail"
    assert settings.api_url == "https://a.klaviyo.com"
    assert settings.api_revision == "2026-07-15"
    assert settings.rejects_path is None
    assert settings.dry_run is False


def test_paths_are_split_on_dots():
    settings = Settings.from_config(
        {**BASE, "email_property": "contact.email", "property_mapping": {"location.city": "Address.City"}}
    )
    assert settings.email_path == ("contact", "email")
    assert settings.attribute_paths == {"location.city": ("Address", "City")}


def test_unknown_mapping_key_is_named():
    with pytest.raises(
        SettingsError, match=r"property_mapping has unknown Klaviyo attribute\(s\) email_address"
    ):
        Settings.from_config({**BASE, "property_mapping": {"email_address": "Email", "first_name": "F"}})


def test_every_documented_attribute_is_accepted():
    mapping = dict.fromkeys(MAPPABLE_ATTRIBUTES, "x")
    assert set(Settings.from_config({**BASE, "property_mapping": mapping}).attribute_paths) == set(mapping)


@pytest.mark.parametrize("path", ["", "a..b", ".a", "a."])
def test_malformed_path_is_refused(path):
    with pytest.raises(SettingsError, match="email_property"):
        Settings.from_config({**BASE, "email_property": path})


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080", "http://localhost:1", "http://[::1]:9", "https://a.klaviyo.com/"]
)
def test_loopback_or_https_urls_are_allowed(url):
    assert Settings.from_config({**BASE, "api_url": url}).api_url == url.rstrip("/")


@pytest.mark.parametrize("url", ["http://a.klaviyo.com", "http://10.0.0.5:8080", "http://localhost.evil.com"])
def test_clear_text_to_another_host_is_refused(url):
    with pytest.raises(SettingsError, match="api_url must use https://"):
        Settings.from_config({**BASE, "api_url": url})


def test_non_http_url_is_refused():
    with pytest.raises(SettingsError, match="not an http"):
        Settings.from_config({**BASE, "api_url": "ftp://a.klaviyo.com"})


def test_blank_list_id_is_refused():
    with pytest.raises(SettingsError, match="list_id '' is not a Klaviyo list id"):
        Settings.from_config({**BASE, "list_id": "  "})


@pytest.mark.parametrize(
    ("value", "expected"),
    [("unmapped", "unmapped"), ("none", "none"), (["a", "b"], ("a", "b")), ('["a", "b"]', ("a", "b"))],
)
def test_custom_properties_forms(value, expected):
    assert Settings.from_config({**BASE, "custom_properties": value}).custom_properties == expected


@pytest.mark.parametrize("value", ["all", '{"a": 1}', "[1, 2]"])
def test_custom_properties_nonsense_is_named(value):
    with pytest.raises(SettingsError, match="custom_properties must be"):
        Settings.from_config({**BASE, "custom_properties": value})


def test_nested_location_mapping_as_meltano_writes_it():
    settings = Settings.from_config(
        {**BASE, "property_mapping": {"location": {"city": "A.City"}, "title": "Job"}}
    )
    assert settings.attribute_paths == {"location.city": ("A", "City"), "title": ("Job",)}


# Everything that can be checked before input is read


def target_error(config: dict, env: dict[str, str] | None = None, monkeypatch=None) -> str:
    """The one sentence the target refuses this configuration with."""
    from singer_sdk.exceptions import ConfigValidationError

    from target_klaviyo.target import TargetKlaviyo

    if env:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
    with pytest.raises(ConfigValidationError) as caught:
        TargetKlaviyo(config=config, parse_env_config=bool(env))
    errors = caught.value.errors
    assert len(errors) == 1, errors
    return errors[0]


@pytest.mark.parametrize(
    ("typo", "suggestion"), [("dryrun", "dry_run"), ("on_limit_exceded", "on_limit_exceeded")]
)
def test_an_unknown_setting_is_an_error_that_suggests_the_closest(typo, suggestion):
    message = target_error({**BASE, typo: True})
    assert message == f"There is no setting {typo!r}; did you mean {suggestion!r}?"


@pytest.mark.parametrize("rows", [0, -1, 10_001])
def test_batch_size_rows_is_between_1_and_10000(rows):
    assert "config['batch_size_rows']" in target_error({**BASE, "batch_size_rows": rows})


@pytest.mark.parametrize("list_id", ["a/b", "x?y=1", "", "L 1", "L\n1"])
def test_list_ids_of_an_unsafe_form_are_refused(list_id):
    with pytest.raises(SettingsError, match="is not a Klaviyo list id"):
        Settings.from_config({**BASE, "list_id": list_id})


@pytest.mark.parametrize("revision", ["2026-07-15\r\nX-Evil: 1", "2026-07-1\u0665", "latest"])
def test_revisions_of_an_unsafe_form_are_refused(revision):
    with pytest.raises(SettingsError, match="is not a Klaviyo API revision"):
        Settings.from_config({**BASE, "api_revision": revision})


def test_a_port_out_of_range_is_refused():
    with pytest.raises(SettingsError, match="has a port that is not a number from 1 to 65535"):
        Settings.from_config({**BASE, "api_url": "http://127.0.0.1:99999"})


@pytest.mark.parametrize("key", ["pk_abc\n", "pk_abc\r\n", "  pk_abc  "])
def test_whitespace_around_the_key_is_trimmed(key):
    assert Settings.from_config({**BASE, "api_key": key}).api_key == "pk_abc"


@pytest.mark.parametrize("key", ["pk_a\nb_secret", "pk_\u00e9secret", "pk a secret", "\x00"])
def test_a_key_that_cannot_be_a_header_is_refused_without_being_shown(key):
    with pytest.raises(SettingsError) as caught:
        Settings.from_config({**BASE, "api_key": key})
    assert "its value is not shown because it is secret" in str(caught.value)
    assert "secret" not in str(caught.value).replace("is secret", "")


def test_output_paths_are_checked_and_their_folders_left_to_their_writers(tmp_path):
    nested = tmp_path / "a" / "b" / "rejects.jsonl"
    assert Settings.from_config({**BASE, "rejects_path": str(nested)}).rejects_path == nested
    assert not (tmp_path / "a").exists(), "checking a setting creates nothing"
    with pytest.raises(SettingsError, match=r"report_path .* is a folder; name a file in it"):
        Settings.from_config({**BASE, "report_path": str(tmp_path)})
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(
        SettingsError, match=r"rejects_path: the folder .* cannot be created \(Not a directory\)"
    ):
        Settings.from_config({**BASE, "rejects_path": str(blocker / "rejects.jsonl")})
    with pytest.raises(
        SettingsError, match=r"rejects_path: the folder .* cannot be created \(Not a directory\)"
    ):
        Settings.from_config({**BASE, "rejects_path": str(blocker / "deeper" / "rejects.jsonl")})


def test_output_folders_are_created_private_by_their_writer_whatever_the_umask(tmp_path):
    settings = Settings.from_config({**BASE, "rejects_path": str(tmp_path / "a" / "b" / "rejects.jsonl")})
    report = RunReport(settings.rejects_path)
    old = os.umask(0)
    try:
        report.start_rejects()
    finally:
        os.umask(old)
        report.close()
    assert [(tmp_path / p).stat().st_mode & 0o777 for p in ("a", "a/b")] == [0o700, 0o700]


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write to any folder")
def test_an_output_folder_this_user_cannot_create_is_named(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(
        SettingsError, match=r"report_path: the folder .* cannot be created \(Permission denied\)"
    ):
        Settings.from_config({**BASE, "report_path": str(locked / "new" / "report.json")})
    with pytest.raises(SettingsError, match=r"report_path .* cannot be written by this user"):
        Settings.from_config({**BASE, "report_path": str(locked / "report.json")})


def test_an_output_folder_whose_name_is_too_long_or_a_dangling_link_is_named(tmp_path):
    long_name = "x" * (os.pathconf(tmp_path, "PC_NAME_MAX") + 1)
    with pytest.raises(SettingsError, match=r"report_path.* cannot be (created|used) \(File name too long\)"):
        Settings.from_config({**BASE, "report_path": str(tmp_path / long_name / "report.json")})
    (tmp_path / "gone").symlink_to(tmp_path / "nowhere")
    with pytest.raises(SettingsError, match=r"report_path: the folder .* cannot be created \(File exists\)"):
        Settings.from_config({**BASE, "report_path": str(tmp_path / "gone" / "report.json")})
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.parametrize("value", [5, [1, 2], {"a": "b"}])
def test_custom_properties_of_the_wrong_type_is_one_sentence(value):
    assert "custom_properties" in target_error({**BASE, "custom_properties": value})


# Environment variables are parsed the way a config file is


def test_environment_text_or_list_stays_text_unless_it_is_a_json_array(monkeypatch):
    from target_klaviyo.target import TargetKlaviyo

    monkeypatch.setenv("TARGET_KLAVIYO_API_KEY", "pk_env")
    monkeypatch.setenv("TARGET_KLAVIYO_LIST_ID", "L1")
    monkeypatch.setenv("TARGET_KLAVIYO_CUSTOM_PROPERTIES", "unmapped")
    assert TargetKlaviyo(config={}, parse_env_config=True).settings.custom_properties == "unmapped"
    monkeypatch.setenv("TARGET_KLAVIYO_CUSTOM_PROPERTIES", '["plan", "ltv"]')
    assert TargetKlaviyo(config={}, parse_env_config=True).settings.custom_properties == ("plan", "ltv")


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("TARGET_KLAVIYO_DRY_RUN", "ture", "TARGET_KLAVIYO_DRY_RUN must be true or false."),
        (
            "TARGET_KLAVIYO_MAX_PROFILES_PER_RUN",
            "lots",
            "TARGET_KLAVIYO_MAX_PROFILES_PER_RUN must be a whole number.",
        ),
        (
            "TARGET_KLAVIYO_PROPERTY_MAPPING",
            "{first_name: X}",
            "TARGET_KLAVIYO_PROPERTY_MAPPING must be a JSON object.",
        ),
    ],
)
def test_environment_values_that_do_not_parse_are_one_sentence(monkeypatch, name, value, words):
    assert (
        target_error(
            {}, {"TARGET_KLAVIYO_API_KEY": "k", "TARGET_KLAVIYO_LIST_ID": "L1", name: value}, monkeypatch
        )
        == words
    )


def test_environment_booleans_are_true_or_false(monkeypatch):
    from target_klaviyo.target import TargetKlaviyo

    monkeypatch.setenv("TARGET_KLAVIYO_API_KEY", "k")
    monkeypatch.setenv("TARGET_KLAVIYO_LIST_ID", "L1")
    monkeypatch.setenv("TARGET_KLAVIYO_DRY_RUN", " TRUE ")
    assert TargetKlaviyo(config={}, parse_env_config=True).settings.dry_run is True


def test_a_misspelt_environment_variable_is_an_error_that_suggests_the_closest(monkeypatch):
    env = {"TARGET_KLAVIYO_API_KEY": "k", "TARGET_KLAVIYO_LIST_ID": "L1", "TARGET_KLAVIYO_DRYRUN": "true"}
    message = target_error({}, env, monkeypatch)
    assert message == "There is no setting 'TARGET_KLAVIYO_DRYRUN'; did you mean 'TARGET_KLAVIYO_DRY_RUN'?"


def test_output_paths_that_are_links_special_files_or_the_same_file_are_refused(tmp_path):
    (tmp_path / "target.json").write_text("")
    (tmp_path / "link.json").symlink_to(tmp_path / "target.json")
    with pytest.raises(SettingsError, match="is a link or a special file"):
        Settings.from_config({**BASE, "report_path": str(tmp_path / "link.json")})
    with pytest.raises(SettingsError, match="is a link or a special file"):
        Settings.from_config({**BASE, "report_path": "/dev/null"})
    same = str(tmp_path / "out.json")
    with pytest.raises(SettingsError, match="name the same file"):
        Settings.from_config({**BASE, "report_path": same, "rejects_path": same})


@pytest.mark.parametrize("suffix", ["", "-wal", "-shm", "-journal", ".locks"])
def test_an_output_that_is_one_of_the_ledgers_files_is_refused(tmp_path, suffix):
    """Found by the second hostile review of issue 16: SQLite deleted a report named like its -wal file."""
    ledger = tmp_path / "ledger.sqlite"
    config = {**BASE, "ledger_path": str(ledger), "report_path": f"{ledger}{suffix}"}
    with pytest.raises(SettingsError, match=r"^report_path and ledger_path.* name the same file"):
        Settings.from_config(config)


def test_an_empty_ledger_path_is_one_sentence():
    """Found by the second hostile review of issue 16 (an empty TARGET_KLAVIYO_LEDGER_PATH)."""
    with pytest.raises(
        SettingsError, match=r"^ledger_path is empty: name the ledger's file .*use_ledger to false\.$"
    ):
        Settings.from_config({**BASE, "ledger_path": ""})


def test_port_zero_is_refused():
    with pytest.raises(SettingsError, match="has a port that is not a number from 1 to 65535"):
        Settings.from_config({**BASE, "api_url": "http://127.0.0.1:0"})


@pytest.mark.parametrize("region", ["XX", "Sweden", "", "001"])
def test_default_phone_region_must_be_a_country_with_phone_numbers(region):
    with pytest.raises(SettingsError, match="default_phone_region must be a two-letter country code"):
        Settings.from_config({"api_key": "k", "list_id": "L", "default_phone_region": region})


def test_default_phone_region_is_upper_case_and_optional():
    assert (
        Settings.from_config(
            {"api_key": "k", "list_id": "L", "default_phone_region": " se "}
        ).default_phone_region
        == "SE"
    )
    assert Settings.from_config({"api_key": "k", "list_id": "L"}).default_phone_region is None


def test_a_list_must_be_set_somewhere():
    with pytest.raises(SettingsError, match="No Klaviyo list is set: set list_id, or stream_lists"):
        Settings.from_config({"api_key": "k"})


def test_stream_lists_ids_are_checked_and_named():
    with pytest.raises(SettingsError, match=r"stream_lists\.vip 'no way' is not a Klaviyo list id"):
        Settings.from_config({"api_key": "k", "stream_lists": {"vip": "no way"}})
    settings = Settings.from_config({"api_key": "k", "list_id": "L", "stream_lists": {"vip": "V", "x": "L"}})
    assert settings.lists == ["L", "V"]
    assert settings.list_for("vip") == "V"
    assert settings.list_for("other") == "L"


def test_mirror_and_consent_settings():
    settings = Settings.from_config(
        {"api_key": "k", "list_id": "L", "sync_mode": "mirror", "consent_property": "gdpr.marketing"}
    )
    assert settings.mirror
    assert settings.max_removal_fraction == 0.5
    assert settings.consent_path == ("gdpr", "marketing")
    assert not Settings.from_config({"api_key": "k", "list_id": "L"}).mirror
    with pytest.raises(SettingsError, match="consented_at_property is set without consent_property"):
        Settings.from_config({"api_key": "k", "list_id": "L", "consented_at_property": "at"})
    with pytest.raises(SettingsError, match=r"consent_property 'a\.\.b' is not a property path"):
        Settings.from_config({"api_key": "k", "list_id": "L", "consent_property": "a..b"})


def test_mirror_scope_is_synced_with_the_ledger_and_list_without_it():
    base = {"api_key": "k", "list_id": "L", "sync_mode": "mirror"}
    assert Settings.from_config(base).mirror_scope == "synced"
    assert Settings.from_config({**base, "use_ledger": False}).mirror_scope == "list"
    assert Settings.from_config({**base, "mirror_scope": "list"}).mirror_scope == "list"
    with pytest.raises(
        SettingsError, match=r"^mirror_scope synced removes only .* set mirror_scope to list .*\.$"
    ):
        Settings.from_config({**base, "use_ledger": False, "mirror_scope": "synced"})
