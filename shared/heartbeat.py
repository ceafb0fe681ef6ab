"""A token heartbeat: proves, on a schedule, that the app can still get its token."""

from __future__ import annotations

import logging

from shared.instance import current_instance

__all__ = ["heartbeat"]

logger = logging.getLogger(__name__)


async def heartbeat(*, past_due: bool = False) -> dict[str, int]:
    """Get a token for every allowed tenant through the instance's cache; log one line."""
    instance = current_instance()
    for tenant in instance.settings.allowed_tenants:
        await instance.token_cache.get_token(tenant)
    stats = instance.token_cache.stats.as_dict()
    logger.info(
        "heartbeat: %d tenant(s) ok%s; token cache %s",
        len(instance.settings.allowed_tenants),
        " (run was past due)" if past_due else "",
        stats,
    )
    return stats
