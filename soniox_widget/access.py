"""Who may drive the package's servers (the proxy, the local engine): Host and Origin.

A web page the user happens to have open can reach a server on 127.0.0.1. Two
checks stop it, decided here once for both servers:

* **Host.** Through DNS rebinding a page on ``evil.example`` talks to 127.0.0.1
  while its requests say ``Host: evil.example:3001``. A request is served only if
  its ``Host`` names the address the server is bound to, a loopback name
  (``localhost``, ``127.0.0.1``, ``[::1]``), an IP address (rebinding needs a
  name), or a host the user allowed. Anything else gets 421 before a session starts.
* **Origin.** Browsers always send ``Origin`` on a WebSocket handshake; Python and
  SDK clients do not. A request with an ``Origin`` is served only if that origin
  is the server's own (computed from its bound address and port, never from the
  request) or one the user allowed; otherwise 403.

Jupyter's own server makes the same two checks (``allow_remote_access``,
``allow_origin``).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host in LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return True


# RFC 9110's Host: uri-host [":" port], where uri-host is an IP literal in brackets or a
# name of dot-separated labels (which also covers IPv4). Exact: nothing else may follow
# (a "#", "?", "/" or "@" makes it no host at all, though a URL parser would cut there).
_HOST = re.compile(r"(?:\[(?P<ip6>[0-9A-Fa-f:.]+)\]"
                   r"|(?P<name>[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.?))"
                   r"(?::(?P<port>[0-9]{0,5}))?")


def split_host(value: str) -> tuple[str, int | None] | None:
    """``"Example.com:3001"`` → ``("example.com", 3001)``; None if it is not exactly a
    host (with an optional port) as a Host header may hold one."""
    match = _HOST.fullmatch(value)
    if match is None:
        return None
    port = int(match["port"]) if match["port"] else None
    if port is not None and port > 65535:
        return None
    if match["ip6"] is not None:
        try:
            return str(ipaddress.IPv6Address(match["ip6"])), port
        except ValueError:
            return None
    return match["name"].lower(), port


def normalise_origin(origin: str) -> str | None:
    """``"HTTP://Localhost:3001/"`` → ``"http://localhost:3001"``; None if not an origin."""
    parts = urlsplit(origin.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    try:
        port = parts.port
    except ValueError:
        return None
    default = 443 if parts.scheme == "https" else 80
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + ("" if port in (None, default) else f":{port}")


@dataclass
class AccessPolicy:
    """The Host and Origin checks of one server; see the module docstring.

    Args:
        bind_host: the address the server listens on.
        port: its port (known once it listens).
        allowed_hosts: more ``Host`` names to accept (e.g. a public name behind a
            reverse proxy); ``"*"`` accepts any (only behind a gateway that checks).
        allowed_origins: more origins to accept (``"https://app.example"``); ``"*"``
            accepts any browser origin.
    """

    bind_host: str
    port: int = 0
    allowed_hosts: Iterable[str] = ()
    allowed_origins: Iterable[str] = ()
    _hosts: set[str] = field(default_factory=set, init=False)
    _origins: set[str] = field(default_factory=set, init=False)
    _any_origin: bool = field(default=False, init=False)
    _any_host: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        for host in self.allowed_hosts:
            if host == "*":
                self._any_host = True
            elif (parsed := split_host(host)) is not None:
                self._hosts.add(parsed[0])
            else:
                raise ValueError(f"not a host name: {host!r}")
        for origin in self.allowed_origins:
            if origin == "*":
                self._any_origin = True
            elif (norm := normalise_origin(origin)) is not None:
                self._origins.add(norm)
            else:
                raise ValueError(f"not an origin (scheme://host[:port]): {origin!r}")

    def _own_hosts(self) -> set[str]:
        bound = self.bind_host.strip("[]").lower()
        if bound in ("0.0.0.0", "::", ""):
            # Listening everywhere: its own names are the loopback ones and those the
            # user allowed (a LAN address must be allowed by name, like Jupyter's).
            return set(LOOPBACK_NAMES) | {"localhost"}
        return {bound} | (set(LOOPBACK_NAMES) if is_loopback(bound) else set())

    def host_allowed(self, host_header: str | None) -> bool:
        if self._any_host:
            return True
        if not host_header:
            return False
        parsed = split_host(host_header)
        if parsed is None:
            return False
        # Only the name: a relay, an SSH tunnel or a container's port mapping shows the
        # client another port, and rebinding is about names, not ports.
        name, _port = parsed
        if _is_ip(name):
            return True  # rebinding needs a name it controls; an address is no name
        return name in self._own_hosts() or name in self._hosts

    def own_origins(self) -> set[str]:
        """The origins of pages this server serves itself (http, since it serves no TLS)."""
        out = set()
        for name in self._own_hosts() | self._hosts:
            host = f"[{name}]" if ":" in name else name
            out.add(f"http://{host}:{self.port}")
            out.add(f"https://{host}:{self.port}")
        return out

    def origin_allowed(self, origin_header: str | None) -> bool:
        if origin_header is None:
            return True  # not a browser
        if self._any_origin:
            return True
        norm = normalise_origin(origin_header)
        if norm is None:
            return False  # "null" (sandboxed frames, files) and garbage
        return norm in self._origins or norm in self.own_origins()

    def check(self, headers) -> tuple[int, str] | None:
        """None if the request may go on, else ``(status, body)`` to refuse it with.

        ``headers`` is websockets' ``Headers`` (or a plain mapping). A request with two
        ``Host`` or ``Origin`` headers is refused: which one counts would be a guess.
        """
        get_all = getattr(headers, "get_all", None)
        if get_all is not None:
            for name in ("Host", "Origin"):
                if len(get_all(name)) > 1:
                    return (400, f"more than one {name} header\n")
        if not self.host_allowed(headers.get("Host")):
            return (421, "this server does not answer to that Host name; open it at "
                         f"http://127.0.0.1:{self.port}/ or allow the name with --allow-host\n")
        if not self.origin_allowed(headers.get("Origin")):
            return (403, "origin not allowed; start the server with --allow-origin ORIGIN\n")
        return None
