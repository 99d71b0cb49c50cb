"""Keeping the secret key out of sight: the headers that carry the keys, and `scrub`.

A leaf module (no httpx, no event loop): every text built from what a server
sent, or from an exception, passes through `scrub` before anyone sees it.
"""

from __future__ import annotations

import base64
import bisect
import functools
import re
import unicodedata
from collections.abc import Iterable

__all__ = ["SHOWN_CHARACTERS", "auth_headers", "scrub", "shown"]

_ACCESS_KEY_HEADER = "x-LSQ-AccessKey"
_SECRET_KEY_HEADER = "x-LSQ-SecretKey"


SHOWN_CHARACTERS = 2000
"""The most characters of a server's answer that an exception keeps (and `shown` gives)."""

# How far past SHOWN_CHARACTERS `shown` scrubs, so that a secret spelled out at length
# across the cut is masked whole.
_MARGIN = 2000

_MASK = "***"


def scrub(text: str, secrets: Iterable[str]) -> str:
    r"""Replace every occurrence of a secret in ``text`` with ``***``, in any spelling a
    server or a log may give it, in time linear in the text.

    Each character may come as is, in upper or lower case, JSON-escaped (``\/``,
    ``\u0041``, escaped again: ``\\u0041``), URL-encoded (``%41``, ``%2541``, UTF-8
    bytes, ``%u0041``), as an HTML character reference (``&#65;``, ``&#x41;``) or in its
    fullwidth form (``Ａ``); white space (also ``\n``) may split the secret anywhere;
    and the secret may come base64-encoded, alone or inside a longer value, at any
    offset.
    """
    return _scrubbed(text, secrets, cut=False)


def shown(
    text: str, secrets: Iterable[str], limit: int = SHOWN_CHARACTERS, *, more: bool = False
) -> str:
    """The first ``limit`` characters of ``text``, scrubbed: what an exception keeps.

    Only a little more than that is read, so the cost does not grow with the text, and
    a secret cut at the end shows no piece of itself. ``more`` says that ``text`` is
    itself the start of a longer text.
    """
    window = text[: limit + _MARGIN]
    return _scrubbed(window, secrets, cut=more or len(window) < len(text))[:limit]


def _scrubbed(text: str, secrets: Iterable[str], *, cut: bool) -> str:
    wanted = [secret for secret in secrets if secret and not secret.isspace()]
    if not wanted or not text:
        return text
    # "+" is a space only in form-encoded text; it is read so only for a secret with one.
    spaced = "+" in text and any(not secret.isascii() or " " in secret for secret in wanted)
    spans: list[tuple[int, int]] = []
    for plus_is_space in (False, True) if spaced else (False,):
        decoded = _Decoded(text, plus_is_space)
        for secret in wanted:
            for variant in _variants(secret):
                spans.extend(decoded.find(variant))
                if cut:
                    spans.extend(decoded.cut_short(variant, len(text)))
    return _masked(text, spans)


# Every spelling that stands for characters: found left to right, each run of escapes
# from its start only (the look-behind), so a long run costs its length once.
_ESCAPES = (
    r"(?<!\\)\\+(?:u([0-9a-f]{4})|(/)|[nrt])"  # JSON, escaped once or more; \n is space
    r"|%(?:25)*(?:u([0-9a-f]{4})|([0-9a-f]{2}))"  # URL-encoded once or more, and %uXXXX
    r"|&#(?:x0*([0-9a-f]{1,6})|0*([0-9]{1,7}));"  # HTML character references
    r"|(\s+)"
    r"|([^\x00-\x7f])"  # fullwidth forms and the like: compared in NFKC form
)


@functools.cache
def _spelling(plus_is_space: bool) -> re.Pattern[str]:
    # Compiled on first use: a program whose errors and logs carry no secret never
    # scrubs, and these are the package's costliest patterns to compile.
    return re.compile(_ESCAPES + r"|(\+)" if plus_is_space else _ESCAPES, re.IGNORECASE)


