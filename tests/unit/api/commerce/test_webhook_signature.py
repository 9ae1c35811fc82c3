"""Stripe signatures are checked by the library: valid, tampered, wrong secret, stale."""

from __future__ import annotations

import time

import pytest

from api.commerce import ledger
from api.commerce.webhooks import InvalidSignature, verify_stripe_event
from tests.fakes.stripe_server import WEBHOOK_SECRET, event, sign


def test_a_signed_event_is_read() -> None:
    payload = event("payment_intent.succeeded", {"id": "pi_1"}, event_id="evt_1")
    got = verify_stripe_event(payload=payload, signature=sign(payload), secret=WEBHOOK_SECRET)
    assert (got["id"], got["data"]["object"]["id"]) == ("evt_1", "pi_1")


@pytest.mark.parametrize("case", ["tampered", "wrong_secret", "stale", "missing", "garbage"])
def test_bad_signatures_are_refused(case: str) -> None:
    payload = event("payment_intent.succeeded", {"id": "pi_1"})
    signature = {
        "tampered": sign(payload.replace(b"pi_1", b"pi_2")),
        "wrong_secret": sign(payload, "whsec_other"),
        "stale": sign(payload, timestamp=int(time.time()) - 301),
        "missing": None,
        "garbage": "t=1,v1=zz",
    }[case]
    with pytest.raises(InvalidSignature) as caught:
        verify_stripe_event(payload=payload, signature=signature, secret=WEBHOOK_SECRET)
    assert (caught.value.code, caught.value.status) == ("invalid_signature", 400)


async def test_an_unbalanced_booking_is_never_written() -> None:
    with pytest.raises(ledger.UnbalancedEntry):
        await ledger.post(
            reference="x",
            currency="EUR",
            order_id=None,
            description="",
            lines=[ledger.Line(ledger.CASH, debit=100), ledger.Line(ledger.SALES, credit=99)],
        )
