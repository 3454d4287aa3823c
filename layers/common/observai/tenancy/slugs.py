"""Slugs derived from names, unique where they must be."""

from __future__ import annotations

import re
import secrets
import unicodedata
from collections.abc import Callable
from typing import Any

import psycopg

from observai.db.connection import Cursor
from observai.errors import Conflict

SLUG_ATTEMPTS = 5


def slugify(name: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:48].strip("-")
    if len(slug) < 2:
        slug = f"x-{slug}" if slug else "org"
    return slug


def with_suffix(slug: str) -> str:
    return f"{slug[:55]}-{secrets.token_hex(3)}"


def insert_with_unique_slug(
    cur: Cursor, name: str, slug: str | None, insert: Callable[[str], dict[str, Any]], taken_message: str
) -> dict[str, Any]:
    """Insert with ``slug``, or one derived from ``name``: a derived slug that is taken gets a random
    suffix and another try; a slug the caller chose that is taken is a 409."""
    candidate = slug or slugify(name)
    for _ in range(SLUG_ATTEMPTS):
        try:
            with cur.connection.transaction():  # a savepoint: the outer transaction survives the violation
                return insert(candidate)
        except psycopg.errors.UniqueViolation as exc:
            if slug is not None:
                raise Conflict(taken_message, details={"slug": slug}) from exc
            candidate = with_suffix(slugify(name))
    raise Conflict("Could not find a free slug; choose one")
