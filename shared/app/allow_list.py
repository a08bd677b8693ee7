"""PIPELINE_ALLOWED_HOSTS: the hosts (and ports) an `http` step may call.

Parsed with the settings, so a malformed entry stops an instance at load, naming it. In
production every entry must name a public host (`AllowedHost.is_internal`, judged like the
outbound client judges the addresses it connects to: `app.addresses`).
"""

from __future__ import annotations

from dataclasses import dataclass

# Names that reach the cloud's metadata service or this machine whatever the DNS says.
INTERNAL_NAMES = frozenset({"localhost", "metadata.tencentyun.com", "metadata.google.internal"})


@dataclass(frozen=True)
class AllowedHost:
    """One PIPELINE_ALLOWED_HOSTS entry: `host` or `host:port` (`[v6]:port` for IPv6)."""

    host: str  # lower case, IPv6 without brackets
    port: int | None  # None: any port of the host

    def allows(self, host: str, port: int) -> bool:
        return host == self.host and self.port in (None, port)

    @property
    def is_internal(self) -> bool:
        """Whether the entry names an address outside the public internet: a private,
        loopback, link-local (metadata) or other non-public IP, a name that always points
        inside, or a name without a dot (resolved through the search domains inside).
        A name the C resolver reads as an IPv4 address (`127.1`, `0177.0.0.1`, `10.1`:
        what inet_aton accepts) is judged as that address, and so is one with a trailing
        dot."""
        from app import addresses  # cold start: only the production check judges entries

        address = addresses.as_resolved(self.host)
        if address is not None:
            return not addresses.is_public(address)
        name = self.host.rstrip(".")
        return name in INTERNAL_NAMES or name.endswith(".localhost") or "." not in name


def parse_allowed_hosts(text: str) -> frozenset[AllowedHost]:
    """The entries of a comma separated allow-list; ValueError naming a malformed one."""
    entries = set()
    for raw in text.split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        host, port = entry, None
        if entry.startswith("["):  # [v6] or [v6]:port
            host, bracket, rest = entry[1:].partition("]")
            if not bracket or (rest and not rest.startswith(":")):
                raise ValueError(f"{raw.strip()!r} is not a host or host:port")
            port = rest[1:] if rest else None
        elif entry.count(":") == 1:
            host, port = entry.split(":")
        if not host or any(ch in host for ch in "/@ ?#\\"):
            raise ValueError(f"{raw.strip()!r} is not a host or host:port")
        if port is not None and not (port.isdigit() and 0 < int(port) < 65536):
            raise ValueError(f"{raw.strip()!r} has an invalid port")
        entries.add(AllowedHost(host, int(port) if port is not None else None))
    return frozenset(entries)
