"""Tax rules as data: EU VAT by destination country (reverse charge for business customers
abroad with a well-formed VAT id), US sales tax by state as configured, nothing elsewhere.

Prices are net; tax is added per order line and rounded half up to the minor unit. Rates are
basis points (1900 = 19 %). The EU table holds the rates in force in 2025: keep it current.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from core.errors import ValidationFailed
from db.models.commerce import TaxCategory

# country: (standard, reduced) in basis points
EU_VAT_RATES: dict[str, tuple[int, int]] = {
    "AT": (2000, 1000),
    "BE": (2100, 600),
    "BG": (2000, 900),
    "HR": (2500, 500),
    "CY": (1900, 500),
    "CZ": (2100, 1200),
    "DK": (2500, 2500),
    "EE": (2400, 900),
    "FI": (2550, 1400),
    "FR": (2000, 550),
    "DE": (1900, 700),
    "GR": (2400, 600),
    "HU": (2700, 500),
    "IE": (2300, 1350),
    "IT": (2200, 1000),
    "LV": (2100, 1200),
    "LT": (2100, 900),
    "LU": (1700, 800),
    "MT": (1800, 700),
    "NL": (2100, 900),
    "PL": (2300, 800),
    "PT": (2300, 600),
    "RO": (2100, 1100),
    "SK": (2300, 1900),
    "SI": (2200, 950),
    "ES": (2100, 1000),
    "SE": (2500, 1200),
}

# The VAT id's own prefix where it differs from the ISO country code.
VAT_PREFIX = {"GR": "EL"}

# The body of a VAT id after its prefix, per country (format only: no registry lookup).
VAT_ID_FORMATS: dict[str, str] = {
    "AT": r"U\d{8}",
    "BE": r"[01]\d{9}",
    "BG": r"\d{9,10}",
    "HR": r"\d{11}",
    "CY": r"\d{8}[A-Z]",
    "CZ": r"\d{8,10}",
    "DK": r"\d{8}",
    "EE": r"\d{9}",
    "FI": r"\d{8}",
    "FR": r"[0-9A-HJ-NP-Z]{2}\d{9}",
    "DE": r"\d{9}",
    "GR": r"\d{9}",
    "HU": r"\d{8}",
    "IE": r"\d[0-9A-Z+*]\d{5}[A-W][A-I]?",
    "IT": r"\d{11}",
    "LV": r"\d{11}",
    "LT": r"\d{9}|\d{12}",
    "LU": r"\d{8}",
    "MT": r"\d{8}",
    "NL": r"\d{9}B\d{2}",
    "PL": r"\d{10}",
    "PT": r"\d{9}",
    "RO": r"\d{2,10}",
    "SK": r"\d{10}",
    "SI": r"\d{8}",
    "ES": r"[0-9A-Z]\d{7}[0-9A-Z]",
    "SE": r"\d{12}",
}

# Default US sales tax (state-level rates, basis points) where the shop is registered.
DEFAULT_US_STATE_RATES: dict[str, int] = {"CA": 725, "NY": 400, "TX": 625, "WA": 650, "FL": 600}


@dataclass(frozen=True, slots=True)
class TaxRules:
    """Where and what the shop taxes; the defaults are the data above."""

    seller_country: str = "DE"
    us_state_rates: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_US_STATE_RATES))
    us_taxable: frozenset[TaxCategory] = frozenset({TaxCategory.STANDARD, TaxCategory.REDUCED})


@dataclass(frozen=True, slots=True)
class Destination:
    country: str
    region: str = ""  # US state code
    vat_id: str = ""  # normalised (upper case, no spaces), empty for consumers
    # False when VIES could not say whether the VAT id is registered: VAT is charged then.
    vat_id_confirmed: bool = True


@dataclass(frozen=True, slots=True)
class TaxPart:
    jurisdiction: str  # "DE", "US-CA"
    tax: str  # "vat", "sales_tax"
    rate_bp: int
    taxable_amount: int
    amount: int
    reverse_charge: bool = False

    def wire(self) -> dict[str, Any]:
        return {
            "jurisdiction": self.jurisdiction,
            "tax": self.tax,
            "rate_bp": self.rate_bp,
            "taxable_amount": self.taxable_amount,
            "amount": self.amount,
            "reverse_charge": self.reverse_charge,
        }


def normalise_vat_id(raw: str) -> str:
    return re.sub(r"[\s.\-]", "", raw).upper()


def check_vat_id(vat_id: str, *, country: str) -> str:
    """A VAT id well-formed for `country` (prefix included), normalised; else 422."""
    value = normalise_vat_id(vat_id)
    prefix = VAT_PREFIX.get(country, country)
    pattern = VAT_ID_FORMATS.get(country)
    if (
        pattern is None
        or not value.startswith(prefix)
        or not re.fullmatch(pattern, value[len(prefix) :])
    ):
        raise ValidationFailed(
            "invalid_vat_id",
            f"Not a well-formed VAT id for {country}",
            details={"vat_id": vat_id, "country": country},
        )
    return value


def check_destination(*, country: str, region: str = "", vat_id: str = "") -> Destination:
    country = country.upper()
    region = region.upper()
    if not re.fullmatch(r"[A-Z]{2}", country):
        raise ValidationFailed("invalid_country", "Use a two-letter ISO country code")
    if country == "US" and not re.fullmatch(r"[A-Z]{2}", region):
        raise ValidationFailed("invalid_region", "US orders need a two-letter state code")
    if vat_id:
        if country not in EU_VAT_RATES:
            raise ValidationFailed("invalid_vat_id", "VAT ids are for EU business customers")
        vat_id = check_vat_id(vat_id, country=country)
    return Destination(country=country, region=region, vat_id=vat_id)


def is_reverse_charge(destination: Destination, rules: TaxRules) -> bool:
    """An EU business customer in another member state than the seller accounts for VAT."""
    return (
        bool(destination.vat_id)
        and destination.vat_id_confirmed
        and destination.country in EU_VAT_RATES
        and destination.country != rules.seller_country
    )


def _rounded(amount: int, rate_bp: int) -> int:
    return (amount * rate_bp + 5000) // 10_000


def tax_line(
    *, net_amount: int, category: TaxCategory, destination: Destination, rules: TaxRules
) -> list[TaxPart]:
    """The tax parts of one line whose net (after discounts) is `net_amount`."""
    country = destination.country
    if country in EU_VAT_RATES:
        if is_reverse_charge(destination, rules):
            return [TaxPart(country, "vat", 0, net_amount, 0, reverse_charge=True)]
        standard, reduced = EU_VAT_RATES[country]
        rate = {
            TaxCategory.STANDARD: standard,
            TaxCategory.SERVICES: standard,
            TaxCategory.REDUCED: reduced,
            TaxCategory.EXEMPT: 0,
        }[category]
        return [TaxPart(country, "vat", rate, net_amount, _rounded(net_amount, rate))]
    if country == "US":
        state_rate = rules.us_state_rates.get(destination.region)
        if state_rate is None or category not in rules.us_taxable:
            return []
        jurisdiction = f"US-{destination.region}"
        return [
            TaxPart(
                jurisdiction, "sales_tax", state_rate, net_amount, _rounded(net_amount, state_rate)
            )
        ]
    return []
