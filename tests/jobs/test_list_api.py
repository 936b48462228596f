"""GET /v1/async/jobs: the caller's jobs, newest first, a page at a time, in OpenAI's list shape."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from gateway.access.principals import Principal
from gateway.access.tokens import ROLE_ADMIN, issue_token
from jobs.listing import JobListQuery
from jobs.models import AsyncJob, JobStatus, RequestType
from jobs.selectors import page_query
from jobs.serializers import AsyncJobSerializer
from tests.factories import AsyncJobFactory, VirtualKeyFactory
from tests.helpers import assert_error_shape

pytestmark = pytest.mark.django_db

URL = "/v1/async/jobs"


@pytest.fixture
def admin_client() -> APIClient:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {issue_token(role=ROLE_ADMIN)}")
    return api


def jobs_of(key: Any, count: int, **fields: Any) -> list[AsyncJob]:
    """``count`` jobs of ``key``, one second apart, oldest first."""
    start = timezone.now() - timedelta(hours=1)
    made = []
    for n in range(count):
        job = AsyncJobFactory(virtual_key=key, **fields)
        AsyncJob.objects.filter(pk=job.pk).update(created_at=start + timedelta(seconds=n))
        job.refresh_from_db()
        made.append(job)
    return made


def ids(body: dict[str, Any]) -> list[str]:
    return [item["id"] for item in body["data"]]


def newest_first(jobs: list[AsyncJob]) -> list[str]:
    return [str(job.id) for job in reversed(jobs)]


def test_list_answers_the_callers_jobs_newest_first_in_the_openai_list_shape(key, key_client):
    jobs = jobs_of(key, 3)
    response = key_client.get(URL)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"object", "data", "first_id", "last_id", "has_more"}
    assert body["object"] == "list"
    assert ids(body) == newest_first(jobs)
    assert body["first_id"] == str(jobs[-1].id)
    assert body["last_id"] == str(jobs[0].id)
    assert body["has_more"] is False


def test_each_listed_job_is_its_poll_body_plus_its_request_type(key, key_client):
    done = timezone.now()
    job = AsyncJobFactory(
        virtual_key=key,
        request_type=RequestType.CHAT_COMPLETION,
        status=JobStatus.COMPLETED,
        status_code=200,
        result={"object": "chat.completion", "choices": []},
        completed_at=done,
        expires_at=done + timedelta(hours=1),
    )
    [item] = key_client.get(URL).json()["data"]
    poll = key_client.get(f"/v1/async/chat/completions/{job.id}").json()
    assert item == {**poll, "request_type": "chat_completion"}
    assert item["result"] == {"object": "chat.completion", "choices": []}


def test_an_empty_list_has_null_first_and_last_ids(key_client):
    body = key_client.get(URL).json()
    assert body == {
        "object": "list",
        "data": [],
        "first_id": None,
        "last_id": None,
        "has_more": False,
    }


def test_limit_defaults_to_20_and_says_more_follow(key, key_client):
    jobs = jobs_of(key, 21)
    body = key_client.get(URL).json()
    assert ids(body) == newest_first(jobs)[:20]
    assert body["has_more"] is True


def test_after_pages_through_every_job_once_in_order(key, key_client):
    jobs = jobs_of(key, 7)
    seen: list[str] = []
    after = None
    pages = 0
    while True:
        query = {"limit": 3} | ({"after": after} if after else {})
        body = key_client.get(URL, query).json()
        seen += ids(body)
        pages += 1
        if not body["has_more"]:
            break
        after = body["last_id"]
    assert seen == newest_first(jobs)
    assert pages == 3


def test_jobs_created_at_the_same_instant_are_ordered_by_id_and_paged_without_loss(key, key_client):
    same = timezone.now() - timedelta(minutes=1)
    jobs = [AsyncJobFactory(virtual_key=key) for _ in range(5)]
    AsyncJob.objects.filter(pk__in=[job.pk for job in jobs]).update(created_at=same)
    by_id = sorted((str(job.id) for job in jobs), key=uuid.UUID, reverse=True)
    first = key_client.get(URL, {"limit": 2}).json()
    rest = key_client.get(URL, {"limit": 10, "after": first["last_id"]}).json()
    assert ids(first) + ids(rest) == by_id


def test_after_lists_the_jobs_older_than_that_job(key, key_client):
    jobs = jobs_of(key, 4)
    body = key_client.get(URL, {"after": str(jobs[2].id)}).json()
    assert ids(body) == [str(jobs[1].id), str(jobs[0].id)]


def test_list_leaves_out_another_keys_jobs(key, key_client):
    mine = jobs_of(key, 1)
    jobs_of(VirtualKeyFactory(), 2)
    AsyncJobFactory(virtual_key=None)  # submitted with an admin token
    assert ids(key_client.get(URL).json()) == newest_first(mine)


def test_list_leaves_out_expired_jobs_not_yet_purged(key, key_client):
    now = timezone.now()
    live = AsyncJobFactory(virtual_key=key)
    AsyncJobFactory(
        virtual_key=key,
        status=JobStatus.COMPLETED,
        completed_at=now - timedelta(hours=2),
        expires_at=now - timedelta(seconds=1),
        result={},
    )
    assert ids(key_client.get(URL).json()) == [str(live.id)]


@pytest.mark.parametrize("status", JobStatus.values)
def test_status_filters_the_list(key, key_client, status):
    now = timezone.now()
    later = now + timedelta(hours=1)
    wanted = None
    for each in JobStatus.values:
        done = each in ("completed", "failed", "cancelled")
        job = AsyncJobFactory(
            virtual_key=key,
            status=each,
            completed_at=now if done else None,
            expires_at=later if done else None,
        )
        if each == status:
            wanted = job
    body = key_client.get(URL, {"status": status}).json()
    assert ids(body) == [str(wanted.id)]
    assert body["data"][0]["status"] == status


@pytest.mark.parametrize("request_type", RequestType.values)
def test_request_type_filters_the_list(key, key_client, request_type):
    made = {
        each: AsyncJobFactory(virtual_key=key, request_type=each) for each in RequestType.values
    }
    body = key_client.get(URL, {"request_type": request_type}).json()
    assert ids(body) == [str(made[request_type].id)]
    assert body["data"][0]["request_type"] == request_type


def test_filters_combine_with_the_cursor(key, key_client):
    jobs = jobs_of(key, 6, request_type=RequestType.EMBEDDING)
    for job in jobs[::2]:
        AsyncJob.objects.filter(pk=job.pk).update(request_type=RequestType.TEXT_COMPLETION)
    query = {"request_type": "embedding", "limit": 1}
    first = key_client.get(URL, query).json()
    second = key_client.get(URL, query | {"after": first["last_id"]}).json()
    third = key_client.get(URL, query | {"after": second["last_id"]}).json()
    assert ids(first) + ids(second) + ids(third) == [
        str(jobs[5].id),
        str(jobs[3].id),
        str(jobs[1].id),
    ]
    assert (first["has_more"], second["has_more"], third["has_more"]) == (True, True, False)


def test_an_admin_token_lists_every_keys_jobs(key, admin_client):
    mine = jobs_of(key, 1)
    theirs = jobs_of(VirtualKeyFactory(), 1)
    own = AsyncJobFactory(virtual_key=None)
    assert set(ids(admin_client.get(URL).json())) == {
        str(mine[0].id),
        str(theirs[0].id),
        str(own.id),
    }


def test_an_admin_token_filters_by_key_name(key, admin_client):
    mine = jobs_of(key, 2)
    jobs_of(VirtualKeyFactory(), 2)
    body = admin_client.get(URL, {"key": key.name}).json()
    assert ids(body) == newest_first(mine)


def test_an_admin_filter_by_an_unknown_key_name_is_400_naming_key(admin_client):
    response = admin_client.get(URL, {"key": "no-such-key"})
    assert_error_shape(response, 400, code="invalid_parameter", param="key")


def test_a_key_may_not_filter_by_key(key, key_client):
    response = key_client.get(URL, {"key": key.name})
    assert_error_shape(response, 400, param="key")


def test_an_admin_may_page_from_any_keys_job(key, admin_client):
    jobs = jobs_of(key, 3)
    body = admin_client.get(URL, {"key": key.name, "after": str(jobs[1].id)}).json()
    assert ids(body) == [str(jobs[0].id)]


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("limit", "0"),
        ("limit", "101"),
        ("limit", "-1"),
        ("limit", "ten"),
        ("limit", "1.5"),
        ("limit", ""),
        ("limit", "\u0661"),  # an Arabic-Indic one: int() would take it
        ("status", "done"),
        ("status", "COMPLETED"),
        ("status", ""),
        ("request_type", "completions"),
        ("request_type", ""),
        ("after", "not-a-uuid"),
        ("after", ""),
        ("after", "0" * 32),  # a UUID, but not as the API writes one
    ],
)
def test_a_bad_query_value_is_400_naming_the_param(key_client, param, value):
    response = key_client.get(URL, {param: value})
    assert_error_shape(response, 400, param=param)


def test_limit_100_is_accepted(key, key_client):
    jobs_of(key, 2)
    assert key_client.get(URL, {"limit": "100"}).status_code == 200


def test_an_unknown_query_param_is_400_naming_it(key_client):
    response = key_client.get(URL, {"before": "x"})
    assert_error_shape(response, 400, code="unknown_parameter", param="before")


def test_a_repeated_query_param_is_400_naming_it(key_client):
    response = key_client.get(f"{URL}?limit=1&limit=2")
    assert_error_shape(response, 400, param="limit")


def test_after_an_unknown_job_is_400_naming_after(key_client):
    response = key_client.get(URL, {"after": str(uuid.uuid4())})
    assert_error_shape(response, 400, code="invalid_cursor", param="after")


def test_after_another_keys_job_is_the_same_400_as_an_unknown_one(key_client):
    theirs = AsyncJobFactory(virtual_key=VirtualKeyFactory())
    response = key_client.get(URL, {"after": str(theirs.id)})
    body = assert_error_shape(response, 400, code="invalid_cursor", param="after")
    assert str(theirs.id) in body["error"]["message"]


def test_after_an_expired_job_of_the_callers_still_marks_its_place(key, key_client):
    jobs = jobs_of(key, 3)
    gone = timezone.now() - timedelta(seconds=1)
    AsyncJob.objects.filter(pk=jobs[1].pk).update(
        status=JobStatus.COMPLETED, completed_at=gone, expires_at=gone
    )
    body = key_client.get(URL, {"after": str(jobs[1].id)}).json()
    assert ids(body) == [str(jobs[0].id)]


def test_list_without_credentials_is_401(api_client):
    response = api_client.get(URL)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_list_is_get_only(key_client):
    assert_error_shape(key_client.post(URL, {}, format="json"), 405)


def test_list_never_reads_the_jobs_requests(key, key_client):
    AsyncJobFactory(virtual_key=key, request={"prompt": "x" * 10_000})
    key_client.get(URL)  # the key is read (and cached) by this first request
    with CaptureQueriesContext(connection) as captured:
        body = key_client.get(URL).json()
    assert len(body["data"]) == 1
    assert len(captured.captured_queries) == 1
    assert '"request"' not in captured.captured_queries[0]["sql"].replace('"request_type"', "")


def test_listed_job_renders_like_the_serializer(key, key_client):
    job = jobs_of(key, 1)[0]
    [item] = key_client.get(URL).json()["data"]
    assert item == {**AsyncJobSerializer.render(job), "request_type": job.request_type}


def _plan(principal: Principal, **query: Any) -> str:
    """The database's plan for the page query the list runs."""
    plan = page_query(principal, JobListQuery(**query)).explain()
    return plan


