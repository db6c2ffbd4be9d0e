"""Where one HTTP/1.x request ends, read from its bytes as they arrive: the
buffering web worker (`myapp.web.server`) hands a request to a thread only once
`RequestBuffer` says it is whole, or refuses it as too large.

Framing only (the end of the head, the body's length by Content-Length or chunks),
no other validation: anything odd is READY, for gunicorn's strict parser to refuse.
"""

from __future__ import annotations

import enum
import re

# Request line plus headers. nginx's default (large_client_header_buffers) is the
# same; our own cookies and tokens are a few hundred bytes.
HEAD_LIMIT = 32 * 1024
# Chunk-size lines and extensions may take this many times the body limit on the
# wire before the body is refused as too large: they are memory too.
CHUNKED_OVERHEAD = 4
_BARE_LF = re.compile(rb"(?<!\r)\n")
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")


class Verdict(enum.Enum):
    """What a RequestBuffer knows about the request so far."""

    INCOMPLETE = "incomplete"
    # Whole, or malformed in a way gunicorn's parser will refuse without waiting.
    READY = "ready"
    TOO_LARGE = "too large"
    HEAD_TOO_LARGE = "head too large"


class RequestBuffer:
    """The bytes of one HTTP/1.x request as they arrive, and whether it is whole.

    It only frames the request (where the head ends, how long the body is) and
    validates nothing else: anything odd is READY, for gunicorn's parser to refuse.
    Every byte is searched once, however the request is split into reads.
    """

    def __init__(self, body_limit: int, head_limit: int = HEAD_LIMIT):
        self.data = bytearray()
        self.body_limit = body_limit
        self.head_limit = head_limit
        self.expects_continue = False
        # Bytes already searched for the terminator being waited for.
        self._scanned = 0
        self._body_start: int | None = None
        self._length: int | None = None  # Content-Length; None when chunked
        self._chunk_at = 0  # chunked: where the next chunk-size line starts
        self._chunk_end: int | None = None  # end of the current chunk's data
        self._decoded = 0  # chunked: body bytes announced so far
        self._in_trailer = False  # chunked: the last chunk has been seen

    @property
    def started(self) -> bool:
        return bool(self.data)

    def feed(self, data: bytes) -> Verdict:
        self.data += data
        verdict = self._read_head() if self._body_start is None else None
        if verdict is None:
            verdict = self._read_body()
        if verdict is Verdict.INCOMPLETE:
            self._scanned = len(self.data)
        return verdict

    def _find(self, needle: bytes, start: int) -> int:
        found = self.data.find(needle, max(start, self._scanned - len(needle) + 1))
        if found >= 0:
            self._scanned = 0  # the next search waits for another terminator
        return found

    def _read_head(self) -> Verdict | None:
        # One empty line before the request line is allowed (RFC 9112, 2.2).
        start = 2 if self.data.startswith(b"\r\n") else 0
        searched_from = self._scanned
        end = self._find(b"\r\n\r\n", start)
        if _BARE_LF.search(
            self.data, searched_from, len(self.data) if end < 0 else end
        ):
            return Verdict.READY  # gunicorn answers 400
        if end < 0:
            if len(self.data) > self.head_limit:
                return Verdict.HEAD_TOO_LARGE
            return Verdict.INCOMPLETE
        if end + 4 > self.head_limit:
            return Verdict.HEAD_TOO_LARGE
        self._body_start = self._chunk_at = end + 4
        fields: dict[bytes, list[bytes]] = {}
        for line in bytes(self.data[start:end]).split(b"\r\n")[1:]:
            name, colon, value = line.partition(b":")
            if not colon:
                return Verdict.READY
            fields.setdefault(name.strip().lower(), []).append(value.strip())
        expect = fields.get(b"expect", [b""])
        self.expects_continue = expect[0].lower() == b"100-continue"
        lengths = fields.get(b"content-length", [])
        codings = [
            coding.strip().lower()
            for value in fields.get(b"transfer-encoding", [])
            for coding in value.split(b",")
        ]
        if codings:
            if lengths or codings[-1] != b"chunked":
                return Verdict.READY  # ambiguous or unsupported framing
            return None
        if len(lengths) > 1 or (lengths and not lengths[0].isdigit()):
            return Verdict.READY
        self._length = int(lengths[0]) if lengths else 0
        if self._length > self.body_limit:
            return Verdict.TOO_LARGE
        return None

    def _read_body(self) -> Verdict:
        assert self._body_start is not None
        received = len(self.data) - self._body_start
        if self._length is not None:
            return Verdict.READY if received >= self._length else Verdict.INCOMPLETE
        if received > CHUNKED_OVERHEAD * self.body_limit:
            return Verdict.TOO_LARGE
        # Chunks: "<hex size>[;extensions]\r\n<data>\r\n", ..., "0\r\n",
        # trailer fields, "\r\n".
        while not self._in_trailer:
            if self._chunk_end is None:
                line_end = self._find(b"\r\n", self._chunk_at)
                if line_end < 0:
                    return Verdict.INCOMPLETE
                size_text = bytes(self.data[self._chunk_at : line_end])
                size_text = size_text.split(b";", 1)[0].strip(b" \t")
                if not _CHUNK_SIZE.fullmatch(size_text):
                    return Verdict.READY  # gunicorn answers 400
                size = int(size_text, 16)
                if size == 0:
                    self._chunk_at = line_end + 2
                    self._in_trailer = True
                    break
                self._decoded += size
                if self._decoded > self.body_limit:
                    return Verdict.TOO_LARGE
                self._chunk_end = line_end + 2 + size
            if len(self.data) < self._chunk_end + 2:
                return Verdict.INCOMPLETE
            if self.data[self._chunk_end : self._chunk_end + 2] != b"\r\n":
                return Verdict.READY
            self._chunk_at = self._chunk_end + 2
            self._chunk_end = None
        # After the last chunk: an empty line, or trailer fields and an empty line.
        if self.data.startswith(b"\r\n", self._chunk_at):
            return Verdict.READY
        if self._find(b"\r\n\r\n", self._chunk_at) >= 0:
            return Verdict.READY
        return Verdict.INCOMPLETE
