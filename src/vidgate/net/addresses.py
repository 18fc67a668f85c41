"""Which hosts and addresses a user-supplied URL may reach: IP literals in every spelling, and
whether an address is public.

Numeric hosts are read the way the WHATWG URL standard, browsers, curl and getaddrinfo's
inet_aton read them: ``127.1``, ``2130706433``, ``0x7f000001`` and ``0177.0.0.1`` all mean
127.0.0.1. httpx leaves most of these as registered names, so without this they would reach
the resolver, and whatever other software sees the same URL (an upstream that fetches it, a
browser) would read them as the address anyway. Parsing them here means they are judged as the
addresses they are, with no DNS lookup.
"""

from __future__ import annotations

import ipaddress
import re

__all__ = [
    "IPAddress",
    "IPNetwork",
    "InvalidHost",
    "connect_address",
    "is_allowed",
    "is_localhost_name",
    "is_public",
    "judged_address",
    "loopback_allowed",
    "not_public_message",
    "parse_ip_host",
    "parse_ipv4_number_form",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Ranges Python's is_global does not (or not in every 3.11 patch release) treat as special.
_BLOCKED_NETWORKS: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(net)
    for net in (
        "0.0.0.0/8",
        "100.64.0.0/10",  # carrier-grade NAT
        "192.0.0.0/24",
        "198.18.0.0/15",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "64:ff9b:1::/48",  # local-use NAT64: its IPv4 embedding is site-defined, so never judged
        "100::/64",
        "2001:db8::/32",
        "fc00::/7",
        "fe80::/10",
        "fec0::/10",
        "ff00::/8",
    )
)
# RFC 6052 well-known NAT64 prefix: the last 32 bits are the IPv4 host the gateway reaches.
_NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")

# A registered name after IDNA encoding (httpx lowercases it); anything else, such as a
# percent-encoded host, may mean another host to other URL parsers, so it is refused.
_NAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?")
_HEX_PART = re.compile(r"0[xX][0-9a-fA-F]*")


class InvalidHost(ValueError):
    """A host that is neither a valid IP address nor a plain DNS name."""


def parse_ip_host(host: str) -> IPAddress | None:
    """The address an IP-literal host means, or None for a DNS name.

    ``host`` is a URL's host without brackets (httpx's ``raw_host``). Raises ``InvalidHost``
    for hosts that are neither, e.g. ``1.2.3.4.5``, ``999.1.1.1`` or ``exa%20mple.com``.
    """
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host)
        except ValueError:
            raise InvalidHost(f"{host} is not a valid IPv6 address") from None
    ipv4 = parse_ipv4_number_form(host)
    if ipv4 is not None:
        return ipv4
    if not _NAME.fullmatch(host):
        raise InvalidHost(f"the host name {host} is not a valid DNS name")
    return None


def parse_ipv4_number_form(host: str) -> ipaddress.IPv4Address | None:
    """``host`` read as an IPv4 address under the WHATWG / inet_aton rules, or None when it is
    not numeric at all.

    1 to 4 dot-separated parts, each decimal, ``0x`` hex or 0-leading octal; the last part
    fills the remaining bytes (``127.1`` is 127.0.0.1). One trailing dot is ignored. A host
    whose last part is a number but that breaks these rules is invalid (``InvalidHost``), as in
    the URL standard: no TLD is numeric, so it can never be a DNS name.
    """
    parts = host.split(".")
    if len(parts) > 1 and parts[-1] == "":
        parts.pop()  # "127.0.0.1." is 127.0.0.1
    last_part = parts[-1]
    if not (last_part.isascii() and last_part.isdigit()) and not _HEX_PART.fullmatch(last_part):
        return None  # a name, e.g. "example.com" or "1password.com"
    values = [_part_value(part) for part in parts]
    if len(parts) > 4 or any(value is None for value in values):
        raise InvalidHost(f"{host} is not a valid IPv4 address")
    numbers = [value for value in values if value is not None]
    *leading, last = numbers
    if any(number > 255 for number in leading) or last >= 256 ** (5 - len(numbers)):
        raise InvalidHost(f"{host} is not a valid IPv4 address")
    total = last
    for position, number in enumerate(leading):
        total += number << (8 * (3 - position))
    return ipaddress.IPv4Address(total)


def _part_value(part: str) -> int | None:
    if _HEX_PART.fullmatch(part):
        return int(part[2:] or "0", 16)  # "0x" alone is 0, as in the URL standard
    if not part.isascii() or not part.isdigit():
        return None
    if len(part) > 1 and part.startswith("0"):
        return int(part, 8) if set(part) <= set("01234567") else None
    return int(part)


def is_localhost_name(host: str) -> bool:
    """``localhost`` and every ``*.localhost`` name: loopback by definition (RFC 6761)."""
    name = host.lower().removesuffix(".")
    return name == "localhost" or name.endswith(".localhost")


def loopback_allowed(allowed_networks: tuple[IPNetwork, ...]) -> bool:
    """Whether the allow-list lets a localhost name through (it resolves to 127.0.0.1, ::1)."""
    loopbacks = (ipaddress.IPv4Address("127.0.0.1"), ipaddress.IPv6Address("::1"))
    return any(address in net for address in loopbacks for net in allowed_networks)


def judged_address(address: IPAddress) -> IPAddress:
    """The address whose kind decides: the IPv4 host behind ``::ffff:a.b.c.d`` (IPv4-mapped)
    and ``64:ff9b::a.b.c.d`` (NAT64), the address itself otherwise."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address in _NAT64_WELL_KNOWN:
            return ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)
    return address


def connect_address(address: IPAddress) -> IPAddress:
    """Where to connect: an IPv4-mapped address is its IPv4 host; a NAT64 address stays IPv6,
    since only the NAT64 gateway (reached over IPv6) makes it lead to that host."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_allowed(address: IPAddress, allowed_networks: tuple[IPNetwork, ...]) -> bool:
    """Public, or inside the operator's allow-list (checked for the address as written and
    for the IPv4 host it leads to)."""
    candidates = {address, judged_address(address)}
    if any(candidate in net for candidate in candidates for net in allowed_networks):
        return True
    return is_public(address)


def not_public_message(spelled_host: str, address: IPAddress) -> str:
    """The refusal of an IP-literal host, naming the address a spelling stands for:
    "2130706433 (127.0.0.1) is not a public address"."""
    judged = judged_address(address)
    if spelled_host == str(judged):
        return f"{spelled_host} is not a public address"
    return f"{spelled_host} ({judged}) is not a public address"


def is_public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:
            return False  # a zone names a local interface
        inner = judged_address(address)
        if inner is not address:
            return is_public(inner)
        # 6to4 and Teredo also carry an IPv4 address the packets may end up at.
        tunnelled: list[ipaddress.IPv4Address] = []
        if address.sixtofour is not None:
            tunnelled.append(address.sixtofour)
        if address.teredo is not None:
            tunnelled.append(address.teredo[1])
        if any(not is_public(ipv4) for ipv4 in tunnelled):
            return False
    special = (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )
    if special or not address.is_global:
        return False
    return not any(address in net for net in _BLOCKED_NETWORKS)