@pytest.fixture
def many_jobs() -> list[Any]:
    """20,000 jobs of 20 keys, with the planner's statistics up to date, so that
    the plans below are chosen as on a big table, not a tiny test one; returns the keys."""
    keys = [VirtualKeyFactory() for _ in range(20)]
    statuses = JobStatus.values
    AsyncJob.objects.bulk_create(
        AsyncJob(
            virtual_key=keys[n % 20],
            request_type=RequestType.values[n % 4],
            status=statuses[n % len(statuses)],
            provider="openai",
            model="gpt-test",
            request={"prompt": "p"},
            result_ttl=3600,
        )
        for n in range(20_000)
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return keys


def _uses_index_without_sorting(plan: str, index: str, *, from_cursor: bool = False) -> None:
    assert index in plan, plan
    if connection.vendor == "postgresql":
        assert "Sort" not in plan and "Seq Scan" not in plan, plan
        if from_cursor:  # the walk starts at the cursor, not at the newest job
            assert re.search(r"Index Cond: .*created_at <=", plan), plan
    else:  # SQLite: a sort is a "TEMP B-TREE"; a table read in the index's order says "USING"
        assert "TEMP B-TREE" not in plan, plan
        reads = [line for line in plan.splitlines() if "jobs_asyncjob" in line]
        assert reads and all("USING" in line for line in reads), plan


def test_a_keys_page_is_read_through_the_key_list_index_without_a_sort(many_jobs):
    """At millions of rows a page must be an index walk of ``limit + 1`` entries, not a sort of
    the caller's whole history; filters and the cursor must not change that."""
    principal = Principal(virtual_key=many_jobs[0])
    anchor = AsyncJob.objects.filter(virtual_key=many_jobs[0]).order_by("-created_at")[5]
    for query in [{}, {"status": "failed"}]:
        _uses_index_without_sorting(_plan(principal, **query), "job_key_list_idx")
    deep = _plan(principal, request_type="embedding", after=anchor.pk)
    _uses_index_without_sorting(deep, "job_key_list_idx", from_cursor=True)


def test_an_admins_page_is_read_through_the_list_index_without_a_sort(many_jobs):
    admin = Principal(virtual_key=None, is_admin=True)
    anchor = AsyncJob.objects.order_by("-created_at")[5]
    _uses_index_without_sorting(_plan(admin), "job_list_idx")
    _uses_index_without_sorting(_plan(admin, after=anchor.pk), "job_list_idx", from_cursor=True)
    by_key = _plan(admin, key=many_jobs[3].name)
    _uses_index_without_sorting(by_key, "job_key_list_idx")


def test_the_api_document_lists_the_job_list(api_client):
    document = api_client.get("/openapi.json").json()
    operation = document["paths"]["/v1/async/jobs"]["get"]
    assert operation["operationId"] == "list_async_jobs"
    assert {"200", "400", "401"} <= set(operation["responses"])
    parameters = {p["name"]: p for p in operation["parameters"]}
    assert set(parameters) == {"limit", "after", "status", "request_type", "key"}
    assert all(p["in"] == "query" for p in parameters.values())
    assert set(parameters["status"]["schema"]["enum"]) == set(JobStatus.values)
    assert set(parameters["request_type"]["schema"]["enum"]) == set(RequestType.values)
    page = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    listed = document["components"]["schemas"][page.rsplit("/", 1)[1]]
    assert set(listed["properties"]) == {"object", "data", "first_id", "last_id", "has_more"}
