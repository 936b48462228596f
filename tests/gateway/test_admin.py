from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.admin.models import ADDITION, CHANGE, LogEntry
from django.contrib.messages import get_messages
from django.contrib.sessions.models import Session
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from gateway.access.keys import hash_key
from gateway.access.models import VirtualKey
from jobs.models import AsyncJob, JobStatus, RequestType
from providers.models import ProviderConfig
from tests.factories import AsyncJobFactory, VirtualKeyFactory

pytestmark = pytest.mark.django_db

RAW_KEY = re.compile(r"sk-bf-[A-Za-z0-9_-]{20,}")


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    """``admin_client`` creates a superuser; PBKDF2 would make every test here take a second."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def changelist(model: str) -> str:
    return reverse(f"admin:{model}_changelist")


def failed_job(**kwargs: Any) -> AsyncJob:
    now = timezone.now()
    error = {"status_code": 502, "error": {"message": "upstream down", "code": "bad_gateway"}}
    defaults: dict[str, Any] = {
        "status": JobStatus.FAILED,
        "status_code": 502,
        "error": error,
        "attempts": 3,
        "completed_at": now,
        "expires_at": now + timedelta(hours=1),
    }
    return AsyncJobFactory(**(defaults | kwargs))


def result_count(response: Any) -> int:
    count: int = response.context["cl"].result_count
    return count


# --- Pages render -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "model", ["gateway_virtualkey", "providers_providerconfig", "jobs_asyncjob"]
)
def test_changelist_renders_its_rows(admin_client, model):
    key = VirtualKeyFactory()
    failed_job(virtual_key=key)
    ProviderConfig.objects.create(name="acme", base_url="http://127.0.0.1:9/v1")
    response = admin_client.get(changelist(model))
    assert response.status_code == 200
    assert result_count(response) == 1


@pytest.mark.parametrize("model", ["gateway_virtualkey", "providers_providerconfig"])
def test_add_page_renders(admin_client, model):
    response = admin_client.get(reverse(f"admin:{model}_add"))
    assert response.status_code == 200
    assert b"<form" in response.content


def test_jobs_cannot_be_added_by_hand(admin_client):
    # Jobs come only from the API: the admin's add page for them is refused.
    assert admin_client.get(reverse("admin:jobs_asyncjob_add")).status_code == 403


def test_virtual_key_change_page_does_not_expose_the_hash(admin_client, key):
    response = admin_client.get(reverse("admin:gateway_virtualkey_change", args=[key.pk]))
    assert response.status_code == 200
    assert key.prefix in response.content.decode()
    assert key.key_hash not in response.content.decode()
    assert key.raw not in response.content.decode()


def test_job_change_page_shows_request_result_and_error_as_pretty_json(admin_client):
    request = {"prompt": "Say hi", "max_tokens": 5}
    result = {"object": "text_completion", "choices": [{"text": "héllo <b>"}]}
    job = failed_job(request=request, result=result)
    response = admin_client.get(reverse("admin:jobs_asyncjob_change", args=[job.pk]))
    assert response.status_code == 200
    html = response.content.decode()
    for value in (request, result, job.error):
        pretty = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)
        assert escape(pretty) in html
    assert html.count("<pre") >= 3
    assert '"text": "héllo <b>"' not in html  # job content is escaped, never rendered as HTML


# --- Search and filters -------------------------------------------------------------------------


def test_job_search_by_id_finds_it(admin_client):
    job, other = failed_job(), failed_job()
    response = admin_client.get(changelist("jobs_asyncjob"), {"q": str(job.id)})
    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == [job]
    assert str(other.id) not in response.content.decode()


def test_job_search_by_id_tolerates_surrounding_spaces(admin_client):
    job = failed_job()
    response = admin_client.get(changelist("jobs_asyncjob"), {"q": f"  {job.id} "})
    assert list(response.context["cl"].result_list) == [job]


def test_job_search_by_non_uuid_returns_no_rows_without_error(admin_client):
    failed_job()
    response = admin_client.get(changelist("jobs_asyncjob"), {"q": "not-a-uuid"})
    assert response.status_code == 200
    assert result_count(response) == 0


def test_job_list_filters_by_status(admin_client):
    failed = failed_job()
    AsyncJobFactory(status=JobStatus.PENDING)
    response = admin_client.get(changelist("jobs_asyncjob"), {"status": "failed"})
    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == [failed]


def test_job_list_filters_by_provider(admin_client):
    openai = AsyncJobFactory(provider="openai")
    AsyncJobFactory(provider="anthropic", model="claude-3-5-haiku")
    response = admin_client.get(changelist("jobs_asyncjob"), {"provider": "openai"})
    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == [openai]


@pytest.mark.parametrize("request_type", list(RequestType))
def test_job_list_filters_by_request_type(admin_client, request_type):
    jobs = {kind: AsyncJobFactory(request_type=kind) for kind in RequestType}
    response = admin_client.get(changelist("jobs_asyncjob"), {"request_type": request_type})
    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == [jobs[request_type]]
    # Every type is offered as a filter choice, by its label.
    assert f"?request_type={request_type.value}" in response.content.decode()


def test_virtual_key_search_by_prefix_finds_it(admin_client, key):
    VirtualKeyFactory()
    response = admin_client.get(changelist("gateway_virtualkey"), {"q": key.prefix})
    assert key in response.context["cl"].result_list


# --- Virtual keys -------------------------------------------------------------------------------


def create_key_through_admin(admin_client: Any, **fields: Any) -> Any:
    data = {
        "name": "from-admin",
        "allowed_models": '["openai/*"]',
        "is_active": "on",
        "expires_at_0": "",
        "expires_at_1": "",
    } | fields
    return admin_client.post(reverse("admin:gateway_virtualkey_add"), data)


def shown_key(response: Any) -> str:
    shown = RAW_KEY.findall(response.content.decode())
    assert len(set(shown)) == 1, shown
    return str(shown[0])


def test_admin_add_answers_the_post_with_the_raw_key_and_stores_only_its_hash(admin_client):
    response = create_key_through_admin(admin_client)
    assert response.status_code == 200
    raw = shown_key(response)
    key = VirtualKey.objects.get(name="from-admin")
    assert key.key_hash == hash_key(raw)
    assert key.allowed_models == ["openai/*"]
    row = VirtualKey.objects.filter(pk=key.pk).values().get()
    assert all(raw not in str(value) for value in row.values())
    again = admin_client.get(changelist("gateway_virtualkey"))
    assert raw not in again.content.decode()


def test_new_key_page_is_never_cached(admin_client):
    response = create_key_through_admin(admin_client)
    assert "no-store" in response["Cache-Control"]
    assert "private" in response["Cache-Control"]


def test_new_raw_key_is_in_no_cookie_session_or_message(admin_client):
    response = create_key_through_admin(admin_client)
    raw = shown_key(response)
    assert all(raw not in morsel.OutputString() for morsel in response.cookies.values())
    assert all(raw not in value for _, value in response.items())
    for session in Session.objects.all():
        assert raw not in json.dumps(session.get_decoded())
    assert not list(get_messages(response.wsgi_request))
    # The next page shows whatever messages were queued: none of them carries the key.
    following = admin_client.get(changelist("gateway_virtualkey"))
    assert raw not in following.content.decode()
    assert all(raw not in str(message) for message in following.context["messages"])
    assert all(raw not in morsel.OutputString() for morsel in admin_client.cookies.values())


def test_new_raw_key_is_not_in_the_admin_history(admin_client):
    raw = shown_key(create_key_through_admin(admin_client))
    entry = LogEntry.objects.get(object_repr__startswith="from-admin")
    assert entry.action_flag == ADDITION
    assert raw not in entry.change_message
    assert raw not in entry.object_repr


@pytest.mark.parametrize("button", ["_save", "_continue", "_addanother"])
def test_every_save_button_of_the_add_form_shows_the_new_key(admin_client, button):
    response = create_key_through_admin(admin_client, **{button: "1"})
    assert response.status_code == 200
    assert hash_key(shown_key(response)) == VirtualKey.objects.get().key_hash


def test_admin_created_key_authenticates(admin_client, api_client):
    raw = shown_key(create_key_through_admin(admin_client))
    poll = reverse("poll-completion", args=["00000000-0000-0000-0000-000000000000"])
    assert api_client.get(poll, headers={"Authorization": f"Bearer {raw}"}).status_code == 404


def test_admin_add_form_refuses_allowed_models_that_are_not_a_list(admin_client):
    response = create_key_through_admin(admin_client, allowed_models='{"openai": "*"}')
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["allowed_models"]
    assert not VirtualKey.objects.exists()


def rename_key(admin_client: Any, key: VirtualKey) -> Any:
    """The change form of ``key``, saved with another name and other allowed models."""
    url = reverse("admin:gateway_virtualkey_change", args=[key.pk])
    data = {
        "name": "renamed",
        "allowed_models": '["anthropic/*"]',
        "is_active": "on",
        "expires_at_0": "",
        "expires_at_1": "",
    }
    return admin_client.post(url, data)


def test_editing_a_key_keeps_its_hash(admin_client, key):
    response = rename_key(admin_client, key)
    assert response.status_code == 302
    key.refresh_from_db()
    assert (key.name, key.allowed_models) == ("renamed", ["anthropic/*"])
    assert key.key_hash == hash_key(key.raw)


def test_editing_a_key_is_in_the_history_with_who_and_which_fields(admin_client, key):
    rename_key(admin_client, key)
    entry = LogEntry.objects.get()
    assert (entry.user.username, entry.action_flag) == ("admin", CHANGE)
    assert entry.get_change_message() == "Changed Name and Allowed models."
    assert key.key_hash not in entry.change_message
    assert key.raw not in entry.change_message


def test_deactivate_action_deactivates_selected_keys(admin_client):
    chosen, other = VirtualKeyFactory(), VirtualKeyFactory()
    data = {"action": "deactivate", "_selected_action": [chosen.pk]}
    response = admin_client.post(changelist("gateway_virtualkey"), data)
    assert response.status_code == 302
    chosen.refresh_from_db()
    other.refresh_from_db()
    assert (chosen.is_active, other.is_active) == (False, True)


def test_activate_action_activates_selected_keys(admin_client):
    key = VirtualKeyFactory(is_active=False)
    data = {"action": "activate", "_selected_action": [key.pk]}
    admin_client.post(changelist("gateway_virtualkey"), data)
    key.refresh_from_db()
    assert key.is_active


def test_key_actions_are_in_the_history_with_who_and_what(admin_client):
    chosen, already_off = VirtualKeyFactory(), VirtualKeyFactory(is_active=False)
    data = {"action": "deactivate", "_selected_action": [chosen.pk, already_off.pk]}
    admin_client.post(changelist("gateway_virtualkey"), data)
    entry = LogEntry.objects.get()
    assert (entry.object_id, entry.action_flag) == (str(chosen.pk), CHANGE)
    assert entry.user.username == "admin"
    assert entry.get_change_message() == "Changed Is active."


# --- Jobs actions -------------------------------------------------------------------------------


def test_retry_failed_action_puts_a_failed_job_back_to_pending(
    admin_client, dispatched, django_capture_on_commit_callbacks
):
    job = failed_job()
    data = {"action": "retry_failed", "_selected_action": [str(job.pk)]}
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(changelist("jobs_asyncjob"), data)
    assert response.status_code == 302
    job.refresh_from_db()
    assert job.status == JobStatus.PENDING
    assert (job.error, job.status_code, job.attempts, job.expires_at) == (None, None, 0, None)
    assert dispatched.rung == 1


def test_retry_failed_action_leaves_other_jobs_alone(
    admin_client, dispatched, django_capture_on_commit_callbacks
):
    completed = AsyncJobFactory(
        status=JobStatus.COMPLETED,
        status_code=200,
        result={"choices": []},
        completed_at=timezone.now(),
    )
    pending = AsyncJobFactory(status=JobStatus.PENDING)
    data = {"action": "retry_failed", "_selected_action": [str(completed.pk), str(pending.pk)]}
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(changelist("jobs_asyncjob"), data)
    completed.refresh_from_db()
    assert completed.status == JobStatus.COMPLETED
    assert completed.result == {"choices": []}
    assert dispatched.rung == 0


def test_admin_add_form_takes_the_keys_limits(admin_client):
    limits = {"requests_per_minute": "60", "tokens_per_minute": "90000", "max_pending": "5"}
    response = create_key_through_admin(admin_client, **limits)
    assert response.status_code == 200
    key = VirtualKey.objects.get(name="from-admin")
    assert (key.requests_per_minute, key.tokens_per_minute, key.max_pending) == (60, 90000, 5)


def change_form(key: VirtualKey, **fields: str) -> dict[str, str]:
    """A key's change form as the admin posts it, with ``fields`` filled in."""
    form = {"name": key.name, "allowed_models": "[]", "is_active": "on"}
    return form | {"expires_at_0": "", "expires_at_1": ""} | fields


