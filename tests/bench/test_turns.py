"""S1 and S4: the gateway and the reference take turns, and each side's turns sum to one rate."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from bench import scenarios
from bench.scenarios import FULL, TURN_ORDER, _summed, _versus_reference


def _turn(ok: int, seconds: float, statuses: dict[str, int] | None = None) -> dict[str, Any]:
    return {
        "requests": ok + 1,
        "errors": 1,
        "ok": ok,
        "seconds": seconds,
        "rate": ok / seconds,
        "statuses": statuses or {"202": ok},
    }


def test_a_sides_turns_sum_to_the_rate_of_their_sums():
    turns = [_turn(800, 7.5, {"202": 800, "503": 2}), _turn(400, 7.5, {"202": 400})]
    summed = _summed(turns)
    assert summed["ok"] == 1200 and summed["requests"] == 1202 and summed["errors"] == 2
    assert summed["seconds"] == 15.0
    assert summed["rate"] == 80.0  # not the mean of the turns' rates taken any other way
    assert summed["statuses"] == {"202": 1200, "503": 2}
    assert summed["turns"] == turns


def test_the_gateway_measures_first_and_last_the_reference_between(monkeypatch):
    calls: list[tuple[str, str, float, float]] = []
    rates = {"gateway": iter([500, 700]), "reference": iter([1000, 1400])}

    def measured(url: str, sizes: Any, log: Any, label: str, **options: Any) -> dict[str, Any]:
        calls.append((label, url, sizes.seconds, sizes.warmup))
        return _turn(int(next(rates[label]) * sizes.seconds), sizes.seconds)

    monkeypatch.setattr(scenarios, "_measured", measured)
    stack: Any = SimpleNamespace(
        web_url="http://gw", reference_url="http://ref", auth={}, truncate=lambda: None
    )
    result = _versus_reference(stack, FULL, lambda line: None, "S1", "/ours", "/theirs")

    assert TURN_ORDER == ("gateway", "reference", "reference", "gateway")
    assert [(label, url) for label, url, _, _ in calls] == [
        ("gateway", "http://gw/ours"),
        ("reference", "http://ref/theirs"),
        ("reference", "http://ref/theirs"),
        ("gateway", "http://gw/ours"),
    ]
    assert {(seconds, warmup) for _, _, seconds, warmup in calls} == {
        (FULL.seconds / 2, FULL.warmup / 2)
    }
    assert result["gateway"]["rate"] == 600 and result["reference"]["rate"] == 1200
    assert result["ratio"] == 0.5
    assert len(result["gateway"]["turns"]) == len(result["reference"]["turns"]) == 2
