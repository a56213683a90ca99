"""The output guard: what an answer asserts must be in the passages it cites.

Every number (amounts, prices, dates, percentages, counts), e-mail address, URL, product name
and listed claim in the answer is looked up in the cited passages. Amounts are compared by
value after normalisation (full-width digits, thousands separators), and by currency when both
sides name one (¥ / 元 / RMB / CNY, $ / US$ / USD).

    guard = OutputGuard.from_file(DEFAULT_DIR / "output.yml")
    guard.unsupported("进阶版永久免费 [1]", [Evidence("进阶版年付 ¥168", product="nimbus-note")])
    # ['永久免费']
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Sequence

from bot.errors import ConfigError
from bot.guard.lexicon import _find_word, compact, load_yaml, normalize

__all__ = ["OutputGuard", "Evidence"]

_CITATION = re.compile(r"\[\d{1,3}\]")
_LIST_ITEM = re.compile(r"(?m)^[ \t]*\d{1,2}[.)、][ \t]")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
#: A number with the currency or percent sign around it, if any (text is normalize()d: lower case).
_AMOUNT = re.compile(
    r"(?P<pre>us\$|\$|usd ?|¥|rmb ?|cny ?)?(?<![a-z0-9.])(?P<num>\d+(?:\.\d+)?)(?P<post> ?(?:元|yuan|rmb|cny|usd|%))?"
)
_EMAIL = re.compile(
    r"(?<![a-z0-9._%+-])[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}"
)
_URL = re.compile(r"(?<![a-z0-9])(?:https?://|www\.)[^\s<>\"'()\[\]{}，。；、）]+")
_CURRENCY = {"us$": "usd", "$": "usd", "usd": "usd", "¥": "cny", "rmb": "cny", "cny": "cny", "元": "cny", "yuan": "cny", "%": "%"}


@dataclass(frozen=True)
class Evidence:
    """What one cited passage offers: its text (heading included), link and product metadata."""

    text: str
    product: str = ""


@dataclass(frozen=True)
class _Names:
    names: tuple[str, ...]
    product: str = ""


class OutputGuard:
    """Checks an answer against its cited passages (lexicon: ``lexicon/output.yml``)."""

    def __init__(self, products: Sequence[_Names] = (), claims: Sequence[str] = ()):
        self.products, self.claims = tuple(products), tuple(normalize(c) for c in claims)

    @classmethod
    def from_file(cls, path: Path) -> "OutputGuard":
        data = load_yaml(path)
        products = []
        for entry in data.get("products") or []:
            if not isinstance(entry, dict) or not entry.get("names"):
                raise ConfigError(f"{Path(path).name}: each product needs 'names' (and optionally 'product')")
            products.append(_Names(tuple(normalize(str(n)) for n in entry["names"]), str(entry.get("product") or "")))
        return cls(products, [str(claim) for claim in data.get("claims") or []])

    def unsupported(self, answer: str, evidence: Sequence[Evidence]) -> list[str]:
        """The tokens of ``answer`` (as written) that no passage of ``evidence`` holds; empty: it passes."""
        text = _prepare(answer)
        source = " \n ".join(_prepare(e.text) for e in evidence)
        products = {e.product for e in evidence if e.product}
        failed = []
        known = _amounts(source)
        for written, value, unit in _amounts_written(text):
            if not any(value == v and (unit is None or u is None or unit == u) for v, u in known):
                failed.append(written)
        for pattern in (_EMAIL, _URL):
            for match in pattern.finditer(text):
                token = match.group(0).rstrip(".,;:!?")
                if token not in source:
                    failed.append(token)
        squeezed = compact(source)
        for group in self.products:
            used = [name for name in group.names if _find_word(text, name)]
            if used and group.product not in products and not any(_find_word(squeezed, n) or _find_word(source, n) for n in group.names):
                failed.append(used[0])
        failed += [claim for claim in self.claims if _find_word(compact(text), claim) and not _find_word(squeezed, claim)]
        return list(dict.fromkeys(failed))


def _prepare(text: str) -> str:
    """Normalised text without citation markers, list numbers and thousands separators."""
    text = normalize(text)
    text = _CITATION.sub(" ", text)
    text = _LIST_ITEM.sub(" ", text)
    return _THOUSANDS.sub("", text)


def _amounts_written(text: str) -> list[tuple[str, Decimal, str | None]]:
    found = []
    for match in _AMOUNT.finditer(text):
        value = _value(match.group("num"))
        if value is not None:
            found.append((match.group(0).strip(), value, _unit(match)))
    return found


def _amounts(text: str) -> set[tuple[Decimal, str | None]]:
    return {(value, unit) for _, value, unit in _amounts_written(text)}


def _unit(match: re.Match[str]) -> str | None:
    for part in (match.group("pre"), match.group("post")):
        if part:
            return _CURRENCY.get(part.strip())
    return None


def _value(number: str) -> Decimal | None:
    try:
        return Decimal(number).normalize()
    except InvalidOperation:
        return None