def test_admin_edits_the_limits_of_an_existing_key(admin_client, key):
    url = reverse("admin:gateway_virtualkey_change", args=[key.pk])
    page = admin_client.get(url).content.decode()
    for field in ("requests_per_minute", "tokens_per_minute", "max_pending"):
        assert f'name="{field}"' in page
    data = change_form(key, requests_per_minute="10", tokens_per_minute="", max_pending="3")
    response = admin_client.post(url, data)
    assert response.status_code == 302, response.content
    key.refresh_from_db()
    assert (key.requests_per_minute, key.tokens_per_minute, key.max_pending) == (10, None, 3)


@pytest.mark.parametrize("value", ["0", "-1", "x"])
def test_admin_refuses_a_limit_that_is_not_a_positive_integer(admin_client, value):
    response = create_key_through_admin(admin_client, max_pending=value)
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["max_pending"]
    assert not VirtualKey.objects.exists()


def test_admin_add_form_takes_the_keys_share(admin_client):
    response = create_key_through_admin(admin_client, share="3", max_pending="5")
    assert response.status_code == 200
    key = VirtualKey.objects.get(name="from-admin")
    assert (key.share, key.max_pending) == (3, 5)


def test_admin_add_form_left_without_a_share_gives_share_1(admin_client):
    create_key_through_admin(admin_client, share="")
    assert VirtualKey.objects.get(name="from-admin").share == 1


