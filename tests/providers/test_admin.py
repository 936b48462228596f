"""Who may point a provider where, and what the admin's history says about it."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.admin.models import ADDITION, CHANGE, LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from django.utils.html import escape

from providers import registry
from providers.models import ProviderConfig, ProviderKey

pytestmark = pytest.mark.django_db

SECRET = "sk-acme-very-secret-upstream-key"
OTHER_SECRET = "sk-acme-second-secret-upstream-key"
NEW_SECRET = "sk-acme-key-entered-for-the-new-url"
ALL_SECRETS = (SECRET, OTHER_SECRET, NEW_SECRET)


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def staff_client(*codenames: str) -> Client:
    """A signed-in staff user holding only the named permissions."""
    user = get_user_model().objects.create_user("staff", password="a-password", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


STOCK_PERMISSIONS = (
    "view_providerconfig",
    "add_providerconfig",
    "change_providerconfig",
    "delete_providerconfig",
    "view_providerkey",
    "add_providerkey",
    "change_providerkey",
    "delete_providerkey",
)


@pytest.fixture
def provider() -> ProviderConfig:
    config = ProviderConfig.objects.create(name="acme", base_url="http://127.0.0.1:9/v1")
    for label, secret in (("primary", SECRET), ("backup", OTHER_SECRET)):
        key = ProviderKey(provider=config, label=label)
        key.set_key(secret)
        key.save()
    return config


def add_url() -> str:
    return reverse("admin:providers_providerconfig_add")


def change_url(config: ProviderConfig) -> str:
    return reverse("admin:providers_providerconfig_change", args=[config.pk])


def new_provider_form(**fields: Any) -> dict[str, Any]:
    return {
        "name": "acme",
        "protocol": "openai",
        "base_url": "http://127.0.0.1:9/v1",
        "is_active": "on",
        "keys-TOTAL_FORMS": "1",
        "keys-INITIAL_FORMS": "0",
        "keys-MIN_NUM_FORMS": "0",
        "keys-MAX_NUM_FORMS": "1000",
        "keys-0-label": "primary",
        "keys-0-api_key": SECRET,
        "keys-0-weight": "1",
        "keys-0-is_active": "on",
    } | fields


def edit_form(config: ProviderConfig, *, api_keys: dict[str, str] | None = None, **fields: Any):
    """The change form as the browser sends it, key fields left empty unless given by label."""
    api_keys = api_keys or {}
    data: dict[str, Any] = {
        "name": config.name,
        "protocol": config.protocol,
        "base_url": config.base_url,
        "is_active": "on",
        "keys-MIN_NUM_FORMS": "0",
        "keys-MAX_NUM_FORMS": "1000",
    }
    keys = list(config.keys.order_by("pk"))
    for i, key in enumerate(keys):
        data |= {
            f"keys-{i}-id": str(key.pk),
            f"keys-{i}-provider": str(config.pk),
            f"keys-{i}-label": key.label,
            f"keys-{i}-api_key": api_keys.get(key.label, ""),
            f"keys-{i}-weight": str(key.weight),
            f"keys-{i}-is_active": "on",
        }
    data |= {"keys-TOTAL_FORMS": str(len(keys)), "keys-INITIAL_FORMS": str(len(keys))}
    return data | fields


def with_new_key(data: dict[str, Any], label: str, secret: str) -> dict[str, Any]:
    i = int(data["keys-TOTAL_FORMS"])
    return data | {
        f"keys-{i}-label": label,
        f"keys-{i}-api_key": secret,
        f"keys-{i}-weight": "1",
        f"keys-{i}-is_active": "on",
        "keys-TOTAL_FORMS": str(i + 1),
    }


def stored_keys(config: ProviderConfig) -> dict[str, str | None]:
    return {key.label: key.get_key() for key in config.keys.all()}


def history_text() -> str:
    return " ".join(
        f"{entry.object_repr} {entry.change_message} {entry.get_change_message()}"
        for entry in LogEntry.objects.all()
    )


# --- Who may write -----------------------------------------------------------------------------


def test_staff_with_the_stock_change_permission_cannot_repoint_a_provider(provider):
    client = staff_client(*STOCK_PERMISSIONS)
    data = edit_form(provider, base_url="https://collector.example.com/v1")
    response = client.post(change_url(provider), data)
    assert response.status_code == 403
    provider.refresh_from_db()
    assert provider.base_url == "http://127.0.0.1:9/v1"
    assert stored_keys(provider) == {"primary": SECRET, "backup": OTHER_SECRET}


def test_staff_with_the_stock_change_permission_cannot_replace_a_key(provider):
    client = staff_client(*STOCK_PERMISSIONS)
    response = client.post(change_url(provider), edit_form(provider, api_keys={"primary": "x"}))
    assert response.status_code == 403
    assert stored_keys(provider)["primary"] == SECRET


def test_staff_with_the_stock_permissions_sees_a_provider_read_only(provider):
    client = staff_client(*STOCK_PERMISSIONS)
    response = client.get(change_url(provider))
    assert response.status_code == 200
    html = response.content.decode()
    assert "http://127.0.0.1:9/v1" in html and "primary" in html
    assert 'name="base_url"' not in html
    assert 'name="keys-0-api_key"' not in html
    assert SECRET not in html
    assert provider.keys.first().encrypted_key not in html


def test_staff_with_the_stock_add_permission_cannot_add_a_provider():
    client = staff_client(*STOCK_PERMISSIONS)
    assert client.get(add_url()).status_code == 403
    assert client.post(add_url(), new_provider_form()).status_code == 403
    assert not ProviderConfig.objects.exists()


def test_staff_with_the_stock_delete_permission_cannot_delete_a_provider(provider):
    client = staff_client(*STOCK_PERMISSIONS)
    url = reverse("admin:providers_providerconfig_delete", args=[provider.pk])
    assert client.post(url, {"post": "yes"}).status_code == 403
    assert ProviderConfig.objects.filter(pk=provider.pk).exists()


def test_holder_of_the_credentials_permission_can_add_a_provider_with_keys():
    client = staff_client("manage_provider_credentials")
    response = client.post(add_url(), new_provider_form())
    assert response.status_code == 302, response.content
    assert stored_keys(ProviderConfig.objects.get(name="acme")) == {"primary": SECRET}


def test_holder_of_the_credentials_permission_can_repoint_a_provider(provider):
    client = staff_client("manage_provider_credentials")
    data = edit_form(provider, base_url="https://api.example.com/v1")
    response = client.post(change_url(provider), data)
    assert response.status_code == 302, response.content
    provider.refresh_from_db()
    assert provider.base_url == "https://api.example.com/v1"


# --- Repointing drops the stored keys ---------------------------------------------------------


def test_changing_the_base_url_deletes_the_stored_keys(admin_client, provider):
    data = edit_form(provider, base_url="https://collector.example.com/v1")
    response = admin_client.post(change_url(provider), data, follow=True)
    assert response.status_code == 200
    assert not provider.keys.exists()
    notes = [str(message) for message in response.context["messages"]]
    assert any("stored keys were deleted (backup, primary)" in note for note in notes), notes
    assert registry.get_provider("acme").keys == ()  # type: ignore[union-attr]


def test_changing_the_protocol_deletes_the_stored_keys(admin_client, provider):
    response = admin_client.post(change_url(provider), edit_form(provider, protocol="anthropic"))
    assert response.status_code == 302, response.content
    assert not provider.keys.exists()


def test_keys_entered_again_with_the_new_base_url_are_kept(admin_client, provider):
    data = edit_form(
        provider, base_url="https://api.example.com/v1", api_keys={"primary": NEW_SECRET}
    )
    response = admin_client.post(change_url(provider), data)
    assert response.status_code == 302, response.content
    assert stored_keys(provider) == {"primary": NEW_SECRET}


def test_a_key_added_with_the_new_base_url_is_kept(admin_client, provider):
    data = with_new_key(
        edit_form(provider, base_url="https://api.example.com/v1"), "new", NEW_SECRET
    )
    response = admin_client.post(change_url(provider), data)
    assert response.status_code == 302, response.content
    assert stored_keys(provider) == {"new": NEW_SECRET}


def test_other_changes_keep_the_stored_keys(admin_client, provider):
    response = admin_client.post(change_url(provider), edit_form(provider, is_active=""))
    assert response.status_code == 302, response.content
    assert stored_keys(provider) == {"primary": SECRET, "backup": OTHER_SECRET}


def test_change_form_says_that_a_new_base_url_drops_the_keys(admin_client, provider):
    html = admin_client.get(change_url(provider)).content.decode()
    assert "deletes the stored keys, unless they are entered again" in html


# --- Environment provider names ----------------------------------------------------------------


def test_a_provider_named_like_an_environment_provider_needs_the_override_box(admin_client):
    response = admin_client.post(add_url(), new_provider_form(name="openai"))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "is also an environment provider" in errors["override_environment_provider"][0]
    assert not ProviderConfig.objects.exists()
    assert registry.get_provider("openai").base_url == "http://127.0.0.1:9/v1"  # type: ignore[union-attr]


def test_a_ticked_override_box_lets_the_admin_provider_take_the_name(admin_client):
    data = new_provider_form(
        name="openai", base_url="https://openai.internal/v1", override_environment_provider="on"
    )
    response = admin_client.post(add_url(), data)
    assert response.status_code == 302, response.content
    entry = registry.get_provider("openai")
    assert entry is not None
    assert (entry.base_url, entry.secrets) == ("https://openai.internal/v1", (SECRET,))


def test_renaming_a_provider_to_an_environment_name_needs_the_override_box(admin_client, provider):
    response = admin_client.post(change_url(provider), edit_form(provider, name="groq"))
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["override_environment_provider"]
    provider.refresh_from_db()
    assert provider.name == "acme"


def test_an_overriding_provider_is_edited_without_asking_again(admin_client):
    config = ProviderConfig.objects.create(name="openai", base_url="https://openai.internal/v1")
    response = admin_client.post(change_url(config), edit_form(config, is_active=""))
    assert response.status_code == 302, response.content


def test_add_form_explains_the_override_box(admin_client):
    html = admin_client.get(add_url()).content.decode()
    assert "Override the environment provider" in html
    assert "takes all of its traffic" in html


# --- History -----------------------------------------------------------------------------------


def test_history_records_who_added_a_provider_and_its_keys_without_secrets():
    client = staff_client("manage_provider_credentials")
    client.post(add_url(), new_provider_form())
    entry = LogEntry.objects.get()
    assert (entry.user.username, entry.action_flag, entry.object_repr) == (
        "staff",
        ADDITION,
        "acme",
    )
    assert "Added provider key “acme: primary”" in entry.get_change_message()
    assert all(secret not in history_text() for secret in ALL_SECRETS)


def test_history_records_the_repointing_and_the_dropped_keys_without_secrets(
    admin_client, provider
):
    data = edit_form(
        provider, base_url="https://api.example.com/v1", api_keys={"primary": NEW_SECRET}
    )
    admin_client.post(change_url(provider), data)
    entry = LogEntry.objects.get()
    assert (entry.user.username, entry.action_flag) == ("admin", CHANGE)
    message = entry.get_change_message()
    assert "Changed Base URL." in message
    assert "Changed API key for provider key “acme: primary”." in message
    assert "Deleted provider key “acme: backup”." in message
    assert all(secret not in history_text() for secret in ALL_SECRETS)
    assert provider.keys.get().encrypted_key not in history_text()


# --- Keys are stored encrypted and never shown -------------------------------------------------


def test_provider_with_inline_key_stores_the_key_encrypted(admin_client):
    raw = SECRET
    response = admin_client.post(add_url(), new_provider_form(**{"keys-0-weight": "3"}))
    assert response.status_code == 302, response.content
    stored = ProviderKey.objects.get(provider__name="acme")
    assert stored.encrypted_key != raw
    assert raw not in stored.encrypted_key
    assert stored.get_key() == raw
    assert stored.weight == 3


def test_provider_change_page_never_shows_the_raw_key(admin_client):
    raw = SECRET
    admin_client.post(add_url(), new_provider_form())
    provider = ProviderConfig.objects.get(name="acme")
    response = admin_client.get(change_url(provider))
    assert response.status_code == 200
    html = response.content.decode()
    assert "primary" in html
    assert raw not in html
    assert provider.keys.get().encrypted_key not in html


def test_new_provider_key_without_api_key_is_refused(admin_client):
    response = admin_client.post(add_url(), new_provider_form(**{"keys-0-api_key": ""}))
    assert response.status_code == 200
    assert not ProviderConfig.objects.exists()
    assert not ProviderKey.objects.exists()


def test_saving_a_provider_key_with_empty_api_key_keeps_the_current_key(admin_client):
    raw = SECRET
    admin_client.post(add_url(), new_provider_form())
    provider = ProviderConfig.objects.get(name="acme")
    stored = provider.keys.get()
    data = new_provider_form(
        **{
            "keys-INITIAL_FORMS": "1",
            "keys-0-id": str(stored.pk),
            "keys-0-provider": str(provider.pk),
            "keys-0-api_key": "",
            "keys-0-weight": "5",
        }
    )
    url = change_url(provider)
    response = admin_client.post(url, data)
    assert response.status_code == 302, response.content
    stored.refresh_from_db()
    assert (stored.get_key(), stored.weight) == (raw, 5)


# --- Environment providers, shown read-only ------------------------------------------------------


def test_providers_page_shows_the_environment_providers_without_their_keys(admin_client):
    response = admin_client.get(reverse("admin:providers_providerconfig_changelist"))
    assert response.status_code == 200
    rows = {row.name: row for row in response.context["environment_providers"]}
    assert set(rows) == {"openai", "anthropic"}  # what tests/conftest.py exports
    assert rows["openai"].base_url == "http://127.0.0.1:9/v1" and rows["openai"].has_key
    html = response.content.decode()
    assert "From the environment (read-only)" in html
    assert "<td><code>http://127.0.0.1:9/v1</code></td>" in html
    assert "sk-upstream-openai-secret" not in html
    assert "sk-ant-upstream-secret" not in html
    assert html.count("<td>••••••••</td>") == 2


def test_environment_provider_without_a_key_says_so(admin_client, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    html = admin_client.get(reverse("admin:providers_providerconfig_changelist")).content.decode()
    assert "<td>anthropic</td>" in html
    assert "<td>none</td>" in html


def test_environment_provider_base_url_hides_credentials_in_it(admin_client, monkeypatch):
    monkeypatch.setenv("VLLM_BASE_URL", "http://user:pa55word@127.0.0.1:8000/v1?api-key=s3cret&x")
    html = admin_client.get(reverse("admin:providers_providerconfig_changelist")).content.decode()
    assert "pa55word" not in html and "s3cret" not in html
    assert escape("http://••••••••@127.0.0.1:8000/v1?api-key=••••••••&x") in html


def test_environment_provider_overridden_by_an_active_admin_provider_says_so(admin_client):
    ProviderConfig.objects.create(name="openai", base_url="http://127.0.0.1:9/v2")
    ProviderConfig.objects.create(name="anthropic", base_url="http://127.0.0.1:9", is_active=False)
    response = admin_client.get(reverse("admin:providers_providerconfig_changelist"))
    rows = {row.name: row.overridden for row in response.context["environment_providers"]}
    assert rows == {"openai": True, "anthropic": False}
    assert "no: the admin provider of this name overrides it" in response.content.decode()


def test_environment_providers_are_shown_to_staff_who_may_only_look():
    client = staff_client("view_providerconfig")
    response = client.get(reverse("admin:providers_providerconfig_changelist"))
    assert response.status_code == 200
    assert {row.name for row in response.context["environment_providers"]} == {
        "openai",
        "anthropic",
    }
