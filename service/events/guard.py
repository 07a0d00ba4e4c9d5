"""Where outgoing requests may go (docs/events.md, "Where requests may go")."""
from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from service.platform.config import Settings


def public_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Tell whether an address is a public unicast one (not loopback, private, link-local …)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


class Refused(Exception):
    """The target may not be contacted (scheme, private address, resolution)."""


def resolve(url: str, settings: Settings) -> tuple[str, str, int, str]:
    """Check a subscriber URL now and return (scheme, host, port, address to connect to)."""
    parts = urlsplit(url)
    allowed = ("https", "http") if settings.demo else ("https",)
    if parts.scheme not in allowed:
        raise Refused(f"refused: {parts.scheme}:// (https:// is required outside demo mode)")
    host = parts.hostname
    if not host:
        raise Refused("refused: the url has no host")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise Refused(f"cannot resolve the host: {exc}") from None
    addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    if not addresses:
        raise Refused("cannot resolve the host: no address")
    if not settings.subscriber_allow_private:
        private = [str(a) for a in addresses if not public_address(a)]
        if private:
            raise Refused(f"refused: the host resolves to a loopback, private or link-local address "
                          f"({private[0]}); SUBSCRIBER_ALLOW_PRIVATE=1 allows it")
    return parts.scheme, host, port, str(addresses[0])
