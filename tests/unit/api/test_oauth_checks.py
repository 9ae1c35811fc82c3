"""The pure checks behind sign-in with OpenID providers: return paths, issuers, endpoints and
the settings that enable a provider."""

from __future__ import annotations

import pytest

from api.identity.oauth import check_next_path
from api.identity.oidc import (
    InvalidNext,
    OAuthProviderError,
    check_endpoint,
    expected_issuers,
    is_true,
    provider_configs,
)
from core.errors import ConfigError
from core.settings import is_loopback_host, load_settings
from tests.conftest import SettingsFactory

TENANT = "9188040d-6c67-4c5b-b112-36a304b66dad"
MICROSOFT = "https://login.microsoftonline.com/{tenantid}/v2.0"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("", "/"), ("/", "/"), ("/portal?tab=files#top", "/portal?tab=files#top"), ("/a/b", "/a/b")],
)
def test_next_path_on_this_site_is_kept(value: str, expected: str) -> None:
    assert check_next_path(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "//evil.example",
        "///evil.example",
        "/\\evil.example",
        "\\\\evil.example",
        "https://evil.example/",
        "javascript:alert(1)",
        "portal",
        "/ok\n/x",
        "/ok\x7f",
        "/" + "a" * 2000,
    ],
)
def test_next_path_elsewhere_is_refused(value: str) -> None:
    with pytest.raises(InvalidNext) as refused:
        check_next_path(value)
    assert (refused.value.status, refused.value.code) == (422, "invalid_next")


def test_tenant_template_takes_the_tokens_own_tenant() -> None:
    assert expected_issuers(MICROSOFT, {"tid": TENANT}) == (
        f"https://login.microsoftonline.com/{TENANT}/v2.0",
    )
    assert expected_issuers(MICROSOFT, {}) == ()
    assert expected_issuers(MICROSOFT, {"tid": "x/../other"}) == ()
    assert expected_issuers(MICROSOFT, {"tid": 7}) == ()


def test_fixed_issuers_and_googles_legacy_form() -> None:
    assert expected_issuers("https://www.linkedin.com/oauth", {"tid": TENANT}) == (
        "https://www.linkedin.com/oauth",
    )
    assert expected_issuers("https://accounts.google.com", {}) == (
        "https://accounts.google.com",
        "accounts.google.com",
    )


@pytest.mark.parametrize(
    "url",
    [
        "https://idp.example/token",
        "http://127.0.0.1:8000/token",
        "http://[::1]:8000/token",
        "http://localhost/token",
    ],
)
def test_https_or_loopback_endpoints_pass(url: str) -> None:
    assert check_endpoint(url) == url


@pytest.mark.parametrize(
    "url", ["http://idp.example/token", "http://10.0.0.1/token", "ftp://idp.example/", "https:///x"]
)
def test_other_endpoints_are_the_providers_error(url: str) -> None:
    with pytest.raises(OAuthProviderError) as refused:
        check_endpoint(url)
    assert refused.value.reason == "insecure_endpoint"


def test_loopback_hosts() -> None:
    assert [is_loopback_host(h) for h in ("127.0.0.2", "::1", "LOCALHOST", "10.0.0.1", "x")] == [
        True,
        True,
        True,
        False,
        False,
    ]


def test_booleans_may_come_as_strings() -> None:
    assert [is_true(v) for v in (True, "true", "True", False, "false", 1, None)] == [
        True,
        True,
        True,
        False,
        False,
        False,
        False,
    ]


def test_a_provider_is_enabled_by_its_client_id(make_settings: SettingsFactory) -> None:
    assert provider_configs(make_settings()) == ()
    settings = make_settings(
        oauth_linkedin_client_id=" linkedin-id ",
        oauth_linkedin_client_secret="linkedin-secret",
        oauth_google_client_id="",
        oauth_google_client_secret="",
    )
    [linkedin] = provider_configs(settings)
    assert (linkedin.name, linkedin.client_id, linkedin.client_secret) == (
        "linkedin",
        "linkedin-id",
        "linkedin-secret",
    )
    assert linkedin.discovery_url == (
        "https://www.linkedin.com/oauth/.well-known/openid-configuration"
    )
    assert "linkedin-secret" not in repr(linkedin)
    assert settings.redacted()["oauth_linkedin_client_secret"] == "**********"


def test_a_client_id_without_its_secret_stops_start_up() -> None:
    with pytest.raises(ConfigError, match="OAUTH_GOOGLE_CLIENT_SECRET must be set"):
        load_settings(_env_file=None, oauth_google_client_id="google-id")


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://accounts.example/.well-known/openid-configuration", "must be https"),
        ("accounts.example/.well-known", "no scheme"),
        ("https:///.well-known", "no host"),
    ],
)
def test_discovery_url_must_be_https(url: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem) as refused:
        load_settings(_env_file=None, oauth_microsoft_discovery_url=url)
    assert refused.value.setting == "OAUTH_MICROSOFT_DISCOVERY_URL"
