"""Tax rules as data: EU VAT by destination, reverse charge, US sales tax by state."""

from __future__ import annotations

import pytest

from api.commerce.tax import Destination, TaxRules, check_destination, check_vat_id, tax_line
from core.errors import ValidationFailed
from db.models.commerce import TaxCategory

RULES = TaxRules(seller_country="DE")


def _tax(
    country: str, category: TaxCategory, *, region: str = "", vat_id: str = ""
) -> list[dict[str, object]]:
    destination = Destination(country=country, region=region, vat_id=vat_id)
    return [
        p.wire()
        for p in tax_line(
            net_amount=10_000, category=category, destination=destination, rules=RULES
        )
    ]


def test_german_consumer_pays_german_vat() -> None:
    assert _tax("DE", TaxCategory.STANDARD) == [
        {
            "jurisdiction": "DE",
            "tax": "vat",
            "rate_bp": 1900,
            "taxable_amount": 10_000,
            "amount": 1_900,
            "reverse_charge": False,
        }
    ]


def test_french_consumer_pays_french_reduced_rate() -> None:
    (part,) = _tax("FR", TaxCategory.REDUCED)
    assert (part["rate_bp"], part["amount"]) == (550, 550)


def test_eu_business_abroad_is_reverse_charged() -> None:
    (part,) = _tax("FR", TaxCategory.STANDARD, vat_id="FR40303265045")
    assert (part["rate_bp"], part["amount"], part["reverse_charge"]) == (0, 0, True)


def test_domestic_business_pays_vat() -> None:
    (part,) = _tax("DE", TaxCategory.SERVICES, vat_id="DE123456789")
    assert (part["amount"], part["reverse_charge"]) == (1_900, False)


def test_exempt_category_is_zero() -> None:
    (part,) = _tax("IT", TaxCategory.EXEMPT)
    assert part["amount"] == 0


def test_us_state_sales_tax_rounds_half_up() -> None:
    destination = Destination(country="US", region="CA")
    (part,) = tax_line(
        net_amount=1_000, category=TaxCategory.STANDARD, destination=destination, rules=RULES
    )
    assert (part.jurisdiction, part.tax, part.rate_bp, part.amount) == (
        "US-CA",
        "sales_tax",
        725,
        73,
    )


def test_us_services_and_unconfigured_states_are_untaxed() -> None:
    assert _tax("US", TaxCategory.SERVICES, region="CA") == []
    assert _tax("US", TaxCategory.STANDARD, region="OR") == []


def test_us_rates_are_configured_data() -> None:
    rules = TaxRules(us_state_rates={"OR": 100})
    destination = Destination(country="US", region="OR")
    (part,) = tax_line(
        net_amount=10_000, category=TaxCategory.STANDARD, destination=destination, rules=rules
    )
    assert part.amount == 100


def test_outside_eu_and_us_no_tax() -> None:
    assert _tax("CH", TaxCategory.STANDARD) == []


@pytest.mark.parametrize(
    ("country", "vat_id", "normalised"),
    [
        ("DE", "de 123 456 789", "DE123456789"),
        ("AT", "ATU12345678", "ATU12345678"),
        ("NL", "NL123456789B01", "NL123456789B01"),
        ("GR", "EL123456789", "EL123456789"),
        ("FR", "FR-40-303265045", "FR40303265045"),
    ],
)
def test_vat_ids_well_formed(country: str, vat_id: str, normalised: str) -> None:
    assert check_vat_id(vat_id, country=country) == normalised


@pytest.mark.parametrize(
    ("country", "vat_id"),
    [("DE", "DE12345678"), ("DE", "FR40303265045"), ("GR", "GR123456789"), ("NL", "NL123456789")],
)
def test_vat_ids_malformed(country: str, vat_id: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        check_vat_id(vat_id, country=country)
    assert caught.value.code == "invalid_vat_id"


def test_destination_checks() -> None:
    assert check_destination(country="us", region="ca") == Destination("US", "CA", "")
    for kwargs, code in (
        ({"country": "USA"}, "invalid_country"),
        ({"country": "US"}, "invalid_region"),
        ({"country": "CH", "vat_id": "CHE123"}, "invalid_vat_id"),
    ):
        with pytest.raises(ValidationFailed) as caught:
            check_destination(**kwargs)
        assert caught.value.code == code
