"""Idempotency-Key on submit: the same key and request give the same job, once, for 24 hours."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from gateway.access.tokens import ROLE_ADMIN, ROLE_VIRTUAL_KEY, issue_token
from jobs import services, views
from jobs.idempotency import IDEMPOTENCY_WINDOW
from jobs.models import AsyncJob, IdempotencyKey, JobStatus
from tests.factories import VirtualKeyFactory
from tests.helpers import SUBMIT_URL, VALID_BODY, assert_error_shape, bearer

pytestmark = pytest.mark.django_db

CHAT_URL = "/v1/async/chat/completions"
CHAT_BODY = {"model": "openai/gpt-test", "messages": [{"role": "user", "content": "Say hi"}]}
HEADER = "Idempotency-Key"


def submit(
    client: APIClient, key: str | None, body: Any = VALID_BODY, url: str = SUBMIT_URL, **extra: Any
) -> Any:
    if key is not None:
        extra["HTTP_IDEMPOTENCY_KEY"] = key
    return client.post(url, body, format="json", **extra)


def poll(client: APIClient, response: Any) -> Any:
    return client.get(response["Location"])


def assert_refused(response: Any, status: int, code: str) -> None:
    body = assert_error_shape(response, status, code=code, param=HEADER)
    assert "Idempotency-Key" in body["error"]["message"]


# --- the same request again ---------------------------------------------------------------------


def test_the_same_key_and_body_give_the_same_job_once_dispatched_once(
    key_client, dispatched, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        first = submit(key_client, '"order-1"')
        again = submit(key_client, '"order-1"')

    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert again["Location"] == first["Location"]
    assert "Idempotent-Replayed" not in first
    assert again["Idempotent-Replayed"] == "true"
    assert AsyncJob.objects.count() == 1
    assert IdempotencyKey.objects.get().job_id == AsyncJob.objects.get().pk
    assert dispatched.rung == 1


def test_a_replay_answers_the_job_as_it_is_now(key_client, dispatched):
    first = submit(key_client, "order-2")
    job = AsyncJob.objects.get()
    now = timezone.now()
    AsyncJob.objects.filter(pk=job.pk).update(
        status=JobStatus.COMPLETED,
        completed_at=now,
        expires_at=now + timedelta(hours=1),
        status_code=200,
        result={"object": "text_completion", "choices": []},
    )

    again = submit(key_client, "order-2")

    assert again.status_code == 202
    assert again["Location"] == first["Location"]
    assert again.json() == poll(key_client, first).json()
    assert again.json()["status"] == "completed"
    assert again.json()["result"] == {"object": "text_completion", "choices": []}


def test_a_quoted_and_a_bare_key_are_the_same_key(key_client, dispatched):
    first = submit(key_client, '"abc-123"')
    again = submit(key_client, "abc-123")
    assert again.json()["id"] == first.json()["id"]
    assert IdempotencyKey.objects.get().key == "abc-123"


def test_a_quoted_key_may_escape_quotes_and_backslashes(key_client, dispatched):
    submit(key_client, r'"a\"b\\c"')
    assert IdempotencyKey.objects.get().key == 'a"b\\c'


def test_key_order_and_whitespace_of_the_body_do_not_matter(key_client, dispatched):
    first = key_client.post(
        SUBMIT_URL,
        '{"model": "openai/gpt-test", "prompt": "Say hi", "max_tokens": 5}',
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="k",
    )
    again = key_client.post(
        SUBMIT_URL,
        '{"max_tokens":5,"prompt":"Say hi","model":"openai/gpt-test"}',
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="k",
    )
    assert again.status_code == 202
    assert again.json()["id"] == first.json()["id"]


def test_the_default_ttl_and_the_same_ttl_sent_are_the_same_request(key_client, dispatched):
    first = submit(key_client, "k")
    again = submit(key_client, "k", HTTP_X_BF_ASYNC_JOB_RESULT_TTL="3600")
    assert again.json()["id"] == first.json()["id"]


@pytest.mark.parametrize(
    ("url", "body"),
    [
        ("/v1/async/completions", VALID_BODY),
        ("/v1/async/chat/completions", CHAT_BODY),
        ("/v1/async/responses", {"model": "openai/gpt-test", "input": "Say hi"}),
        ("/v1/async/embeddings", {"model": "openai/text-embedding", "input": "Say hi"}),
    ],
)
def test_every_submit_route_takes_the_key(key_client, dispatched, url, body):
    first = submit(key_client, "k", body, url)
    again = submit(key_client, "k", body, url)
    assert first.status_code == 202, first.content
    assert again.json()["id"] == first.json()["id"]
    assert again["Location"] == first["Location"]
    assert first["Location"].endswith(f"{url}/{first.json()['id']}")
    assert AsyncJob.objects.count() == 1


# --- another request with the key ---------------------------------------------------------------


def test_the_same_key_with_another_body_is_422(key_client, dispatched):
    submit(key_client, "k")
    response = submit(key_client, "k", {**VALID_BODY, "prompt": "Say bye"})
    assert_refused(response, 422, "idempotency_key_reused")
    assert AsyncJob.objects.count() == 1


def test_the_same_key_on_another_route_is_422(key_client, dispatched):
    submit(key_client, "k", CHAT_BODY, CHAT_URL)
    response = submit(key_client, "k", {"model": "openai/gpt-test", "prompt": "x"})
    assert_refused(response, 422, "idempotency_key_reused")
    assert response.json()["extra_fields"]["request_type"] == "text_completion"
    assert AsyncJob.objects.count() == 1


def test_the_same_key_with_another_result_ttl_is_422(key_client, dispatched):
    submit(key_client, "k")
    response = submit(key_client, "k", HTTP_X_BF_ASYNC_JOB_RESULT_TTL="60")
    assert_refused(response, 422, "idempotency_key_reused")
    assert AsyncJob.objects.count() == 1


def test_an_invalid_body_with_a_key_stores_nothing(key_client, dispatched):
    response = submit(key_client, "k", {**VALID_BODY, "temperature": 9})
    assert_error_shape(response, 400, param="temperature")
    assert IdempotencyKey.objects.count() == 0
    assert submit(key_client, "k").status_code == 202
    assert IdempotencyKey.objects.count() == AsyncJob.objects.count() == 1


# --- malformed keys -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("", id="empty"),
        pytest.param("   ", id="blank"),
        pytest.param('""', id="empty-quoted"),
        pytest.param("x" * 256, id="256-characters"),
        pytest.param('"' + "x" * 256 + '"', id="256-characters-quoted"),
        pytest.param("clé", id="not-ascii"),
        pytest.param("a\x01b", id="control-character"),
        pytest.param("a\tb", id="tab-inside"),
        pytest.param('"abc', id="unterminated-quote"),
        pytest.param('"a"b"', id="unescaped-quote"),
        pytest.param(r'"a\nb"', id="unknown-escape"),
        pytest.param('"abc";p=1', id="parameters"),
        pytest.param('"clé"', id="not-ascii-quoted"),
    ],
)
def test_a_malformed_key_is_400_naming_the_header(key_client, dispatched, value):
    response = submit(key_client, value)
    assert_refused(response, 400, "invalid_idempotency_key")
    assert AsyncJob.objects.count() == IdempotencyKey.objects.count() == 0
    assert dispatched.rung == 0


PUNCTUATION = "~!#$%&'()*+,-./:;<=>?@[]^_`{|}"


@pytest.mark.parametrize("value", ["x" * 255, '"' + "y" * 255 + '"', "a b", " pad\t", PUNCTUATION])
def test_keys_at_the_limits_are_accepted(key_client, dispatched, value):
    assert submit(key_client, value).status_code == 202
    assert IdempotencyKey.objects.get().key == value.strip(" \t").strip('"')


# --- scope --------------------------------------------------------------------------------------


def test_two_virtual_keys_may_use_the_same_key(dispatched):
    clients = []
    for _ in range(2):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {VirtualKeyFactory().raw}")
        clients.append(client)
    first, second = (submit(client, "shared") for client in clients)
    assert first.status_code == second.status_code == 202
    assert first.json()["id"] != second.json()["id"]
    assert AsyncJob.objects.count() == IdempotencyKey.objects.count() == 2


def test_a_virtual_key_and_its_jwt_share_one_scope(api_client, key, key_client, dispatched):
    first = submit(key_client, "k")
    token = issue_token(role=ROLE_VIRTUAL_KEY, key_id=key.pk)
    again = api_client.post(
        SUBMIT_URL, VALID_BODY, format="json", headers={**bearer(token), HEADER: "k"}
    )
    assert again.json()["id"] == first.json()["id"]


def test_admin_tokens_share_one_scope_apart_from_every_virtual_key(
    api_client, key_client, dispatched
):
    by_key = submit(key_client, "k")
    admin = {HEADER: "k", **bearer(issue_token(role=ROLE_ADMIN))}
    other_admin = {HEADER: "k", **bearer(issue_token(role=ROLE_ADMIN))}
    by_admin = api_client.post(SUBMIT_URL, VALID_BODY, format="json", headers=admin)
    again = api_client.post(SUBMIT_URL, VALID_BODY, format="json", headers=other_admin)
    assert by_admin.status_code == again.status_code == 202
    assert by_admin.json()["id"] != by_key.json()["id"]
    assert again.json()["id"] == by_admin.json()["id"]
    assert IdempotencyKey.objects.filter(virtual_key=None).count() == 1
    assert AsyncJob.objects.count() == 2


# --- the 24 hours -------------------------------------------------------------------------------


def age_keys(by: timedelta) -> None:
    IdempotencyKey.objects.update(created_at=timezone.now() - by)


def test_a_key_is_kept_24_hours(key_client, dispatched):
    first = submit(key_client, "k")
    age_keys(IDEMPOTENCY_WINDOW - timedelta(seconds=5))
    assert submit(key_client, "k").json()["id"] == first.json()["id"]
    assert_refused(submit(key_client, "k", {**VALID_BODY, "n": 2}), 422, "idempotency_key_reused")


def test_after_24_hours_the_key_makes_a_new_job(key_client, dispatched):
    first = submit(key_client, "k")
    age_keys(IDEMPOTENCY_WINDOW + timedelta(seconds=1))
    again = submit(key_client, "k", {**VALID_BODY, "n": 2})
    assert again.status_code == 202
    assert "Idempotent-Replayed" not in again
    assert again.json()["id"] != first.json()["id"]
    assert IdempotencyKey.objects.get().job_id == AsyncJob.objects.get(pk=again.json()["id"]).pk
    assert submit(key_client, "k", {**VALID_BODY, "n": 2}).json()["id"] == again.json()["id"]


def test_the_purge_forgets_keys_after_24_hours(key_client, dispatched):
    submit(key_client, "k")
    age_keys(IDEMPOTENCY_WINDOW + timedelta(minutes=1))
    assert services.purge_expired_idempotency_keys() == 1
    assert IdempotencyKey.objects.count() == 0


def test_a_key_whose_job_was_purged_is_410_and_makes_no_job(key_client, dispatched):
    submit(key_client, "k")
    AsyncJob.objects.all().delete()  # as the purge does once the result TTL ends
    response = submit(key_client, "k")
    assert_refused(response, 410, "idempotent_job_expired")
    assert AsyncJob.objects.count() == 0
    assert IdempotencyKey.objects.count() == 1


def test_a_key_whose_job_expired_is_410(key_client, dispatched):
    submit(key_client, "k")
    past = timezone.now() - timedelta(seconds=1)
    AsyncJob.objects.update(status=JobStatus.COMPLETED, completed_at=past, expires_at=past)
    assert_refused(submit(key_client, "k"), 410, "idempotent_job_expired")
    assert AsyncJob.objects.count() == 1


# --- cost ---------------------------------------------------------------------------------------


def test_a_submit_without_the_header_runs_only_the_insert(key_client, dispatched, settings):
    settings.GATEWAY_PROVIDER_CACHE_SECONDS = 60
    submit(key_client, None)  # reads (and caches) the key and the providers
    with CaptureQueriesContext(connection) as queries:
        assert submit(key_client, None).status_code == 202
    assert len(queries) == 1, [query["sql"] for query in queries]
    assert queries[0]["sql"].startswith('INSERT INTO "jobs_asyncjob"')


def test_a_submit_with_the_header_writes_job_and_key_in_one_transaction(
    key_client, dispatched, monkeypatch
):
    def no_key(**kwargs: Any) -> None:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(IdempotencyKey.objects, "create", no_key)
    with pytest.raises(RuntimeError):
        submit(key_client, "k")
    assert AsyncJob.objects.count() == 0, "no job without its key"
    assert dispatched.rung == 0


# --- a race -------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_two_identical_submits_at_once_make_one_job(key, dispatched, monkeypatch):
    """Both submits find no key, then both write: the unique constraint lets one commit, and
    the other answers the winner's job."""
    both_looked = threading.Barrier(2, timeout=10)
    validate = views.read_submission

    def after_both_looked(*args: Any) -> Any:
        both_looked.wait()
        return validate(*args)

    monkeypatch.setattr(views, "read_submission", after_both_looked)
    lost_the_race: list[Any] = []
    replay = views.replayed_job

    def replayed_job(once: Any) -> Any:
        lost_the_race.append(once)
        return replay(once)

    monkeypatch.setattr(views, "replayed_job", replayed_job)
    responses: list[Any] = []

    def client_submits() -> None:
        try:
            client = APIClient()
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {key.raw}")
            responses.append(submit(client, "race"))
        finally:
            connection.close()

    threads = [threading.Thread(target=client_submits) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert [response.status_code for response in responses] == [202, 202]
    assert responses[0].json()["id"] == responses[1].json()["id"]
    assert sorted(response.get("Idempotent-Replayed", "") for response in responses) == [
        "",
        "true",
    ]
    assert len(lost_the_race) == 1, "one submit hit the unique constraint"
    assert AsyncJob.objects.count() == IdempotencyKey.objects.count() == 1
    assert dispatched.rung == 1


# --- the API document ---------------------------------------------------------------------------


def test_every_submit_operation_documents_the_header_and_its_refusals(api_client):
    document = api_client.get("/openapi.json").json()
    submits = [
        (path, operations["post"])
        for path, operations in document["paths"].items()
        if "post" in operations and operations["post"]["operationId"].startswith("create_async_")
    ]
    assert len(submits) == 4
    for path, operation in submits:
        [header] = [p for p in operation["parameters"] if p["name"] == HEADER]
        assert header["in"] == "header", path
        assert header["schema"]["type"] == "string"
        assert "422" in header["description"] and "24 hours" in header["description"]
        assert {"400", "410", "422"} <= set(operation["responses"]), path
