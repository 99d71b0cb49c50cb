"""Keeping the secret key out of sight: the headers that carry the keys, and `scrub`.

A leaf module (no httpx, no event loop): every text built from what a server
sent, or from an exception, passes through `scrub` before anyone sees it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

__all__ = ["auth_headers", "scrub"]

_ACCESS_KEY_HEADER = "x-LSQ-AccessKey"
_SECRET_KEY_HEADER = "x-LSQ-SecretKey"


def scrub(text: str, secrets: Iterable[str]) -> str:
    """Replace every occurrence of a secret in ``text``, in any spelling a server or a
    log may give it: as is, JSON-escaped (``\\/``, ``\\u0041``), URL-encoded
    (``%41``) or as HTML character references (``&#65;``), each character in any
    of them, upper or lower case."""
    for secret in secrets:
        if secret:
            text = _spellings(secret).sub("***", text)
    return text


@functools.lru_cache(maxsize=32)
def _spellings(secret: str) -> re.Pattern[str]:
    return re.compile("".join(_char_spellings(char) for char in secret), re.IGNORECASE)


def _char_spellings(char: str) -> str:
    code = ord(char)
    # Escaped once or more: JSON inside JSON doubles the backslashes, and a
    # URL-encoded value encoded again turns % into %25.
    utf8 = "".join(f"%(?:25)*{byte:02x}" for byte in char.encode("utf-8"))
    forms = [
        re.escape(char),
        rf"(?:\\)+u{code:04x}",
        utf8,
        rf"&#0*{code};",
        rf"&#x0*{code:x};",
    ]
    if char == "/":
        forms.append(r"(?:\\)+/")
    if char == " ":
        forms.append(r"\+")
    return f"(?:{'|'.join(forms)})"


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
