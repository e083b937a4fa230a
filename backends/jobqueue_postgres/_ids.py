"""New job ids: version 7 UUIDs (RFC 9562), the Unix time in milliseconds followed by
74 random bits.

Ids made at about the same time are neighbours in the primary key index, so a
batch's inserts touch a few index pages, not one page per job (measured: a third
less server time and WAL per 1,000 jobs on a 200,000-job table).

A batch's ids are made directly as the binary ``uuid[]`` value its insert sends
(:class:`IdArray`), so the statement can go out before any ``UUID`` object
exists; :meth:`IdArray.uuids` makes those afterwards, while the server inserts.
"""

from __future__ import annotations

import os
import struct
import time
from uuid import UUID

from psycopg.adapt import Buffer, Dumper
from psycopg.postgres import types
from psycopg.pq import Format

__all__ = ["IdArray", "IdArrayDumper", "new_id", "new_id_array"]

# Most significant first: 48 bits of time, version (4 bits), 12 random bits,
# variant (2 bits), 62 random bits.
_VERSION_AND_VARIANT = 0x7 << 76 | 0b10 << 62
_RANDOM_BITS = ((1 << 12) - 1) << 64 | ((1 << 62) - 1)

_UUID_OID = types["uuid"].oid
_UUID_ARRAY_OID = types["uuid"].array_oid
# Binary array: dimensions, has-nulls flag, element type, then length and lower bound
# of the one dimension; each element is its length (16) and its 16 bytes.
_HEADER = struct.Struct("!iiIii")
_ELEMENT = 20
# Per element: keep the random bits (clearing the length, time, version and variant
# fields), then set those fields.
_KEEP = bytes(10) + b"\x0f\xff\x3f" + b"\xff" * 7
_SET_AFTER_TIME = b"\x70\x00\x80" + bytes(7)
_LENGTH = (16).to_bytes(4)


def new_id() -> UUID:
    """One new id."""
    prefix = (time.time_ns() // 1_000_000) << 80 | _VERSION_AND_VARIANT
    return UUID(int=prefix | (int.from_bytes(os.urandom(10)) & _RANDOM_BITS))


class IdArray(bytes):
    """``count`` new ids (at least one), as PostgreSQL's binary ``uuid[]``: send it as a
    binary parameter of a connection that has :class:`IdArrayDumper` registered."""

    def uuids(self) -> list[UUID]:
        """The ids, in order."""
        return [
            UUID(int=int.from_bytes(self[i : i + 16]))
            for i in range(_HEADER.size + 4, len(self), _ELEMENT)
        ]


def new_id_array(count: int) -> IdArray:
    """``count`` new ids, made at once."""
    stamp = (time.time_ns() // 1_000_000).to_bytes(6)
    size = _ELEMENT * count
    body = (
        int.from_bytes(os.urandom(size)) & int.from_bytes(_KEEP * count)
        | int.from_bytes((_LENGTH + stamp + _SET_AFTER_TIME) * count)
    ).to_bytes(size)
    return IdArray(_HEADER.pack(1, 0, _UUID_OID, count, 1) + body)


class IdArrayDumper(Dumper):
    """Sends an :class:`IdArray` as it is."""

    format = Format.BINARY
    oid = _UUID_ARRAY_OID

    def dump(self, obj: IdArray) -> Buffer:
        return obj
