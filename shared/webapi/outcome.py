"""What a final answer or a final transport failure means for the caller.

The retry rules (:mod:`shared.webapi.retry`) say whether to send again; once the client has
stopped sending, these functions turn the last answer into the :class:`ApiResponse` the caller
gets (marking a 5xx to a non-idempotent request ``outcome_unknown``) or the last transport
error into an :class:`ApiTransportError`, and write the one log line that goes with it.

A caller that does its own resending (one attempt per call: the batch engine) decides and
logs what a failure means; for it the give-up lines are DEBUG, not ERROR, so an outage does
not log every failure twice.
"""

from __future__ import annotations

import dataclasses
import logging

import httpx

from shared.errors import ApiTransportError
from shared.webapi.exchange import LOGGER_NAME, Exchange
from shared.webapi.response import ApiResponse, parse_json_body
from shared.webapi.retry import Disposition, RetryPolicy

__all__ = ["final_answer", "give_up_level", "to_response", "transport_failure"]

logger = logging.getLogger(LOGGER_NAME)


def give_up_level(policy: RetryPolicy) -> int:
    """DEBUG for a single-attempt policy (the caller resends and logs), else ERROR."""
    return logging.DEBUG if policy.max_attempts <= 1 else logging.ERROR


def to_response(response: httpx.Response, exchange: Exchange) -> ApiResponse:
    """The answer as an :class:`ApiResponse`, its JSON body parsed (or the problem noted)."""
    content = response.content
    body, problem = parse_json_body(response.headers.get("content-type", ""), content)
    return ApiResponse(
        status=response.status_code,
        headers=response.headers,
        body=body,
        content=content,
        request_id=exchange.request_id,
        attempts=exchange.attempts,
        json_problem=problem,
    )


def final_answer(exchange: Exchange, answer: ApiResponse, disposition: Disposition) -> ApiResponse:
    """The answer handed back once no more sends follow.

    OUTCOME_UNKNOWN (a 5xx to a request that must not be resent) comes back marked
    ``outcome_unknown``; any other error status is logged at INFO with its OData error code.
    """
    if disposition is Disposition.OUTCOME_UNKNOWN:
        logger.log(
            give_up_level(exchange.policy),
            "%s %s answered %d (client-request-id %s): outcome unknown, not resent",
            exchange.method,
            exchange.path,
            answer.status,
            exchange.request_id,
        )
        return dataclasses.replace(answer, outcome_unknown=True)
    if not answer.ok:
        logger.info(
            "%s %s answered %d %s (client-request-id %s)",
            exchange.method,
            exchange.path,
            answer.status,
            answer.error_code or "",
            exchange.request_id,
        )
    return answer


def transport_failure(
    exchange: Exchange, exc: httpx.TransportError, disposition: Disposition
) -> ApiTransportError:
    """The error to raise (chained to ``exc`` by the caller) when no answer arrived and no
    resend follows; ``outcome_unknown`` when the request may have been applied."""
    unknown = disposition is Disposition.OUTCOME_UNKNOWN
    name = exc.__class__.__name__
    logger.log(
        give_up_level(exchange.policy),
        "%s %s failed: %s (client-request-id %s) after %d attempt(s)%s",
        exchange.method,
        exchange.path,
        name,
        exchange.request_id,
        exchange.attempts,
        "; outcome unknown, not resent" if unknown else "",
    )
    return ApiTransportError(
        f"{exchange.method} {exchange.path}: {name} after {exchange.attempts} "
        f"attempt(s) (client-request-id {exchange.request_id})"
        + ("; the request may have been applied" if unknown else ""),
        outcome_unknown=unknown,
    )
