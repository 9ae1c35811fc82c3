"""A VIES-shaped server for tests: `GET /ms/{country}/vat/{number}` answers as the EU's VIES
REST API does (`isValid`, `userError`, `name`, `requestIdentifier`; `---` for withheld
fields), from a registry of known ids. Member states listed in `unavailable` answer
`MS_UNAVAILABLE`, as VIES does when a national system is down. Requests are recorded."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime

from aiohttp import web


class FakeVies:
    def __init__(self, registered: dict[str, str] | None = None) -> None:
        self.registered: dict[str, str] = dict(registered or {})  # "FR40303265045" -> name
        self.unavailable: set[str] = set()
        self.asked: list[str] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/ms/{country}/vat/{number}", self._check)
        return app

    async def _check(self, request: web.Request) -> web.Response:
        country = request.match_info["country"]
        number = request.match_info["number"]
        if not re.fullmatch(r"[A-Z]{2}", country) or not re.fullmatch(r"[0-9A-Z+*]{2,12}", number):
            return web.json_response(
                {"actionSucceed": False, "errorWrappers": [{"error": "INVALID_INPUT"}]},
                status=400,
            )
        self.asked.append(country + number)
        base = {
            "requestDate": datetime.now(UTC).isoformat(),
            "vatNumber": number,
            "name": "---",
            "address": "---",
            "requestIdentifier": "",
        }
        if country in self.unavailable:
            return web.json_response({**base, "isValid": False, "userError": "MS_UNAVAILABLE"})
        name = self.registered.get(country + number)
        if name is None:
            return web.json_response({**base, "isValid": False, "userError": "INVALID"})
        return web.json_response(
            {
                **base,
                "isValid": True,
                "userError": "VALID",
                "name": name,
                "requestIdentifier": f"WAPIAAAA{secrets.token_hex(6).upper()}",
            }
        )
