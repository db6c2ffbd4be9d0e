"""What the parts of the data store share: the client, the key names (the layout is
in the package docstring), the script calls and the row count. `DataStore` sets
the client and the scripts up; its parts (`commit`, `retention`, `reading`) add
the operations."""

from __future__ import annotations

import struct
from typing import Any

import redis

from myapp.store import segment

# An index member: (value, segment, row), as the scripts pack it.
MEMBER = struct.Struct(">dII")
# A record of a segment's section B: (value, row).
ENTRY = segment.BY_VALUE_IN_CATEGORY
# Rows moved into (or out of) the value indexes per script: a few milliseconds.
INDEX_BATCH = 500


class StoreBase:
    """The data set's client and key prefix, as `DataStore.__init__` sets them."""

    redis: redis.Redis
    prefix: str
    _tag: str
    _scripts: dict[str, Any]

    def key(self, *parts: str) -> str:
        """The full name of one of the data set's keys (layout in myapp.store)."""
        return self._tag + ":".join(parts)

    def _call(self, script: str, *args: Any) -> Any:
        return self._scripts[script](keys=[self.key("seq")], args=[self._tag, *args])

    def total(self) -> int:
        """Rows in the data set now (committed, not dropped by retention)."""
        last, trimmed = self.redis.mget(self.key("seq"), self.key("trimmed"))
        return int(last or 0) - int(trimmed or 0)
