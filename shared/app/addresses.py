"""Which addresses a production call may reach: public unicast only.

A name on an allow-list says nothing about where it points: its DNS can be changed to a
private range, the cloud's metadata service (169.254.0.0/16) or this machine. So the
client resolves a name itself, refuses it unless every address it resolves to is public,
and connects to the address it checked: no second lookup for a rebinding DNS to answer
differently (`app.outbound.client`). The production settings check judges the addresses
written in an allow-list the same way (`app.config`).
"""

from __future__ import annotations

import ipaddress
import socket

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# IPv6 prefixes that carry an IPv4 address in their last 32 bits: the IPv4 address inside
# is the one judged. The NAT64 well-known prefix; IPv4-compatible (::/96, deprecated, but a
# stack may still route it to the IPv4 address; :: and ::1 are judged as themselves); and
# IPv4-translated (::ffff:0:a.b.c.d, the prefix ::ffff:0:0:0/96, SIIT).
_CARRYING = (
    ipaddress.ip_network("64:ff9b::/96"),
    ipaddress.ip_network("::/96"),
    ipaddress.ip_network("::ffff:0:0:0/96"),
)
_UNSPECIFIED_AND_LOOPBACK = (ipaddress.IPv6Address("::"), ipaddress.IPv6Address("::1"))
# NAT64 for local use (RFC 8215): what it translates to is the operator's choice, so it
# may lead anywhere inside; never public.
_LOCAL_NAT64 = ipaddress.ip_network("64:ff9b:1::/48")
# What `is_global` lets through on the Python versions this runs on (3.10 on SCF), though
# it is not global unicast: IPv6 outside 2000::/3 (site-local fec0::/10, unassigned space),
# the IPv6 documentation prefix 3fff::/20, and IPv4's IETF protocol assignments (all but
# 192.0.0.9 and 192.0.0.10, which are global).
_GLOBAL_UNICAST_V6 = ipaddress.ip_network("2000::/3")
_DOCUMENTATION_V6 = ipaddress.ip_network("3fff::/20")
_PROTOCOL_ASSIGNMENTS = ipaddress.ip_network("192.0.0.0/24")
_GLOBAL_ASSIGNMENTS = (ipaddress.IPv4Address("192.0.0.9"), ipaddress.IPv4Address("192.0.0.10"))


class NotPublic(Exception):
    """The name resolves to an address outside the public internet, or to nothing."""


def is_public(address: IpAddress) -> bool:
    """A global unicast address, judged on the IPv4 address an IPv6 one carries (mapped,
    IPv4-compatible, IPv4-translated, 6to4, Teredo, NAT64): private, loopback, link-local
    (the metadata service), shared (100.64.0.0/10), multicast, reserved and unspecified
    addresses are not, nor is local-use NAT64 (64:ff9b:1::/48), nor IPv6 outside global
    unicast (2000::/3: site-local fec0::/10 among others)."""
    if isinstance(address, ipaddress.IPv6Address):
        if address in _LOCAL_NAT64:
            return False
        carried = address.ipv4_mapped or address.sixtofour
        if carried is None and address.teredo is not None:
            carried = address.teredo[1]
        if (
            carried is None
            and address not in _UNSPECIFIED_AND_LOOPBACK
            and any(address in prefix for prefix in _CARRYING)
        ):
            carried = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if carried is not None:
            return is_public(carried)
        if address not in _GLOBAL_UNICAST_V6 or address in _DOCUMENTATION_V6:
            return False
    elif address in _PROTOCOL_ASSIGNMENTS and address not in _GLOBAL_ASSIGNMENTS:
        return False
    return address.is_global and not address.is_multicast


# The block an IPv6 subscriber is given at the least: a host inside it picks its own
# addresses (privacy extensions rotate them), so one client is one /64, not one address.
CLIENT_PREFIX_V6 = 64


def client_network(text: str) -> str:
    """What a per-client limit counts the client address `text` under: an IPv4 address as
    itself (one written IPv4-mapped too), an IPv6 address as its /64 (`2001:db8:1:2::/64`);
    text that is no address (empty, a name) as it is written."""
    address = parse(text)
    if address is None:
        return text
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        network = ipaddress.IPv6Network((address, CLIENT_PREFIX_V6), strict=False)
        return str(network)
    return str(address)


def parse(text: str) -> IpAddress | None:
    """`text` as an IP address (brackets and an IPv6 zone dropped), None for a name."""
    try:
        return ipaddress.ip_address(text.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def as_resolved(name: str) -> IpAddress | None:
    """The address `name` is without any lookup, as the C resolver reads it: what `parse`
    takes, and the IPv4 forms only inet_aton does (`127.1`, `0177.0.0.1`, `10.1`); one
    trailing dot dropped. None for a name that needs DNS."""
    name = name[:-1] if name.endswith(".") else name
    address = parse(name)
    if address is not None:
        return address
    try:
        return ipaddress.IPv4Address(socket.inet_aton(name))
    except (OSError, ValueError):
        return None


def resolve(host: str, port: int, *, public_only: bool) -> str:
    """One address of `host` to connect to, IPv4 first. With `public_only`, NotPublic unless
    every address the name has is public: a name that answers with a public and a private
    address is refused, whichever the connection would have used. OSError when the name
    does not resolve."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except UnicodeError:  # a label empty or over 63 characters: the IDNA codec refuses it
        raise OSError(f"{host} is not a name DNS can look up") from None
    addresses = [(family, str(sockaddr[0])) for family, _, _, _, sockaddr in found]
    if not addresses:
        raise OSError(f"{host} has no address")
    if public_only:
        for _family, text in addresses:
            address = parse(text)
            if address is None or not is_public(address):
                raise NotPublic("resolves to an address that is not public")
    addresses.sort(key=lambda entry: entry[0] != socket.AF_INET)
    return addresses[0][1]