class _Decoded:
    """A text as the characters it stands for, lower case and without white space, and
    where the spelling of each of them starts and ends in the text.

    Kept as segments: a run of plain characters maps one to one, and the characters of
    one escape all map to the escape's span.
    """

    def __init__(self, text: str, plus_is_space: bool) -> None:
        pieces: list[str] = []
        # Per segment: where it starts in the decoded text, and its span in ``text``
        # (for a plain run, -1 as its end: each character is its own span).
        self.offsets: list[int] = []
        self.spans: list[tuple[int, int]] = []
        length = done = 0
        for match in _spelling(plus_is_space).finditer(text):
            start, end = match.span()
            if start > done:
                pieces.append(text[done:start].lower())
                self.offsets.append(length)
                self.spans.append((done, -1))
                length += start - done
            done = end
            chars = _standing_for(match)
            if chars:
                pieces.append(chars)
                self.offsets.append(length)
                self.spans.append((start, end))
                length += len(chars)
        if done < len(text):
            pieces.append(text[done:].lower())
            self.offsets.append(length)
            self.spans.append((done, -1))
        self.text = "".join(pieces)

    def span(self, first: int, last: int) -> tuple[int, int]:
        """Where the decoded characters ``first`` to ``last`` are spelled in the text."""
        return self._where(first)[0], self._where(last)[1]

    def _where(self, index: int) -> tuple[int, int]:
        segment = bisect.bisect_right(self.offsets, index) - 1
        start, end = self.spans[segment]
        if end < 0:
            start += index - self.offsets[segment]
            end = start + 1
        return start, end

    def find(self, variant: str) -> list[tuple[int, int]]:
        """The spans of every occurrence of ``variant``."""
        spans = []
        at = self.text.find(variant)
        while at >= 0:
            spans.append(self.span(at, at + len(variant) - 1))
            at = self.text.find(variant, at + len(variant))
        return spans

    def cut_short(self, variant: str, end: int) -> list[tuple[int, int]]:
        """The start of ``variant`` at the end of the text, cut short there."""
        for length in range(min(len(variant) - 1, len(self.text)), 2, -1):
            if self.text.endswith(variant[:length]):
                return [(self._where(len(self.text) - length)[0], end)]
        return []


def _standing_for(match: re.Match[str]) -> str:
    """The characters one spelling stands for, as compared ("" for white space)."""
    json_code, slash, url_code, url_byte, html_hex, html_decimal, _space, other = match.groups()[:8]
    if slash is not None:
        return "/"
    if other is not None:
        return _normal(other)
    hex_code = json_code or url_code or url_byte or html_hex
    if hex_code is None and html_decimal is None:
        return ""  # white space: spaces, a JSON \n, \r or \t, a "+" read as a space
    code = int(hex_code, 16) if hex_code else int(html_decimal)
    # A URL-encoded byte stands for itself: a secret's UTF-8 bytes are compared as
    # Latin-1 characters (see `_variants`).
    return _normal(chr(code)) if code <= 0x10FFFF else match.group().lower()


@functools.lru_cache(maxsize=4096)
def _normal(char: str) -> str:
    """A character as compared: NFKC (fullwidth ``Ａ`` is ``A``), lower case, no space."""
    if char.isascii():
        return "" if char.isspace() else char.lower()
    return "".join(unicodedata.normalize("NFKC", char).lower().split())


@functools.lru_cache(maxsize=32)
def _variants(secret: str) -> tuple[str, ...]:
    """The secret as `_decode` would read each of its spellings."""
    plain = "".join(_normal(char) for char in secret)
    found = {plain, _Decoded(secret, plus_is_space=False).text}
    if not secret.isascii():
        found.add(secret.encode("utf-8").decode("latin-1").lower())
    raw = "".join(secret.split()).encode("utf-8")
    for offset in range(3):
        # The characters of base64 that only the secret's bits decide, whatever comes
        # before it (offset bytes) or after it.
        encoded = base64.b64encode(bytes(offset) + raw).decode("ascii")
        first, last = -(-offset * 8 // 6), (offset + len(raw)) * 8 // 6
        core = encoded[first:last]
        if len(core) >= 8:
            found.add(core.lower())
            found.add(core.translate(_URL_SAFE).lower())
    return tuple(variant for variant in found if variant)


_URL_SAFE = str.maketrans("+/", "-_")


def _masked(text: str, spans: list[tuple[int, int]]) -> str:
    if not spans:
        return text
    parts, done = [], 0
    for start, end in sorted(spans):
        if end <= done:
            continue
        if start >= done:
            parts.append(text[done:start])
            parts.append(_MASK)
        done = end
    parts.append(text[done:])
    return "".join(parts)


def auth_headers(access_key: str, secret_key: str) -> dict[str, str]:
    """The headers that carry the keys (never the URL: URLs end up in logs).

    Raises:
        TypeError: a key that is not a str.
        ValueError: an empty key, or one with white space, control characters or
            characters outside ASCII (which no HTTP header can carry).
    """
    for name, key in (("access_key", access_key), ("secret_key", secret_key)):
        if not isinstance(key, str):
            raise TypeError(f"{name} must be a str, not {type(key).__name__}")
        if not key:
            raise ValueError(f"{name} must not be empty")
        # Never echo the key: it may be the secret.
        if any(char.isspace() or not char.isprintable() for char in key):
            raise ValueError(f"{name} holds white space or control characters")
        if not key.isascii():
            raise ValueError(f"{name} holds characters outside ASCII: check it was copied whole")
    return {_ACCESS_KEY_HEADER: access_key, _SECRET_KEY_HEADER: secret_key}
