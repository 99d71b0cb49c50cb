"""`scrub` and `shown`: a secret in any spelling, split or encoded, never shows; in linear time."""

from __future__ import annotations

import base64
import json
import time
import urllib.parse

import pytest

import leadsq_async as lsq
from leadsq_async._decode import decode_page
from leadsq_async._secrets import SHOWN_CHARACTERS, scrub, shown
from leadsq_async.cli._run import error_line

SECRET = "Zk93-SECRET-4f1a/b+c=77QxW"


def fullwidth(text: str) -> str:
    return "".join(chr(ord(char) + 0xFEE0) if "!" <= char <= "~" else char for char in text)


SPELLINGS = {
    "plain": SECRET,
    "upper": SECRET.upper(),
    "json-slash": SECRET.replace("/", "\\/"),
    "json-unicode": "".join(f"\\u{ord(char):04x}" for char in SECRET),
    "json-twice": "".join(f"\\\\u{ord(char):04X}" for char in SECRET),
    "url": urllib.parse.quote(SECRET, safe=""),
    "url-twice": urllib.parse.quote(urllib.parse.quote(SECRET, safe=""), safe=""),
    "url-plus": urllib.parse.quote_plus(SECRET),
    "html-decimal": "".join(f"&#{ord(char)};" for char in SECRET),
    "html-hex": "".join(f"&#x{ord(char):x};" for char in SECRET),
    "percent-u": "".join(f"%u{ord(char):04X}" for char in SECRET),
    "fullwidth": fullwidth(SECRET),
    "newline": f"{SECRET[:9]}\n{SECRET[9:]}",
    "spaces-and-tabs": " \t ".join(SECRET),
    "crlf-every-5": "\r\n".join(SECRET[n : n + 5] for n in range(0, len(SECRET), 5)),
    "json-newline": f"{SECRET[:9]}\\n{SECRET[9:]}",
    "url-space-split": urllib.parse.quote(f"{SECRET[:9]} {SECRET[9:]}", safe=""),
    "html-newline-split": f"{SECRET[:9]}&#10;{SECRET[9:]}",
    "ideographic-space-split": f"{SECRET[:9]}\u3000{SECRET[9:]}",
    "mixed": "".join(
        (char, f"%{ord(char):02x}", f"&#{ord(char)};", f"\\u{ord(char):04x}")[n % 4]
        for n, char in enumerate(SECRET)
    ),
}


def base64_spellings(secret: str) -> dict[str, str]:
    """The secret base64-encoded, alone and inside longer values (Basic auth, tokens)."""
    raw = secret.encode()
    return {
        "base64": base64.b64encode(raw).decode(),
        "base64-url": base64.urlsafe_b64encode(raw).decode().rstrip("="),
        "base64-basic-auth": base64.b64encode(b"access:" + raw).decode(),
        "base64-offset-2": base64.b64encode(b"xy" + raw + b"tail").decode(),
        "base64-wrapped": "\n".join(
            base64.b64encode(b"q" + raw).decode()[n : n + 8] for n in range(0, 40, 8)
        ),
    }


def visible(text: str) -> bool:
    """Whether a piece of the secret long enough to matter shows in ``text``."""
    plain = "".join(text.split()).lower()
    pieces = [SECRET[n : n + 6].lower() for n in range(len(SECRET) - 5)]
    return any(piece in plain for piece in pieces)


@pytest.mark.parametrize("name", list(SPELLINGS))
def test_every_spelling_of_the_secret_is_scrubbed(name: str) -> None:
    """As is, escaped, encoded (once or twice), fullwidth or split by white space: masked."""
    text = scrub(f"bad key <{SPELLINGS[name]}> given", [SECRET])
    assert text.startswith("bad key <")
    assert text.endswith("> given")
    assert "***" in text
    assert "".join(text.split()) == "badkey<***>given"


