"""Is this VAT id registered? The EU's VIES service, asked before reverse charge applies.

A well-formed VAT id is not enough for reverse charge: the customer must be a registered
business. VIES answers per member state, and member states' systems are often away
(`MS_UNAVAILABLE`, `TIMEOUT`, too many concurrent requests); such answers are `unavailable`,
never `valid`. Definite answers are cached for a day (a cache, not the truth: each hub node
keeps its own). The request identifier VIES returns is kept as the proof of the check.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import aiohttp

from core.logs import get_logger

log = get_logger(__name__)

TIMEOUT = aiohttp.ClientTimeout(total=6)
CACHE_SECONDS = 24 * 3600.0
CACHE_SIZE = 10_000
# userError values that are a definite "not registered"; every other non-VALID one (member
# state unavailable, timeouts, rate limits, blocked) says nothing about the id.
NOT_REGISTERED = frozenset({"INVALID", "INVALID_INPUT"})


class VatIdStatus(StrEnum):
    VALID = "valid"
    INVALID = "invalid"
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True, slots=True)
class VatIdCheck:
    status: VatIdStatus
    name: str = ""
    request_id: str = ""


class ViesClient:
    def __init__(self, *, api_base: str, session: aiohttp.ClientSession) -> None:
        self._base = api_base.rstrip("/")
        self._session = session
        self._cache: dict[str, tuple[float, VatIdCheck]] = {}

    async def check(self, vat_id: str) -> VatIdCheck:
        """`vat_id` normalised, with its VIES prefix (EL for Greece)."""
        cached = self._cache.get(vat_id)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        result = await self._ask(vat_id[:2], vat_id[2:])
        if result.status is not VatIdStatus.UNAVAILABLE:
            if len(self._cache) >= CACHE_SIZE:
                self._cache.clear()
            self._cache[vat_id] = (time.monotonic() + CACHE_SECONDS, result)
        return result

    async def _ask(self, country: str, number: str) -> VatIdCheck:
        url = f"{self._base}/ms/{country}/vat/{number}"
        try:
            async with self._session.get(url, timeout=TIMEOUT) as resp:
                body = await resp.json(content_type=None)
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning("vies_unreachable", error=type(exc).__name__)
            return VatIdCheck(VatIdStatus.UNAVAILABLE)
        if not isinstance(body, dict):
            log.warning("vies_malformed_answer", status=status)
            return VatIdCheck(VatIdStatus.UNAVAILABLE)
        return _read_answer(body, status)


def _read_answer(body: dict[str, Any], status: int) -> VatIdCheck:
    if body.get("isValid") is True:
        return VatIdCheck(
            VatIdStatus.VALID,
            name=_text(body.get("name")),
            request_id=_text(body.get("requestIdentifier")),
        )
    error = str(body.get("userError") or "")
    wrapped = body.get("errorWrappers")
    if not error and isinstance(wrapped, list) and wrapped and isinstance(wrapped[0], dict):
        error = str(wrapped[0].get("error") or "")
    if body.get("isValid") is False and error in NOT_REGISTERED:
        return VatIdCheck(VatIdStatus.INVALID)
    if status < 500 and error == "INVALID_INPUT":
        return VatIdCheck(VatIdStatus.INVALID)
    log.warning("vies_unavailable", status=status, error=error or "unknown")
    return VatIdCheck(VatIdStatus.UNAVAILABLE)


def _text(value: Any) -> str:
    """VIES writes `---` where it withholds a field."""
    text = str(value or "").strip()
    return "" if text == "---" else text[:200]
