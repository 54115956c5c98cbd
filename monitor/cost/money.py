"""Exact money: the decimal context no ledger sum is ever rounded in, and amounts as text."""

from __future__ import annotations

import decimal
from decimal import Decimal

ZERO = Decimal(0)
ONE = Decimal(1)
# Wide enough that no sum of ledger amounts is ever rounded.
EXACT = decimal.Context(prec=80, Emin=-999_999, Emax=999_999,
                        traps=[decimal.InvalidOperation, decimal.Overflow])


def money_text(amount: Decimal) -> str:
    """Plain decimal text without trailing zeros or an exponent ("0.0123", "2", "1500")."""
    return format(EXACT.normalize(amount), "f")


def reported_amount(text: str | None) -> Decimal | None:
    """A cost a log line carries, as a finite Decimal; None when it is absent or not a number."""
    if text is None:
        return None
    try:
        value = Decimal(text)
    except decimal.InvalidOperation:
        return None
    return value if value.is_finite() else None
