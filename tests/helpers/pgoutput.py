"""Decode the messages of Postgres' ``pgoutput`` logical decoding plugin (protocol version 1), as read with
``pg_logical_slot_get_binary_changes``: the relations, and each insert, update and delete with its row as text.
Only what the tests need: begin/commit/origin/type/truncate messages are skipped."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field


@dataclass
class Change:
    kind: str  # insert, update, delete
    schema: str
    table: str
    new: dict[str, str | None] = field(default_factory=dict)
    old: dict[str, str | None] = field(default_factory=dict)


@dataclass
class _Reader:
    data: bytes
    pos: int = 0

    def byte(self) -> str:
        value = chr(self.data[self.pos])
        self.pos += 1
        return value

    def int(self, size: int) -> int:
        fmt = {1: ">b", 2: ">h", 4: ">i", 8: ">q"}[size]
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return int(value)

    def string(self) -> str:
        end = self.data.index(b"\0", self.pos)
        value = self.data[self.pos : end].decode()
        self.pos = end + 1
        return value

    def tuple(self, columns: list[str]) -> dict[str, str | None]:
        row: dict[str, str | None] = {}
        for index in range(self.int(2)):
            kind = self.byte()
            if kind == "t":
                length = self.int(4)
                row[columns[index]] = self.data[self.pos : self.pos + length].decode()
                self.pos += length
            elif kind == "n":
                row[columns[index]] = None
            # "u": an unchanged TOASTed value, not sent
        return row


def decode(messages: list[bytes]) -> list[Change]:
    """The row changes among ``messages``, in order."""
    relations: dict[int, tuple[str, str, list[str]]] = {}
    changes: list[Change] = []
    for message in messages:
        reader = _Reader(bytes(message))
        tag = reader.byte()
        if tag == "R":
            relid = reader.int(4)
            schema, table = reader.string(), reader.string()
            reader.int(1)  # replica identity
            columns = []
            for _ in range(reader.int(2)):
                reader.int(1)  # flags
                columns.append(reader.string())
                reader.int(4)  # type oid
                reader.int(4)  # type modifier
            relations[relid] = (schema, table, columns)
        elif tag in "IUD":
            schema, table, columns = relations[reader.int(4)]
            change = Change({"I": "insert", "U": "update", "D": "delete"}[tag], schema, table)
            marker = reader.byte()
            if marker in "KO":
                change.old = reader.tuple(columns)
                marker = reader.byte() if tag == "U" else ""
            if marker == "N":
                change.new = reader.tuple(columns)
            changes.append(change)
    return changes
