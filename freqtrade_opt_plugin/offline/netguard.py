"""Block network access in this process so an "offline" run cannot silently go online.

Patches ``socket.getaddrinfo`` and ``socket.socket.connect``/``connect_ex``: name lookups of
anything but localhost and connections to non-loopback internet addresses raise
``NetworkBlockedError`` (an ``OSError``, which is what network libraries expect). Every attempt is
also recorded, because libraries like ccxt/aiohttp may catch the error and retry quietly:
``blocked_attempts()`` lists them and ``python -m freqtrade_opt_plugin.offline`` fails the run when
there were any. Unix sockets and loopback (used by asyncio, multiprocessing) stay allowed.
"""

from __future__ import annotations

import ipaddress
import socket
import sys
from typing import Any


_LOCAL_NAMES = {None, "", "localhost", "localhost.localdomain", "ip6-localhost"}
_attempts: list[str] = []
_originals: dict[str, Any] = {}


class NetworkBlockedError(ConnectionRefusedError):
    """Raised instead of reaching the network while the guard is installed."""


def _is_loopback(host: Any) -> bool:
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    if host in _LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(str(host).split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def _block(what: str) -> NetworkBlockedError:
    message = f"freqtrade_opt_plugin.offline blocked network access: {what}"
    _attempts.append(what)
    print(message, file=sys.stderr, flush=True)
    return NetworkBlockedError(message)


def _guarded_getaddrinfo(host, port, *args, **kwargs):
    if not _is_loopback(host):
        raise _block(f"name lookup of {host!r} (port {port})")
    return _originals["getaddrinfo"](host, port, *args, **kwargs)


def _check_address(sock: socket.socket, address: Any) -> None:
    if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):
        raise _block(f"connection to {address!r}")


def _guarded_connect(self: socket.socket, address: Any) -> None:
    _check_address(self, address)
    return _originals["connect"](self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> int:
    _check_address(self, address)
    return _originals["connect_ex"](self, address)


def install_network_guard() -> None:
    """Install the guard (idempotent) for this process."""
    if _originals:
        return
    _originals["getaddrinfo"] = socket.getaddrinfo
    _originals["connect"] = socket.socket.connect
    _originals["connect_ex"] = socket.socket.connect_ex
    socket.getaddrinfo = _guarded_getaddrinfo
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]


def uninstall_network_guard() -> None:
    if not _originals:
        return
    socket.getaddrinfo = _originals.pop("getaddrinfo")
    socket.socket.connect = _originals.pop("connect")  # type: ignore[method-assign]
    socket.socket.connect_ex = _originals.pop("connect_ex")  # type: ignore[method-assign]


def blocked_attempts() -> list[str]:
    """Descriptions of the network accesses blocked so far in this process."""
    return list(_attempts)
