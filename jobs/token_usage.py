"""The tokens a job's result reports in its ``usage``, read one way for every use of them: the
key's token rate (jobs/limits.py), the charge (jobs/charges.py) and the metrics
(jobs/metrics.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

# Each direction's field in the OpenAI objects a result holds: completions, chat completions and
# embeddings (which have no completion) name prompt_tokens and completion_tokens; responses
# name input_tokens and output_tokens. The first one present is read.
_FIELDS = (("prompt_tokens", "input_tokens"), ("completion_tokens", "output_tokens"))


class TokenUsage(NamedTuple):
    prompt: int = 0
    completion: int = 0

    @property
    def total(self) -> int:
        return self.prompt + self.completion


def token_usage(result: object) -> TokenUsage:
    """A result's tokens by direction; what is missing, or not a positive integer, is 0."""
    usage = result.get("usage") if isinstance(result, Mapping) else None
    if not isinstance(usage, Mapping):
        return TokenUsage()
    return TokenUsage(*(_count(usage, names) for names in _FIELDS))


def _count(usage: Mapping[object, object], names: tuple[str, ...]) -> int:
    for name in names:
        if name in usage:
            value = usage[name]
            positive = isinstance(value, int) and not isinstance(value, bool) and value > 0
            return value if positive else 0  # type: ignore[return-value]
    return 0
