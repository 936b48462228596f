"""A client of the AI gateway's asynchronous job API: submit, wait (honouring ``Retry-After``),
get, cancel; results as the openai SDK's types. No dependency on the gateway's own code."""

from gateway_client.client import AsyncGateway, Gateway
from gateway_client.errors import (
    APIError,
    GatewayClientError,
    JobCancelledError,
    JobFailedError,
    RateLimitError,
    WaitTimeout,
)
from gateway_client.jobs import ErrorBody, ErrorDetail, Job
from gateway_client.request_types import (
    BY_NAME,
    CHAT,
    COMPLETIONS,
    EMBEDDINGS,
    RESPONSES,
    RequestType,
)
from gateway_client.retries import Backoff, Clock, RetryPolicy

__all__ = [
    "BY_NAME",
    "CHAT",
    "COMPLETIONS",
    "EMBEDDINGS",
    "RESPONSES",
    "APIError",
    "AsyncGateway",
    "Backoff",
    "Clock",
    "ErrorBody",
    "ErrorDetail",
    "Gateway",
    "GatewayClientError",
    "Job",
    "JobCancelledError",
    "JobFailedError",
    "RateLimitError",
    "RequestType",
    "RetryPolicy",
    "WaitTimeout",
]
