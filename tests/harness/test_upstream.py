"""The fake upstream: each model's behaviour, the counters and controls, and its process mode."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
from openai.types import CreateEmbeddingResponse
from openai.types.chat import ChatCompletion
from openai.types.responses import Response

from harness.procs import Procs, free_port
from harness.upstream import (
    ANTHROPIC_PATH,
    CHAT_PATH,
    EMBEDDINGS_PATH,
    FAULTS,
    REDIRECT_QUERY_TOKEN,
    RESPONSES_PATH,
    UPSTREAM_OPENAI_KEY,
    FakeUpstream,
    control,
    embedding_of,
    reply_text,
)


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream(hang_seconds=1.0) as server:
        yield server


def post(upstream: FakeUpstream, model: str, path: str = "/v1/completions", **body: Any):
    headers = {"Authorization": f"Bearer {UPSTREAM_OPENAI_KEY}"}
    payload = {"model": model, "prompt": "Say hi", **body}
    return httpx.post(f"{upstream.base_url}{path}", json=payload, headers=headers, timeout=5)


def test_any_other_model_gets_a_text_completion_derived_from_the_prompt(upstream):
    response = post(upstream, "gpt-bench", prompt=["one", "two"], n=2)
    body = response.json()
    assert (response.status_code, body["object"], body["model"]) == (
        200,
        "text_completion",
        "gpt-bench",
    )
    assert [c["text"] for c in body["choices"]] == [reply_text("one")] * 2 + [reply_text("two")] * 2
    assert [c["index"] for c in body["choices"]] == [0, 1, 2, 3]
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] == 2 + 12


def test_anthropic_messages_get_a_message_and_errors_in_anthropics_shape(upstream):
    ok = post(upstream, "ok", ANTHROPIC_PATH, messages=[{"role": "user", "content": "hi"}])
    assert ok.json()["type"] == "message"
    assert ok.json()["content"] == [{"type": "text", "text": reply_text("hi")}]
    failed = post(upstream, "fail-500", ANTHROPIC_PATH, messages=[{"content": "hi"}])
    assert failed.status_code == 500
    assert failed.json()["type"] == "error"


def test_responses_answer_a_response_object_or_one_completed_event_when_streamed(upstream):
    plain = post(upstream, "gpt-r", "/v1/responses", input="hi").json()
    assert (plain["object"], plain["status"], plain["id"][:5]) == ("response", "completed", "resp_")
    assert plain["output"][0]["content"][0]["text"] == reply_text("hi")
    streamed = post(upstream, "gpt-r", "/v1/responses", input="hi", stream=True)
    assert streamed.headers["Content-Type"].startswith("text/event-stream")
    event = json.loads(streamed.text.removeprefix("data: "))
    assert event["type"] == "response.completed"
    assert event["response"]["model"] == "gpt-r"
    assert post(upstream, "m", stream=True).status_code == 400  # completions do not stream


def chat(*messages: dict[str, Any]) -> dict[str, Any]:
    return {"messages": list(messages), "prompt": None}


def test_chat_completions_answer_the_last_user_message_n_times(upstream):
    body = chat(
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "an answer"},
        {
            "role": "user",
            "content": [{"type": "text", "text": "second "}, {"type": "text", "text": "question"}],
        },
    )
    response = post(upstream, "gpt-chat", CHAT_PATH, n=2, **body)

    completion = ChatCompletion.model_validate(response.json())
    assert (completion.object, completion.model) == ("chat.completion", "gpt-chat")
    assert [c.message.content for c in completion.choices] == [reply_text("second question")] * 2
    assert [c.index for c in completion.choices] == [0, 1]
    assert completion.usage is not None
    assert completion.usage.total_tokens == 2 + 2 * 4  # "reply to: second question", twice
    [call] = upstream.calls(model="gpt-chat")
    assert (call.path, call.prompts) == (CHAT_PATH, ("second question",))


def test_embeddings_answer_one_small_deterministic_vector_per_input_in_order(upstream):
    response = post(upstream, "embed-small", EMBEDDINGS_PATH, input=["one", "two words"])

    embeddings = CreateEmbeddingResponse.model_validate(response.json())
    assert [e.index for e in embeddings.data] == [0, 1]
    assert [e.embedding for e in embeddings.data] == [
        embedding_of("one"),
        embedding_of("two words"),
    ]
    assert len(embedding_of("one")) == 8 and embedding_of("one") != embedding_of("two words")
    assert (embeddings.usage.prompt_tokens, embeddings.usage.total_tokens) == (3, 3)
    single = post(upstream, "embed-one", EMBEDDINGS_PATH, input="alone").json()
    assert [e["embedding"] for e in single["data"]] == [embedding_of("alone")]
    assert [c.prompts for c in upstream.calls(model="embed-small")] == [("one", "two words")]


def test_a_plain_response_parses_as_the_sdk_response_whatever_the_input_shape(upstream):
    for given, prompt in [
        ("hi there", "hi there"),
        ([{"role": "user", "content": [{"type": "input_text", "text": "hello"}]}], "hello"),
    ]:
        response = Response.model_validate(
            post(upstream, "gpt-r2", RESPONSES_PATH, input=given).json()
        )
        assert response.output_text == reply_text(prompt)
        assert response.usage is not None and response.usage.total_tokens > 0


@pytest.mark.parametrize("path", [CHAT_PATH, EMBEDDINGS_PATH, RESPONSES_PATH, ANTHROPIC_PATH])
def test_the_special_models_behave_the_same_on_every_path(upstream, path):
    body = {"input": "Say hi", "messages": [{"role": "user", "content": "Say hi"}]}
    assert post(upstream, "fail-500", path, **body).status_code == 500
    assert post(upstream, "redirect-308", path, **body).status_code == 308
    assert post(upstream, "html-502", path, **body).status_code == 502
    assert post(upstream, "fault-wrong-type", path, **body).text.startswith("<html>")
    flaky = {"input": path, "messages": [{"role": "user", "content": path}]}
    assert [post(upstream, "flaky-503", path, **flaky).status_code for _ in range(2)] == [503, 200]
    started = time.monotonic()
    assert post(upstream, "slow-100", path, **body).status_code == 200
    assert time.monotonic() - started >= 0.1
    if path != ANTHROPIC_PATH:  # the Anthropic key travels in x-api-key, not sent here
        assert UPSTREAM_OPENAI_KEY in post(upstream, "bad-400", path, **body).text
        assert UPSTREAM_OPENAI_KEY in post(upstream, "leak-200", path, **body).text
        assert UPSTREAM_OPENAI_KEY in post(upstream, "leak-500", path, **body).text


def test_a_weather_question_with_tools_gets_a_tool_use_on_messages(upstream):
    tools = [{"name": "get_weather", "input_schema": {"type": "object"}}, {"name": "other"}]
    asked = [
        {"role": "user", "content": [{"type": "text", "text": "What is the Weather in Paris?"}]}
    ]
    answer = post(upstream, "claude-t", ANTHROPIC_PATH, messages=asked, tools=tools).json()
    assert answer["stop_reason"] == "tool_use"
    [block] = answer["content"]
    assert (block["type"], block["name"], block["input"]) == (
        "tool_use",
        "get_weather",
        {"city": "Paris"},
    )
    assert block["id"].startswith("toolu_")
    without_tools = post(upstream, "claude-t", ANTHROPIC_PATH, messages=asked).json()
    assert without_tools["stop_reason"] == "end_turn"
    other = [{"role": "user", "content": "Tell me a joke"}]
    plain = post(upstream, "claude-t", ANTHROPIC_PATH, messages=other, tools=tools).json()
    assert plain["content"] == [{"type": "text", "text": reply_text("Tell me a joke")}]


def test_reply_ids_are_unique(upstream):
    assert len({post(upstream, "m").json()["id"] for _ in range(20)}) == 20


def test_a_body_that_is_not_a_json_object_is_a_400(upstream):
    for raw in (b"{not json", b"[1, 2]"):
        response = httpx.post(f"{upstream.base_url}/v1/completions", content=raw)
        assert response.status_code == 400
        assert response.json()["error"]["message"]


def test_flaky_refuses_each_prompt_once_then_succeeds(upstream):
    assert [post(upstream, "flaky-503", prompt="p1").status_code for _ in range(2)] == [503, 200]
    assert post(upstream, "flaky-503", prompt="p2").status_code == 503


def test_leaking_models_echo_the_callers_key(upstream):
    assert UPSTREAM_OPENAI_KEY in post(upstream, "bad-400").json()["error"]["message"]
    assert post(upstream, "leak-200").json()["id"].endswith(f"[{UPSTREAM_OPENAI_KEY}]")
    page = post(upstream, "html-502")
    assert (page.status_code, page.headers["Content-Type"][:9]) == (502, "text/html")
    assert UPSTREAM_OPENAI_KEY in page.text and "\x1b" in page.text


def test_a_redirect_points_at_the_trap_which_records_what_reaches_it(upstream):
    response = post(upstream, "redirect-307")
    assert response.status_code == 307
    assert response.headers["Location"].startswith(f"{upstream.trap_url}/v1/completions?")
    assert REDIRECT_QUERY_TOKEN in response.headers["Location"]
    httpx.post(f"{upstream.trap_url}/anything", content=b"x")
    assert [(c.method, c.path, c.body) for c in upstream.trap_calls()] == [
        ("POST", "/anything", b"x")
    ]


def test_slow_models_sleep_and_calls_are_recorded_with_their_headers(upstream):
    started = time.monotonic()
    assert post(upstream, "slow-200", prompt="slowly").status_code == 200
    assert time.monotonic() - started >= 0.2
    [call] = upstream.calls(model="slow-200")
    assert (call.prompts, call.status) == (("slowly",), 200)
    assert call.headers["authorization"] == f"Bearer {UPSTREAM_OPENAI_KEY}"
    assert upstream.max_in_flight("slow-200") == 1


# --- the drill's faults -------------------------------------------------------------------------
def fault(upstream: FakeUpstream, model: str) -> tuple[int, str, bytes]:
    async def send() -> tuple[int, str, bytes]:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.5)) as session:
            body = {"model": model, "prompt": "Say hi"}
            async with session.post(f"{upstream.base_url}/v1/completions", json=body) as r:
                return r.status, r.content_type, await r.read()

    return asyncio.run(send())


def test_bad_json_is_a_200_json_reply_that_does_not_parse(upstream):
    status, content_type, body = fault(upstream, "fault-bad-json")
    assert (status, content_type) == (200, "application/json")
    with pytest.raises(ValueError):
        json.loads(body)


def test_wrong_type_is_a_200_html_page(upstream):
    status, content_type, body = fault(upstream, "fault-wrong-type")
    assert (status, content_type, body[:6]) == (200, "text/html", b"<html>")


@pytest.mark.parametrize(
    ("model", "error"),
    [
        ("fault-truncated", aiohttp.ClientPayloadError),
        ("fault-close", aiohttp.ServerDisconnectedError),
        ("fault-hang", TimeoutError),
    ],
)
def test_a_fault_that_never_answers_whole_fails_the_client(upstream, model, error):
    with pytest.raises(error):
        fault(upstream, model)
    assert upstream.stats()["by_model"][model] >= 1


def test_the_fault_modes_are_the_five_the_drill_reports():
    assert FAULTS == (
        "fault-hang",
        "fault-bad-json",
        "fault-wrong-type",
        "fault-truncated",
        "fault-close",
    )


# --- counters, controls and the process mode ----------------------------------------------------
def test_latency_changes_at_run_time_and_peak_in_flight_is_counted():
    with FakeUpstream(record=False) as upstream:
        assert control(upstream.base_url, "latency", {"ms": 200})["latency_ms"] == 200

        async def burst() -> None:
            async with aiohttp.ClientSession() as session:
                url, body = f"{upstream.base_url}/v1/completions", {"model": "m"}
                await asyncio.gather(*(session.post(url, json=body) for _ in range(10)))

        started = time.monotonic()
        asyncio.run(burst())
        assert 0.2 <= time.monotonic() - started < 1.0  # concurrently, not one after another
        stats = control(upstream.base_url, "stats")
        assert {k: stats[k] for k in ("requests", "in_flight", "peak_in_flight")} == {
            "requests": 10,
            "in_flight": 0,
            "peak_in_flight": 10,
        }
        assert upstream.calls() == []  # not recorded
        reset = control(upstream.base_url, "reset")
        assert (reset["requests"], reset["peak_in_flight"], reset["latency_ms"]) == (0, 0, 200)


def test_bad_latency_is_refused():
    with FakeUpstream() as upstream:
        for payload in ({"ms": -1}, {"ms": "fast"}, {"ms": True}, {}):
            response = httpx.post(f"{upstream.base_url}/__upstream/latency", json=payload)
            assert response.status_code == 400, payload
        assert upstream.latency_ms == 0


def test_runs_as_a_module_with_a_start_latency_until_sigterm(tmp_path: Path):
    port = free_port()
    argv = [sys.executable, "-m", "harness.upstream", "--port", str(port), "--latency-ms", "30"]
    with Procs(tmp_path) as procs:
        procs.start("upstream", argv)
        procs.wait_http("upstream", f"http://127.0.0.1:{port}/health", timeout=20)
        assert control(f"http://127.0.0.1:{port}", "stats")["latency_ms"] == 30
        assert procs.stop("upstream") == 0  # a clean exit on SIGTERM
