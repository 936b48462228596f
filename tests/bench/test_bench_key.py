"""The benchmark's and the drill's key carries every limit and a budget, none reachable."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from gateway.access.models import VirtualKey
from harness.stack import UNREACHED_LIMITS

pytestmark = pytest.mark.django_db


def test_the_bench_key_is_made_with_every_limit_and_a_budget_set(capsys):
    call_command("create_virtual_key", "--name", "bench-key", *UNREACHED_LIMITS)
    key = VirtualKey.objects.get(name="bench-key")
    limits = (key.requests_per_minute, key.tokens_per_minute, key.max_pending)
    assert limits == (10**9, 10**9, 10**9)
    assert key.budget_usd == 10**9 and key.budget_period == "monthly"
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("sk-")
