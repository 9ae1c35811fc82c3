"""The double-entry ledger: every money movement is one `LedgerTransaction` whose entries'
debits equal their credits; each booking has a unique reference, so it is written once.

Accounts (codes): `assets:stripe`, `assets:paypal` (money held at the provider), `revenue:sales`,
`revenue:shipping`, `liabilities:tax` (tax collected and owed), `contra:refunds` (revenue given
back). Sales credit revenue net of discounts; refunds give back tax in proportion.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from tortoise.functions import Sum

from db.models.commerce import AccountKind, LedgerAccount, LedgerEntry, LedgerTransaction, Order

CASH = "assets:stripe"
PAYPAL_CASH = "assets:paypal"
SALES = "revenue:sales"
SHIPPING = "revenue:shipping"
TAX = "liabilities:tax"
REFUNDS = "contra:refunds"

ACCOUNTS: dict[str, tuple[str, AccountKind]] = {
    CASH: ("Held at Stripe", AccountKind.ASSET),
    PAYPAL_CASH: ("Held at PayPal", AccountKind.ASSET),
    SALES: ("Sales", AccountKind.REVENUE),
    SHIPPING: ("Shipping charged", AccountKind.REVENUE),
    TAX: ("Tax collected", AccountKind.LIABILITY),
    REFUNDS: ("Refunds", AccountKind.CONTRA_REVENUE),
}


class UnbalancedEntry(ValueError):
    """A booking whose debits and credits differ: a bug, never written."""


@dataclass(frozen=True, slots=True)
class Line:
    account: str
    debit: int = 0
    credit: int = 0


async def _account(code: str) -> LedgerAccount:
    name, kind = ACCOUNTS[code]
    account, _ = await LedgerAccount.get_or_create(code=code, defaults={"name": name, "kind": kind})
    return account


async def post(
    *, reference: str, currency: str, lines: list[Line], order_id: UUID | None, description: str
) -> LedgerTransaction | None:
    """Book `lines` once under `reference` (inside the caller's transaction). Returns None if
    that reference is already booked."""
    lines = [line for line in lines if line.debit or line.credit]
    if any(line.debit < 0 or line.credit < 0 for line in lines):
        raise UnbalancedEntry(f"{reference}: negative amounts")
    if sum(line.debit for line in lines) != sum(line.credit for line in lines):
        raise UnbalancedEntry(f"{reference}: debits and credits differ")
    if await LedgerTransaction.exists(reference=reference):
        return None
    booking = await LedgerTransaction.create(
        reference=reference, currency=currency, order_id=order_id, description=description
    )
    for line in lines:
        account = await _account(line.account)
        await LedgerEntry.create(
            transaction_id=booking.id, account_id=account.id, debit=line.debit, credit=line.credit
        )
    return booking


def cash_account(provider: str) -> str:
    """Where a provider's money sits until it is paid out."""
    return PAYPAL_CASH if provider == "paypal" else CASH


async def book_sale(*, order: Order, payment_id: UUID, provider: str) -> None:
    goods = order.subtotal_amount - order.discount_amount
    await post(
        reference=f"payment:{payment_id}",
        currency=order.currency,
        order_id=order.id,
        description=f"Order {order.id} paid",
        lines=[
            Line(cash_account(provider), debit=order.total_amount),
            Line(SALES, credit=goods),
            Line(SHIPPING, credit=order.shipping_amount),
            Line(TAX, credit=order.tax_amount),
        ],
    )


async def book_refund(
    *, order: Order, refund_id: UUID, amount: int, refunded_before: int, provider: str
) -> None:
    """Give back `amount`; the tax share is cumulative, so a full refund returns all the tax."""
    total = order.total_amount
    after = refunded_before + amount
    tax_share = (after * order.tax_amount) // total - (refunded_before * order.tax_amount) // total
    await post(
        reference=f"refund:{refund_id}",
        currency=order.currency,
        order_id=order.id,
        description=f"Refund on order {order.id}",
        lines=[
            Line(REFUNDS, debit=amount - tax_share),
            Line(TAX, debit=tax_share),
            Line(cash_account(provider), credit=amount),
        ],
    )


@dataclass(frozen=True, slots=True)
class Balance:
    account: str
    debit: int
    credit: int

    @property
    def net_debit(self) -> int:
        return self.debit - self.credit


async def balances(*, order_id: UUID | None = None) -> dict[str, Balance]:
    """Totals per account code (of one order's bookings, or of all)."""
    query = LedgerEntry.all()
    if order_id is not None:
        query = query.filter(transaction__order_id=order_id)
    rows = (
        await query.annotate(debits=Sum("debit"), credits=Sum("credit"))
        .group_by("account__code")
        .values("account__code", "debits", "credits")
    )
    return {
        row["account__code"]: Balance(
            account=row["account__code"],
            debit=int(row["debits"] or 0),
            credit=int(row["credits"] or 0),
        )
        for row in rows
    }
