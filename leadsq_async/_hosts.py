"""The API's hosts: the region table and the base URL a session calls, checked.

A leaf module (no httpx, no event loop), so the CLI and the dlt source can
check a ``--host`` before anything else is built.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from collections.abc import Mapping

__all__ = ["REGION_HOSTS", "base_url"]

REGION_HOSTS: Mapping[str, str] = {
    "singapore": "api.leadsquared.com",
    "us": "api-us11.leadsquared.com",
    "mumbai": "api-in21.leadsquared.com",
    "hyderabad": "api-in22.leadsquared.com",
    "ireland": "api-ir31.leadsquared.com",
    "canada": "api-ca12.leadsquared.com",
    "middle-east": "api-me61.leadsquared.com",
}
"""The API's host in each region, by region name. Pass one as ``Session(host=...)``.

A call against the wrong region fails with `AuthenticationError`, whose
``correct_host`` names the account's host when the server's message does.
"""

# A DNS name (IDNA-encoded first) or an IPv4 address; IPv6 comes in brackets.
_HOST_NAME = re.compile(
    r"[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?)*\.?"
)


def base_url(host: str) -> str:
    """The base URL for a region host name or a full URL, ending in ``/``.

    ``api-in21.leadsquared.com`` gives ``https://api-in21.leadsquared.com/v2/``;
    a full URL is taken as it is, with ``/v2/`` added when it has no path.

    Raises:
        TypeError: a host that is not a str.
        ValueError: an empty or malformed host, a scheme other than http(s),
            or plain http to a host other than loopback.
    """
    if not isinstance(host, str):
        raise TypeError(f"host must be a str, not {type(host).__name__}")
    text = host.strip()
    if not text:
        raise ValueError("host must not be empty")
    if "://" not in text:
        text = f"https://{text}"
    try:
        parts = urllib.parse.urlsplit(text)
        port = parts.port
        name = _host_name(parts.hostname or "")
    except ValueError as exc:
        raise ValueError(f"host is not a valid host name or URL: {host!r}") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not name:
        raise ValueError(f"host must be a host name or an http(s) URL, not {host!r}")
    if parts.query or parts.fragment or "?" in text or "#" in text or "@" in parts.netloc:
        raise ValueError("host must not carry a query, a fragment or credentials")
    if scheme == "http" and not _is_loopback(name):
        raise ValueError(
            f"plain http is refused for {name}: the keys would cross the network "
            "unencrypted; use https (http is allowed for loopback hosts only)"
        )
    netloc = f"[{name}]" if ":" in name else name
    if port is not None and port != {"http": 80, "https": 443}[scheme]:
        netloc = f"{netloc}:{port}"
    path = parts.path if parts.path not in ("", "/") else "/v2/"
    if any(char.isspace() or not char.isprintable() for char in path):
        raise ValueError(f"host is not a valid host name or URL: {host!r}")
    return f"{scheme}://{netloc}{path if path.endswith('/') else f'{path}/'}"


def _host_name(name: str) -> str:
    """The host as sent (lower case, IDNA-encoded), or ValueError."""
    if not name:
        return ""
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        pass
    encoded = name.encode("idna").decode("ascii").lower()
    if not _HOST_NAME.fullmatch(encoded):
        raise ValueError(f"not a host name: {name!r}")
    return encoded


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
