"""Dot-stuffed message bodies both ways, chunk by chunk: POP3 responses out, SMTP DATA in.

RETR of a 50 MB message must not hold the message in memory, so the two POP3 helpers are
incremental: feed them whatever chunk sizes the blob store returns and they keep only a
couple of bytes of state between chunks. Their line ends are LF-terminated lines as clients
split them (a bare CR is content, not a line end); message bytes are never rewritten
otherwise, so 8-bit, NUL and over-long lines pass through unchanged. `DataCollector`, the
receiving side of SMTP, follows RFC 5321 instead: lines end at CRLF only.
"""

from __future__ import annotations

TERMINATOR = b".\r\n"
_CRLF = b"\r\n"
_CR = 0x0D


class DotStuffer:
    """RFC 1939 section 3 byte-stuffing for a stream of chunks.

    Every line that begins with "." gets one more "." so that the client never mistakes a
    line of the message for the end of the response. A line starts after each LF, which is
    how clients split responses; a "." that follows a chunk boundary is caught by
    remembering whether the previous chunk ended with LF.
    """

    __slots__ = ("_at_line_start", "_tail")

    def __init__(self) -> None:
        self._at_line_start = True
        self._tail = b""

    def feed(self, chunk: bytes) -> bytes:
        """The stuffed form of the next chunk of the message."""
        if not chunk:
            return b""
        out = chunk.replace(b"\n.", b"\n..")
        if self._at_line_start and chunk[:1] == b".":
            out = b"." + out
        self._at_line_start = chunk[-1:] == b"\n"
        self._tail = (self._tail + chunk[-2:])[-2:]
        return out

    def finish(self) -> bytes:
        """The end of the response: a CRLF when the message did not end with one, then ".".

        The extra CRLF is needed because the terminator is only recognised at the start of
        a line; an empty message is just the terminator.
        """
        if self._tail in (b"", _CRLF):
            return TERMINATOR
        return _CRLF + TERMINATOR


class TopFilter:
    """The part of a message TOP returns: the header, the blank line, then `lines` body lines.

    The header ends at the first empty line (CRLF CRLF, or a bare LF on its own); a message
    without one is all header, so TOP returns the whole message, as RFC 1939 asks when the
    body has fewer lines than requested. Once `done` is true the caller can stop reading.
    """

    __slots__ = ("_in_header", "_line_state", "_remaining", "done")

    # What the current line holds so far, which is all we need to spot an empty line.
    _EMPTY = 0
    _ONLY_CR = 1
    _CONTENT = 2

    def __init__(self, lines: int) -> None:
        if lines < 0:
            raise ValueError("TOP line count must not be negative")
        self._in_header = True
        self._line_state = self._EMPTY
        self._remaining = lines
        self.done = False

    def feed(self, chunk: bytes) -> bytes:
        """The part of this chunk that belongs to the TOP response (possibly empty)."""
        if self.done:
            return b""
        position = 0
        size = len(chunk)
        while position < size:
            if self._in_header:
                position = self._scan_header(chunk, position)
                if self._in_header:
                    return chunk
                if self._remaining == 0:
                    self.done = True
                    return chunk[:position]
                continue
            newline = chunk.find(b"\n", position)
            if newline < 0:
                return chunk
            position = newline + 1
            self._remaining -= 1
            if self._remaining == 0:
                self.done = True
                return chunk[:position]
        return chunk

    def _scan_header(self, chunk: bytes, position: int) -> int:
        """Advance through header lines; return the offset just after the blank line, or
        the chunk's end (leaving `_in_header` true) when the header continues."""
        size = len(chunk)
        while position < size:
            newline = chunk.find(b"\n", position)
            end = size if newline < 0 else newline
            length = end - position
            if length:
                only_cr = length == 1 and chunk[position] == _CR
                if self._line_state == self._EMPTY and only_cr:
                    self._line_state = self._ONLY_CR
                else:
                    self._line_state = self._CONTENT
            if newline < 0:
                return size
            blank = self._line_state != self._CONTENT
            self._line_state = self._EMPTY
            position = newline + 1
            if blank:
                self._in_header = False
                return position
        return position


END_OF_DATA = b"\r\n.\r\n"


class DataCollector:
    """The receiving side of SMTP DATA (RFC 5321 section 4.5.2), fed in pieces that each end
    with ".\\r\\n" (what a stream reader returns when asked to read up to that).

    Reading DATA line by line costs a read call and a copy per line, a large share of an
    MX's CPU for ordinary mail; pieces that end at ".\\r\\n" are a few per message. Only
    <CRLF>.<CRLF> ends DATA, as aiosmtpd's own reader holds: the smuggling sequences
    <LF>.<LF>, <CR>.<CR> and <LF>.<CRLF> stay data. The CRLF before the dot may have come
    in the previous piece (or be the virtual line start of the first one), so the last four
    bytes seen are kept. Over `limit` bytes the pieces are dropped as they come (the reply
    is then 552 after the terminator), so an oversized message never sits in memory.
    """

    __slots__ = ("_limit", "_pieces", "_size", "_tail", "overflowed")

    def __init__(self, limit: int | None) -> None:
        self._limit = limit
        self._pieces: list[bytes] = []
        self._size = 0
        self._tail = b"\r\n"  # DATA starts at the start of a line
        self.overflowed = False

    def feed(self, piece: bytes) -> bool:
        """Take the next piece; True when it ended DATA (nothing after it is message)."""
        ended = (self._tail + piece[-5:]).endswith(END_OF_DATA)
        self._tail = (self._tail + piece[-4:])[-4:]
        self._size += len(piece) - (len(TERMINATOR) if ended else 0)
        if self._limit and self._size > self._limit:
            self.overflowed = True
        if self.overflowed:
            self._pieces.clear()
        else:
            self._pieces.append(piece)
        return ended

    def drop(self, piece: bytes) -> None:
        """A piece too long to hold at all (no ".\\r\\n" within the reader's limit): the
        message is over the limit; only its end is still looked for."""
        self.overflowed = True
        self._pieces.clear()
        self._tail = (self._tail + piece[-4:])[-4:]

    def content(self) -> bytes:
        """The message as sent, terminator removed and dot-stuffing undone."""
        data = b"".join(self._pieces)[: -len(TERMINATOR)]
        if data[:1] == b".":
            data = data[1:]
        return data.replace(b"\r\n.", b"\r\n")
