import pytest

from target_klaviyo.settings import MAPPABLE_ATTRIBUTES, Settings, SettingsError

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
    with pytest.raises(SettingsError, match="list_id must not be empty"):
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
