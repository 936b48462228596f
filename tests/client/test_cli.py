"""``gateway-client``'s parts that need no gateway: the body it builds, what it prints, its exit
statuses (against a scripted gateway; tests/e2e/test_client_e2e.py runs it against the real one)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from openai.types import Completion, CreateEmbeddingResponse
from openai.types.chat import ChatCompletion
from openai.types.responses import Response

from gateway_client import BY_NAME, Gateway, cli
from harness.upstream import CHAT_PATH, EMBEDDINGS_PATH, OPENAI_PATH, RESPONSES_PATH, reply
from tests.client.fakes import FakeClock, ScriptedGateway, answer, error_shape, job

URL = "http://gateway.test"
JOB_ID = job("pending")["id"]


def built(*args: str) -> dict[str, Any]:
    parsed = cli.parser().parse_args(["submit", "--model", "openai/m", *args])
    return cli.body(BY_NAME[parsed.type], parsed)


@pytest.mark.parametrize(
    ("request_type", "expected"),
    [
        ("chat", {"messages": [{"role": "user", "content": "Say hi"}]}),
        ("completions", {"prompt": "Say hi"}),
        ("responses", {"input": "Say hi"}),
        ("embeddings", {"input": "Say hi"}),
    ],
)
def test_the_prompt_goes_where_each_type_takes_it(request_type: str, expected: dict) -> None:
    assert built("--type", request_type, "--prompt", "Say hi") == {"model": "openai/m", **expected}


def test_chat_is_the_default_type() -> None:
    assert "messages" in built("--prompt", "Say hi")


def test_params_are_json_when_they_parse_and_text_otherwise() -> None:
    params = ("--param", "max_tokens=16", "--param", 'stop=["END"]', "--param", "user=ann")

    sent = built("--prompt", "hi", *params)

    assert (sent["max_tokens"], sent["stop"], sent["user"]) == (16, ["END"], "ann")


def test_a_param_without_a_name_and_value_is_refused() -> None:
    with pytest.raises(SystemExit, match="NAME=VALUE"):
        built("--prompt", "hi", "--param", "max_tokens")


def test_the_printed_result_is_the_replys_text_or_json() -> None:
    def result(path: str) -> dict[str, Any]:
        return reply(path, "r1", "m", ("Say hi",), {"n": 2}, "")

    assert cli.result_text(ChatCompletion.model_validate(result(CHAT_PATH)), False) == (
        "reply to: Say hi\nreply to: Say hi"
    )
    assert cli.result_text(Completion.model_validate(result(OPENAI_PATH)), False) == (
        "reply to: Say hi\nreply to: Say hi"
    )
    assert cli.result_text(Response.model_validate(result(RESPONSES_PATH)), False) == (
        "reply to: Say hi"
    )
    embeddings = CreateEmbeddingResponse.model_validate(result(EMBEDDINGS_PATH))
    assert json.loads(cli.result_text(embeddings, False)) == embeddings.model_dump(mode="json")
    chat = ChatCompletion.model_validate(result(CHAT_PATH))
    assert json.loads(cli.result_text(chat, True))["object"] == "chat.completion"


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> ScriptedGateway:
    script = ScriptedGateway([])

    def gateway(url: str | None, key: str | None) -> Gateway:
        return Gateway(url, key, transport=script.transport, clock=FakeClock())

    monkeypatch.setattr(cli, "Gateway", gateway)
    return script


def test_get_prints_the_job(scripted: ScriptedGateway, capsys: pytest.CaptureFixture) -> None:
    scripted.answers = [answer(202, job("processing"))]

    status = cli.main(["get", "--url", URL, "--api-key", "sk-bf-k", "--type", "responses", JOB_ID])

    printed = json.loads(capsys.readouterr().out)
    assert status == 0
    assert (printed["id"], printed["type"], printed["status"]) == (
        JOB_ID,
        "responses",
        "processing",
    )
    assert scripted.requests[0].url.path == f"/v1/async/responses/{JOB_ID}"


def test_a_wait_past_its_timeout_exits_3_naming_the_job(
    scripted: ScriptedGateway, capsys: pytest.CaptureFixture
) -> None:
    scripted.answers = [answer(202, job("processing"), "2")] * 3

    status = cli.main(["wait", "--url", URL, "--api-key", "sk-bf-k", "--timeout", "3", JOB_ID])

    assert status == 3
    assert f"gateway-client wait --type chat {JOB_ID}" in capsys.readouterr().err


def test_a_refused_submit_exits_1_with_the_error_shape(
    scripted: ScriptedGateway, capsys: pytest.CaptureFixture
) -> None:
    scripted.answers = [answer(403, error_shape(403, "model_not_allowed", "Not for this key"))]

    status = cli.main(["submit", "--api-key", "sk-bf-k", "--model", "openai/m", "--prompt", "hi"])

    err = capsys.readouterr().err
    assert status == 1
    assert "HTTP 403: Not for this key" in err
    assert '"code": "model_not_allowed"' in err


def test_no_key_exits_1_saying_where_to_put_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.delenv("GATEWAY_API_KEY", raising=False)

    status = cli.main(["get", JOB_ID])

    assert status == 1
    assert "GATEWAY_API_KEY" in capsys.readouterr().err
