"""The data set's Lua scripts: each is atomic and does a bounded amount of work.

Each script is a file in `lua/`, read once, at import, from the installed package
(so it ships in the wheel as package data). A script's text is, in order: the
values Python owns (the categories of `segment.py`, the fence's lifetime) as Lua
locals, `lua/prelude.lua` (key names, the segment layout, run metadata, indexing
state, the fence), for the page and summary scripts `lua/sources.lua` (sorted
sources and the selection over them), then the script's own file, whose opening
comment says what it takes and returns. ARGV[1] is always the key prefix, hash tag
included; KEYS[1] names one key of the data set, so Redis Cluster routes the script
to the slot every key of the data set shares.

Scripts may not hold Redis for long: no loop there is longer than a page, a chunk
(`INDEX_BATCH` entries) or a binary search.
"""

from __future__ import annotations

from importlib.resources import files

from myapp.store.segment import CATEGORIES

# How long the data set remembers a run's latest attempt (`fence:<run_id>`): far
# longer than any host stays cut off and still comes back with its run.
FENCE_TTL_SECONDS = 86_400

_LUA = files(__package__) / "lua"


def _read(name: str) -> str:
    return (_LUA / name).read_text(encoding="utf-8")


def _constants() -> str:
    """The prelude's inputs that Python owns, so they are written once."""
    categories = ", ".join(f"'{c}'" for c in CATEGORIES)
    return f"local CATS = {{{categories}}}\nlocal FENCE_TTL = {FENCE_TTL_SECONDS}\n"


_PRELUDE = _constants() + _read("prelude.lua")


def _script(*parts: str) -> str:
    """The prelude, then the named files, joined as they are."""
    return _PRELUDE + "".join(_read(part) for part in parts)


STAGE_BEGIN = _script("stage_begin.lua")
STAGE_WRITE = _script("stage_write.lua")
STAGE_ABORT = _script("stage_abort.lua")
PUBLISH = _script("publish.lua")
INDEX_STEP = _script("index_step.lua")
DEINDEX_STEP = _script("deindex_step.lua")
DROP = _script("drop.lua")
FENCE = _script("fence.lua")
CANCEL = _script("cancel.lua")
SPAN = _script("span.lua")
PAGE = _script("sources.lua", "page.lua")
SUMMARY = _script("sources.lua", "summary.lua")
