"""A job as the gateway answers it, and the error shape its failures and refusals carry."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from gateway_client.request_types import RequestType, ResultT

Status = Literal["pending", "processing", "completed", "failed", "cancelled"]
TERMINAL: frozenset[str] = frozenset({"completed", "failed", "cancelled"})


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str | None = None
    code: str | None = None
    message: str = ""
    param: str | None = None
    event_id: str | None = None


class ErrorBody(BaseModel):
    """The gateway's one error shape: every 4xx/5xx answer and a failed job's ``error``."""

    model_config = ConfigDict(extra="allow")

    event_id: str | None = None
    type: str | None = None
    is_bifrost_error: bool | None = None
    status_code: int | None = None
    error: ErrorDetail
    extra_fields: dict[str, Any] = {}

    @classmethod
    def read(cls, data: Any) -> ErrorBody | None:
        """The error shape in ``data``, or None when ``data`` is something else (a proxy's page)."""
        try:
            return cls.model_validate(data)
        except ValidationError:
            return None


@dataclass(frozen=True)
class Job(Generic[ResultT]):
    request_type: RequestType[ResultT]
    id: str
    status: Status
    created_at: datetime
    completed_at: datetime | None
    expires_at: datetime | None
    status_code: int | None
    result: ResultT | None  # the openai SDK object once completed
    error: ErrorBody | None  # once failed

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    @classmethod
    def read(cls, request_type: RequestType[ResultT], data: dict[str, Any]) -> Job[ResultT]:
        result, error = data.get("result"), data.get("error")
        return cls(
            request_type=request_type,
            id=str(data["id"]),
            status=data["status"],
            created_at=datetime.fromisoformat(data["created_at"]),
            completed_at=_timestamp(data.get("completed_at")),
            expires_at=_timestamp(data.get("expires_at")),
            status_code=data.get("status_code"),
            result=None if result is None else request_type.result.model_validate(result),
            error=None if error is None else ErrorBody.model_validate(error),
        )


def _timestamp(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)
