"""Item text templates, one function per dataset family. The text is what gets embedded.

Amazon (TIGER uses title, price, brand and categories):
    "Title: <title>; Brand: <brand>; Categories: <c1>, <c2>, ...; Price: $<price with 2 decimals>"
A missing field is left out, never written as "unknown" (an embedding of "Brand: unknown" would pull unrelated
items together). A brand spelled "unknown" in any case counts as missing (the 2014 metadata uses "Unknown").
`categories` may be one path (["Beauty", "Makeup"]) or the raw 2014 list of paths ([["Beauty", ...], ...]);
only the first path is used, the same convention as the derived `item_meta_by_asin.jsonl.gz` files.
HTML entities are unescaped (`&amp;` -> `&`). An item with no usable field gets "ASIN: <asin>".

MovieLens: "Title: <title>; Genres: <g1>, <g2>" (genres left out when "(no genres listed)" or empty).
"""

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

FIELD_SEP = "; "
FIELD_NAMES = ("Title", "Brand", "Categories", "Price", "Genres")


def _clean(value: Any) -> str | None:
    """A metadata value as stripped, HTML-unescaped text; None for missing, empty or NaN values."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = html.unescape(str(value)).strip()
    return text or None


def _first_category_path(categories: Any) -> list[str]:
    """Accepts one path (list of str) or a list of paths; returns the first path, cleaned."""
    if not isinstance(categories, Sequence) or isinstance(categories, str) or not categories:
        return []
    path = categories[0] if not isinstance(categories[0], str) else categories
    if isinstance(path, str) or not isinstance(path, Sequence):
        return []
    return [c for c in (_clean(x) for x in path) if c]


def _price(value: Any) -> str | None:
    try:
        price = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(price) else f"${price:.2f}"


def amazon_item_text(asin: str, meta: Mapping[str, Any] | None) -> str:
    """The text of one Amazon item from its metadata record (keys title, brand, categories, price)."""
    meta = meta or {}
    brand = _clean(meta.get("brand"))
    if brand is not None and brand.lower() == "unknown":
        brand = None
    categories = _first_category_path(meta.get("categories"))
    fields = [
        ("Title", _clean(meta.get("title"))),
        ("Brand", brand),
        ("Categories", ", ".join(categories) or None),
        ("Price", _price(meta.get("price"))),
    ]
    parts = [f"{name}: {value}" for name, value in fields if value is not None]
    return FIELD_SEP.join(parts) if parts else f"ASIN: {asin}"


def movielens_item_text(title: str, genres: str) -> str:
    """The text of one movie from its title and the `|`-separated genre string of movies.dat / movies.csv."""
    parts = [f"Title: {_clean(title) or 'unknown'}"]
    names = [g.strip() for g in genres.split("|") if g.strip() and g.strip() != "(no genres listed)"]
    if names:
        parts.append("Genres: " + ", ".join(names))
    return FIELD_SEP.join(parts)


def text_title(text: str) -> str | None:
    """The title field of a text written by the templates above, None when it has none. The title ends at
    the first FIELD_SEP that starts another template field, so a title holding "; " comes back whole."""
    prefix = "Title: "
    if not text.startswith(prefix):
        return None
    body = text[len(prefix) :]
    ends = [body.find(f"{FIELD_SEP}{name}: ") for name in FIELD_NAMES[1:]]
    ends = [end for end in ends if end >= 0]
    return body[: min(ends)] if ends else body
