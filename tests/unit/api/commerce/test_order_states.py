"""The order state machine: its transitions live in one table."""

from __future__ import annotations

import pytest

from api.commerce.orders import TRANSITIONS, can_transition
from db.models.commerce import OrderStatus as S


def test_every_state_is_in_the_table() -> None:
    assert set(TRANSITIONS) == set(S)


@pytest.mark.parametrize(
    ("current", "new"),
    [
        (S.PENDING, S.PAID),
        (S.PENDING, S.CANCELLED),
        (S.CANCELLED, S.PAID),
        (S.PAID, S.FULFILLING),
        (S.FULFILLING, S.SHIPPED),
        (S.SHIPPED, S.DELIVERED),
        (S.DELIVERED, S.PARTIALLY_REFUNDED),
        (S.PARTIALLY_REFUNDED, S.REFUNDED),
        (S.PARTIALLY_REFUNDED, S.PARTIALLY_REFUNDED),
    ],
)
def test_allowed(current: S, new: S) -> None:
    assert can_transition(current, new)


@pytest.mark.parametrize(
    ("current", "new"),
    [
        (S.PENDING, S.SHIPPED),
        (S.PENDING, S.REFUNDED),
        (S.CANCELLED, S.SHIPPED),
        (S.PAID, S.PENDING),
        (S.SHIPPED, S.FULFILLING),
        (S.REFUNDED, S.PAID),
        (S.DELIVERED, S.CANCELLED),
    ],
)
def test_refused(current: S, new: S) -> None:
    assert not can_transition(current, new)
