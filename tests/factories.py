from __future__ import annotations

from typing import Any

import factory
from django.utils import timezone

from gateway.access.keys import display_prefix, generate_key, hash_key
from gateway.access.models import VirtualKey
from jobs.models import AsyncJob, JobStatus, RequestType


class VirtualKeyFactory(factory.django.DjangoModelFactory):
    """Builds a key; the raw value is on ``key.raw`` (only in the test, never stored)."""

    class Meta:
        model = VirtualKey

    name = factory.Sequence(lambda n: f"app-{n}")
    allowed_models: Any = factory.LazyFunction(list)
    is_active = True
    expires_at = None

    @classmethod
    def _create(cls, model_class: type[VirtualKey], *args: Any, **kwargs: Any) -> VirtualKey:
        raw = kwargs.pop("raw", None) or generate_key()
        key = model_class.objects.create(
            prefix=display_prefix(raw), key_hash=hash_key(raw), **kwargs
        )
        key.raw = raw  # type: ignore[attr-defined]
        return key


class AsyncJobFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AsyncJob

    request_type = RequestType.TEXT_COMPLETION
    virtual_key = factory.SubFactory(VirtualKeyFactory)
    status = JobStatus.PENDING
    provider = "openai"
    model = "gpt-test"
    fallbacks: Any = factory.LazyFunction(list)
    request: Any = factory.LazyFunction(lambda: {"prompt": "Say hi", "max_tokens": 5})
    result_ttl = 3600
    dispatched_at = factory.LazyFunction(timezone.now)
