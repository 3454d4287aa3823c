"""Slugs derived from names, unique where they must be."""

from __future__ import annotations

import re
import secrets
import unicodedata


def slugify(name: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:48].strip("-")
    if len(slug) < 2:
        slug = f"x-{slug}" if slug else "org"
    return slug


def with_suffix(slug: str) -> str:
    return f"{slug[:55]}-{secrets.token_hex(3)}"
