"""Loopback addresses and local ports: the one home for both.

Load goes to loopback targets only unless a run says otherwise, so every guard asks the same question here.
"""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

# the host names and addresses that never leave this machine
LOOPBACK_HOSTS: frozenset[str] = frozenset({"127.0.0.1", "::1", "localhost"})


def is_loopback_host(host: str | None) -> bool:
    """True for a loopback host name or address (an IPv4-mapped 127.0.0.1 included)."""
    if not host:
        return False
    host = host.strip("[]")
    return host in LOOPBACK_HOSTS or host.startswith("127.") or host == "::ffff:127.0.0.1"


def is_loopback_url(url: str) -> bool:
    """True when the URL's host is a loopback host."""
    return is_loopback_host(urlsplit(url).hostname)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on `host` a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_is_free(host: str, port: int) -> bool:
    """True when `port` can be bound on `host` the way uvicorn binds it (SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True
