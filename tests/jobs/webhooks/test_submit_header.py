"""x-bf-async-webhook on submit: a usable endpoint gets a waiting delivery, anything else a 400."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from gateway.access.tokens import ROLE_ADMIN, issue_token
from jobs.models import AsyncJob
from jobs.request_types import KINDS
from jobs.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from jobs.webhooks.services import create_endpoint
from tests.factories import VirtualKeyFactory
from tests.helpers import SUBMIT_URL, VALID_BODY, assert_error_shape, bearer

pytestmark = pytest.mark.django_db

BODIES: dict[str, dict[str, Any]] = {
    "async/completions": VALID_BODY,
    "async/chat/completions": {
        "model": "openai/gpt-test",
        "messages": [{"role": "user", "content": "hi"}],
    },
    "async/responses": {"model": "openai/gpt-test", "input": "hi"},
    "async/embeddings": {"model": "openai/gpt-test", "input": "hi"},
}


def submit(client: Any, webhook: str | None, url: str = SUBMIT_URL, body: Any = VALID_BODY) -> Any:
    extra = {} if webhook is None else {"HTTP_X_BF_ASYNC_WEBHOOK": webhook}
    return client.post(url, body, format="json", **extra)


@pytest.mark.parametrize("kind", KINDS, ids=lambda kind: kind.name)
def test_every_request_type_takes_the_header(key_client, dispatched, endpoint, kind):
    response = submit(key_client, "orders", f"/v1/{kind.path}", BODIES[kind.path])

    assert response.status_code == 202, response.content
    delivery = WebhookDelivery.objects.get()
    assert str(delivery.job_id) == response.json()["id"]
    assert delivery.endpoint == endpoint
    assert delivery.status == DeliveryStatus.WAITING


def test_an_endpoint_bound_to_the_callers_key_may_be_named(key_client, dispatched, bound_endpoint):
    assert submit(key_client, "mine").status_code == 202
    assert WebhookDelivery.objects.get().endpoint == bound_endpoint


def test_an_admin_token_may_name_a_bound_endpoint(api_client, dispatched, bound_endpoint):
    token = issue_token(role=ROLE_ADMIN)
    response = api_client.post(
        SUBMIT_URL,
        VALID_BODY,
        format="json",
        headers={**bearer(token), "x-bf-async-webhook": "mine"},
    )
    assert response.status_code == 202, response.content


def _refused(response: Any) -> None:
    body = assert_error_shape(response, 400, code="unknown_webhook", param="x-bf-async-webhook")
    assert "x-bf-async-webhook" in body["error"]["message"]
    assert not AsyncJob.objects.exists()
    assert not WebhookDelivery.objects.exists()


def test_an_unknown_name_is_a_400_naming_the_header(key_client, dispatched, endpoint):
    _refused(submit(key_client, "nope"))
    _refused(submit(key_client, ""))


def test_an_inactive_endpoint_is_a_400(key_client, dispatched, endpoint):
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(is_active=False)
    _refused(submit(key_client, "orders"))


def test_an_endpoint_bound_to_another_key_is_a_400(api_client, dispatched):
    other = VirtualKeyFactory()
    create_endpoint(name="theirs", url="https://example.test/", virtual_key=other)
    caller = VirtualKeyFactory()
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {caller.raw}")
    _refused(submit(api_client, "theirs"))


def test_without_the_header_the_submit_makes_no_webhook_query(key_client, dispatched, endpoint):
    key_client.post(SUBMIT_URL, VALID_BODY, format="json")  # warm the key cache
    with CaptureQueriesContext(connection) as queries:
        assert submit(key_client, None).status_code == 202
    assert not [q for q in queries.captured_queries if "webhook" in q["sql"]]
    assert any(q["sql"].startswith("INSERT") for q in queries.captured_queries)
    assert not WebhookDelivery.objects.exists()


def test_every_submit_operation_documents_the_header(api_client):
    document = api_client.get("/openapi.json").json()
    submits = [
        operations["post"]
        for path, operations in document["paths"].items()
        if "post" in operations and operations["post"]["operationId"].startswith("create_async_")
    ]
    assert len(submits) == len(KINDS)
    for operation in submits:
        [header] = [p for p in operation["parameters"] if p["name"] == "x-bf-async-webhook"]
        assert header["in"] == "header"
        assert "400" in header["description"] and "400" in operation["responses"]