def test_admin_edits_the_share_beside_the_limits(admin_client, key):
    url = reverse("admin:gateway_virtualkey_change", args=[key.pk])
    page = admin_client.get(url).content.decode()
    assert re.search(r'name="max_pending".*name="share"', page, re.DOTALL)
    response = admin_client.post(url, change_form(key, share="7"))
    assert response.status_code == 302, response.content
    key.refresh_from_db()
    assert key.share == 7
    change = LogEntry.objects.filter(object_id=str(key.pk), action_flag=CHANGE).get()
    assert "Share" in change.get_change_message()


def test_saving_a_key_with_its_share_unchanged_logs_no_share_change(admin_client, key):
    url = reverse("admin:gateway_virtualkey_change", args=[key.pk])
    data = {
        "name": key.name + "-renamed",
        "allowed_models": "[]",
        "is_active": "on",
        "expires_at_0": "",
        "expires_at_1": "",
        "share": "",
    }
    assert admin_client.post(url, data).status_code == 302
    key.refresh_from_db()
    assert key.share == 1
    change = LogEntry.objects.filter(object_id=str(key.pk), action_flag=CHANGE).get()
    assert "Share" not in change.get_change_message()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "greater than or equal to 1"),
        ("-3", "greater than or equal to 1"),
        ("1001", "less than or equal to 1000"),
        ("2.5", "whole number"),
        ("x", "whole number"),
    ],
)
def test_admin_refuses_a_share_outside_1_to_1000(admin_client, value, message):
    response = create_key_through_admin(admin_client, share=value)
    assert response.status_code == 200
    assert message in " ".join(response.context["adminform"].form.errors["share"])
    assert not VirtualKey.objects.exists()
