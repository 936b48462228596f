"""What the worker counts from a job's routing: calls by outcome, retries, fallbacks, tokens."""

from __future__ import annotations

from jobs import metrics
from jobs.engine import _count_calls
from jobs.token_usage import TokenUsage
from providers.base import Target
from providers.routing import Attempt, RoutingOutcome


def _count(metric, *labels: str) -> float:
    return float(metric.labels(*labels)._value.get())


def _calls(*labels: str) -> float:
    """Observations of the upstream latency histogram with these labels."""
    return sum(bucket.get() for bucket in metrics.UPSTREAM_SECONDS.labels(*labels)._buckets)


def test_a_retry_then_a_fallback_count_as_such_with_each_calls_outcome():
    primary, fallback = ("p-test", "m-primary"), ("f-test", "m-fallback")
    before = {
        "retries": _count(metrics.RETRIES, *primary),
        "fallbacks": _count(metrics.FALLBACKS, *fallback),
        "transient": _calls(*primary, "transient_error"),
    }
    outcome = RoutingOutcome(
        result={"ok": True},
        served_by=Target(*fallback),
        error=None,
        failed_target=None,
        attempts=[
            Attempt(*primary, 503, "overloaded", True, 0.2),
            Attempt(*primary, 503, "overloaded", True, 0.3),
            Attempt(*fallback, 200, None, False, 0.1),
        ],
    )
    _count_calls(outcome)
    assert _count(metrics.RETRIES, *primary) == before["retries"] + 1
    assert _count(metrics.FALLBACKS, *fallback) == before["fallbacks"] + 1
    assert _calls(*primary, "transient_error") == before["transient"] + 2
    assert _calls(*fallback, "ok") >= 1


def test_a_target_never_called_has_no_latency_sample():
    target = ("unconfigured-test", "m")
    never_called = Attempt(*target, None, "provider_not_configured", False)
    outcome = RoutingOutcome(None, None, None, Target(*target), [never_called])
    _count_calls(outcome)
    assert _calls(*target, "permanent_error") == 0


def test_tokens_are_counted_by_key_name_model_and_direction():
    before = _count(metrics.TOKENS, "key-test", "m-test", "completion")
    metrics.count_tokens("key-test", "m-test", TokenUsage(prompt=0, completion=9))
    assert _count(metrics.TOKENS, "key-test", "m-test", "completion") == before + 9
    assert _count(metrics.TOKENS, "key-test", "m-test", "prompt") == 0