@pytest.mark.parametrize("name", list(base64_spellings(SECRET)))
def test_the_secret_in_base64_is_scrubbed(name: str) -> None:
    """Base64 of the secret, alone or inside a longer value, at any offset, is masked."""
    spelled = base64_spellings(SECRET)[name]
    text = scrub(f"token {spelled} end", [SECRET])
    assert "***" in text
    # What is left of the encoding does not decode to a piece of the secret.
    for word in text.split():
        for start in range(4):
            chunk = word[start:]
            chunk = chunk[: len(chunk) // 4 * 4]
            try:
                decoded = base64.b64decode(chunk, altchars=b"-_").decode("latin-1")
            except ValueError:
                continue
            assert not visible(decoded), (name, text)


def test_a_secret_split_across_lines_does_not_show_in_the_cli_error_line() -> None:
    """error_line collapses white space after scrubbing: the split secret is masked first."""
    error = RuntimeError(f"the server said: key {SECRET[:9]}\n   {SECRET[9:]} refused")
    line = error_line(error, lambda text: scrub(text, [SECRET]))
    assert not visible(line)
    assert line == "the server said: key *** refused"


def test_text_without_a_secret_is_unchanged() -> None:
    """Escapes, white space and non-ASCII text that hold no secret come back as they were."""
    text = "a\\u0041 %41 &#65; \\/ ｆｕｌｌ  \n tabs\t+plus %zz &#xZZ; \\\\\\"
    assert scrub(text, [SECRET]) == text
    assert scrub(text, []) == text
    assert scrub(text, [""]) == text


def test_shown_keeps_the_first_characters_and_masks_a_secret_cut_at_the_end() -> None:
    """shown() keeps SHOWN_CHARACTERS, scrubbed; a secret the cut splits shows no piece."""
    long_text = "x" * (SHOWN_CHARACTERS - 10) + SECRET + "y" * 50
    kept = shown(long_text, [SECRET])
    assert len(kept) <= SHOWN_CHARACTERS
    assert kept.startswith("x" * 100)
    assert not visible(kept)
    assert SECRET[:4] not in kept[-20:]


def test_shown_masks_a_secret_moved_inside_the_cut_by_earlier_masks() -> None:
    """Many long spellings masked early shorten the text: a secret after them still shows not."""
    spelled = SPELLINGS["json-twice"]
    text = (spelled + " ") * 40 + SECRET[:12]
    kept = shown(text, [SECRET])
    assert not visible(kept)


HOSTILE = 2**20  # characters of hostile text

# Text built against the old patterns (nested repeats of escapes), and near misses.
HOSTILE_KINDS = {
    "backslashes": lambda size: "\\" * size,
    "escapes-cut": lambda size: "\\\\u00" * (size // 5),
    "percent-25": lambda size: "%25" * (size // 3),
    "percent-run": lambda size: "%" + "25" * (size // 2),
    "html-zeros": lambda size: "&#" + "0" * size,
    "near-misses": lambda size: (SECRET[:-1] + " ") * (size // len(SECRET)),
}


@pytest.mark.parametrize("kind", list(HOSTILE_KINDS))
def test_what_is_kept_of_a_mebibyte_of_hostile_text_scrubs_in_milliseconds(kind: str) -> None:
    """shown() reads only the start of 1 MiB of hostile text: a few milliseconds."""
    hostile = HOSTILE_KINDS[kind](HOSTILE)
    started = time.thread_time()
    kept = shown(hostile, [SECRET])
    elapsed = time.thread_time() - started
    assert kept == hostile[:SHOWN_CHARACTERS]
    assert elapsed < 0.1, f"{elapsed:.3f} s"


def best_time(text: str) -> float:
    """The least CPU time of the test's thread over five runs (the machine is shared)."""
    times = []
    for _ in range(5):
        started = time.thread_time()
        scrub(text, [SECRET])
        times.append(time.thread_time() - started)
    return min(times)


@pytest.mark.parametrize("kind", list(HOSTILE_KINDS))
def test_scrubbing_hostile_text_takes_time_linear_in_its_length(kind: str) -> None:
    """Four times the hostile text takes about four times as long (sixteen if quadratic)."""
    small, large = HOSTILE_KINDS[kind](HOSTILE // 64), HOSTILE_KINDS[kind](HOSTILE // 16)
    assert scrub(large, [SECRET]) == large
    assert best_time(large) < 8 * best_time(small) + 0.02


def timed_decode(body: bytes) -> tuple[float, lsq.ServerError]:
    started = time.thread_time()
    try:
        decode_page(500, body, endpoint="x", secrets=[SECRET])
    except lsq.ServerError as error:
        return time.thread_time() - started, error
    raise AssertionError("no ServerError")


def test_a_500_with_a_mebibyte_of_backslashes_decodes_at_once() -> None:
    """The body that blocked the loop for 16.8 s decodes to a ServerError in milliseconds."""
    elapsed, error = timed_decode(json.dumps({"Message": "\\" * HOSTILE}).encode())
    assert len(error.body) == SHOWN_CHARACTERS
    assert elapsed < 0.5
