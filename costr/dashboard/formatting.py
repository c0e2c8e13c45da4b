"""The jinja filters that turn the books' raw values into what a person reads: money from
micro-dollars, percentages, counts, and times as `<time>` elements the page's script shows in
the browser's own zone. Each returns plain text (escaped by the template) except `localtime`,
whose markup is built here from a number and a fixed format, never from request data."""
from __future__ import annotations

from datetime import datetime, timezone

from markupsafe import Markup, escape

from costr.accounts.records import MICROS

MISSING = "—"


def usd(micros: int | float | None) -> str:
    """Micro-dollars as dollars: two decimals from $1 up, and under $1 as many as the amount
    needs (up to six, the ledger's precision), so a request's $0.000123 is not shown as $0.00."""
    if micros is None:
        return MISSING
    dollars = abs(micros) / MICROS
    sign = "-" if micros < 0 else ""
    if dollars >= 1 or dollars == 0:
        return f"{sign}${dollars:,.2f}"
    text = f"{dollars:.6f}".rstrip("0")
    if len(text.split(".")[1]) < 2:
        text = f"{dollars:.2f}"
    return f"{sign}${text}"


def percent(value: float | None) -> str:
    """A 0-100 figure to one decimal: 42.1%."""
    return MISSING if value is None else f"{value:.1f}%"


def number(value: int | float | None) -> str:
    """Thousands separators; fractions to two decimals."""
    if value is None:
        return MISSING
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.2f}"
    return f"{int(value):,}"


def tokens(value: int | None) -> str:
    """A token count, exact, with thousands separators."""
    return MISSING if value is None else f"{int(value):,}"


def score(value: float | None) -> str:
    """A complexity score or a confidence (0-1) to two decimals."""
    return MISSING if value is None else f"{value:.2f}"


def milliseconds(value: float | None) -> str:
    if value is None:
        return MISSING
    return f"{value / 1000:,.2f} s" if value >= 10_000 else f"{value:,.0f} ms"


def iso_utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def localtime(ts: float | None) -> Markup:
    """`<time datetime="...Z">YYYY-MM-DD HH:MM UTC</time>`: readable without script, and
    rewritten by dashboard.js into the browser's zone."""
    if ts is None:
        return Markup(MISSING)
    moment = datetime.fromtimestamp(ts, timezone.utc)
    return Markup('<time datetime="{}">{}</time>').format(
        iso_utc(ts), escape(moment.strftime("%Y-%m-%d %H:%M UTC")))


FILTERS = {"usd": usd, "percent": percent, "number": number, "tokens": tokens, "score": score,
           "milliseconds": milliseconds, "localtime": localtime}
