"""Where a call may go. The client resolves the host once and connects to the address it
resolved, so what it checked is what it reaches: with `public_only` (production) a name that
points at the metadata service, a private range or this machine is refused before anything
is sent, however it was allowed, and a rebinding DNS gets no second lookup to answer
differently. TLS still verifies the certificate against the name, not the address."""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import certifi
import pytest

from app import addresses
from app.outbound.client import CallFailed, DestinationRefused, call
from tests.fakes.upstream import Answer, FakeUpstream
from tests.support.tls import Authority, authority


class Resolver:
    """socket.getaddrinfo answering chosen names with chosen addresses (others as usual),
    counting the lookups of each name."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.answers: dict[str, list[str]] = {}
        self.lookups: Counter[str] = Counter()
        self.delay_s = 0.0  # how long each chosen answer takes
        real = socket.getaddrinfo

        def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
            self.lookups[host] += 1
            if host not in self.answers:
                return real(host, port, *args, **kwargs)
            time.sleep(self.delay_s)
            found = []
            for address in self.answers[host]:
                family = socket.AF_INET6 if ":" in address else socket.AF_INET
                sockaddr = (address, port, 0, 0) if family == socket.AF_INET6 else (address, port)
                found.append((family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sockaddr))
            return found

        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture
def resolver(monkeypatch: pytest.MonkeyPatch) -> Resolver:
    return Resolver(monkeypatch)


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("169.254.169.254", False),  # the metadata service
        ("169.254.0.23", False),  # Tencent Cloud's metadata.tencentyun.com
        ("10.0.0.1", False),
        ("172.16.5.4", False),
        ("192.168.1.1", False),
        ("100.64.0.1", False),  # shared address space (carrier NAT)
        ("127.0.0.1", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),  # multicast
        ("::1", False),
        ("fd00::1", False),
        ("fe80::1", False),
        ("::ffff:127.0.0.1", False),  # IPv4-mapped
        ("64:ff9b::a9fe:a9fe", False),  # NAT64 of 169.254.169.254
        ("2002:a9fe:a9fe::1", False),  # 6to4 of 169.254.169.254
        ("::a9fe:a9fe", False),  # IPv4-compatible 169.254.169.254
        ("::ffff:0:a9fe:a9fe", False),  # IPv4-translated 169.254.169.254
        ("::ffff:0:7f00:1", False),  # IPv4-translated 127.0.0.1
        ("64:ff9b:1::a9fe:a9fe", False),  # local-use NAT64: leads wherever the operator set
        ("64:ff9b:1::808:808", False),
        ("fec0::1", False),  # site-local: deprecated, still routed inside some networks
        ("4000::1", False),  # unassigned: only 2000::/3 is global unicast
        ("5f00::1", False),  # SRv6 SIDs
        ("3fff::1", False),  # documentation (RFC 9637)
        ("192.0.0.8", False),  # IETF protocol assignments: not global, 192.0.0.9 and .10 aside
        ("192.0.0.200", False),
        ("192.0.0.9", True),
        ("::808:808", True),  # IPv4-compatible 8.8.8.8
        ("::ffff:0:808:808", True),  # IPv4-translated 8.8.8.8
        ("8.8.8.8", True),
        ("2606:4700::1111", True),
        ("::ffff:8.8.8.8", True),
    ],
)
def test_only_global_unicast_addresses_are_public(address: str, public: bool) -> None:
    parsed = addresses.parse(address)
    assert parsed is not None
    assert addresses.is_public(parsed) is public


def test_a_name_resolving_to_the_metadata_service_is_refused_before_connecting(
    resolver: Resolver,
) -> None:
    with FakeUpstream() as up:
        # The name leads to a listening server: only the refusal keeps the call from it.
        resolver.answers["ai.example.com"] = ["169.254.169.254"]
        with pytest.raises(DestinationRefused) as refused:
            call("POST", "http://ai.example.com/v1", json_body={}, timeout_s=2, public_only=True)
        resolver.answers["ai.example.com"] = ["127.0.0.1"]
        url = f"http://ai.example.com:{up.port}/v1"
        with pytest.raises(DestinationRefused):
            call("POST", url, json_body={}, timeout_s=2, public_only=True)
        assert up.calls == []
        # Outside production the same name is called, by name.
        reply = call("POST", url, json_body={}, timeout_s=2, public_only=False)
        assert reply.status == 200
        assert up.calls[0].headers["host"] == f"ai.example.com:{up.port}"
    assert str(refused.value) == "resolves to an address that is not public"
    assert not refused.value.timed_out


def test_localhost_and_private_literals_are_refused(resolver: Resolver) -> None:
    for url in (
        "http://localhost/",
        "http://127.0.0.1/",
        "http://[::1]/",
        "http://10.1.2.3/",
        "http://169.254.169.254/latest/meta-data/",
    ):
        with pytest.raises(DestinationRefused):
            call("GET", url, timeout_s=2, public_only=True)


def test_a_name_with_any_private_address_is_refused_and_looked_up_once(
    resolver: Resolver,
) -> None:
    # Rebinding: whichever address a second lookup gave, the first answer is all there is.
    resolver.answers["rebind.example.com"] = ["93.184.216.34", "127.0.0.1"]
    with pytest.raises(DestinationRefused):
        call("GET", "http://rebind.example.com/", timeout_s=2, public_only=True)
    assert resolver.lookups["rebind.example.com"] == 1


def test_each_call_connects_to_the_address_it_checked(resolver: Resolver) -> None:
    with FakeUpstream() as up:
        resolver.answers["api.example.com"] = ["127.0.0.1"]
        url = f"http://api.example.com:{up.port}/x"
        for _ in range(3):
            assert call("POST", url, json_body={}, timeout_s=2, public_only=False).status == 200
    # One lookup per call, by the client; urllib3 was only given the address.
    assert resolver.lookups["api.example.com"] == 3


@pytest.fixture
def trusted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Authority:
    """A CA the client trusts (as certifi's bundle) and a certificate for upstream.test."""
    made = authority(tmp_path, "upstream.test")
    monkeypatch.setattr(certifi, "where", lambda: str(made.ca_file))
    return made


def _in_fresh_thread(work: Any) -> Any:
    """Run `work` in a new thread: the client's keep-alive pools are per thread, so the new
    one trusts the CA the test installed."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = work()
        except BaseException as error:  # handed to the test's thread
            outcome["error"] = error

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    assert not thread.is_alive(), "the call did not end"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def test_tls_verifies_the_name_while_connecting_to_the_address(
    trusted: Authority, resolver: Resolver
) -> None:
    up = FakeUpstream()
    up.tls = trusted.server_context()
    with up:
        up.script("/v1", lambda _c: Answer(200, {"ok": True}))
        resolver.answers["upstream.test"] = ["127.0.0.1"]
        resolver.answers["impostor.test"] = ["127.0.0.1"]
        reply = _in_fresh_thread(
            lambda: call(
                "POST",
                f"https://upstream.test:{up.port}/v1",
                body=b"{}",
                timeout_s=5,
                public_only=False,
            )
        )
        assert reply.json() == {"ok": True}
        # The same server under a name its certificate does not carry: refused by TLS.
        with pytest.raises(CallFailed) as wrong:
            _in_fresh_thread(
                lambda: call(
                    "POST",
                    f"https://impostor.test:{up.port}/v1",
                    body=b"{}",
                    timeout_s=5,
                    public_only=False,
                )
            )
        assert not wrong.value.timed_out
        assert len(up.calls_to("/v1")) == 1


class DribblingHandshake:
    """A TCP server that answers a TLS ClientHello one byte at a time: each read is quick,
    the handshake never ends."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._dribble, args=(connection,), daemon=True).start()

    def _dribble(self, connection: socket.socket) -> None:
        # A handshake record header announcing 16 KB, then its body a byte per 50 ms.
        record = b"\x16\x03\x03\x40\x00" + b"\x02" * 0x4000
        with connection:
            for byte in record:
                if self.stop.is_set():
                    return
                try:
                    connection.sendall(bytes([byte]))
                except OSError:
                    return
                self.stop.wait(0.05)

    def close(self) -> None:
        self.stop.set()
        self.server.close()


def test_a_dribbled_tls_handshake_ends_at_the_calls_deadline(
    trusted: Authority, resolver: Resolver
) -> None:
    # The lookup takes most of the call's 2 s; a handshake bounded only by the connect
    # timeout (2 s of its own) would end the call near 4 s, the deadline ends it at 2 s.
    server = DribblingHandshake()
    resolver.answers["upstream.test"] = ["127.0.0.1"]
    resolver.delay_s = 1.8
    url = f"https://upstream.test:{server.port}/"
    started = time.monotonic()
    try:
        with pytest.raises(CallFailed) as slow:
            _in_fresh_thread(lambda: call("GET", url, timeout_s=2, public_only=False))
    finally:
        server.close()
    assert slow.value.timed_out
    assert time.monotonic() - started < 3.0


def test_a_name_no_lookup_can_take_is_a_call_that_failed() -> None:
    # A label empty or over 63 characters fails in the IDNA codec, before any DNS.
    for host in ("a..example.com", "a" * 64 + ".example.com"):
        with pytest.raises(CallFailed) as failed:
            call("POST", f"http://{host}/", json_body={}, timeout_s=2, public_only=True)
        assert not failed.value.timed_out


def test_a_lookup_that_does_not_answer_ends_at_the_calls_deadline(resolver: Resolver) -> None:
    # getaddrinfo cannot be interrupted: a resolver's own timeouts (5 s a try, per name
    # server) would otherwise hold the call, and the host slot it leases, past its time.
    resolver.answers["slow.example.com"] = ["127.0.0.1"]
    resolver.delay_s = 3
    started = time.monotonic()
    with pytest.raises(CallFailed) as slow:
        call("GET", "http://slow.example.com/", timeout_s=0.5, public_only=False)
    assert slow.value.timed_out
    assert time.monotonic() - started < 2.5  # the lookup alone would take 3 s


def test_a_name_whose_lookups_hang_holds_up_no_call_to_another_host(resolver: Resolver) -> None:
    # More calls to a name whose resolver does not answer than there are lookup threads:
    # they wait on one lookup of it, and a call to another host is looked up at once.
    resolver.answers["hung.example.com"] = ["127.0.0.1"]
    resolver.delay_s = 3
    hung = [
        threading.Thread(
            target=lambda: pytest.raises(
                CallFailed,
                call,
                "GET",
                "http://hung.example.com/",
                timeout_s=0.5,
                public_only=False,
            )
        )
        for _ in range(10)
    ]
    for thread in hung:
        thread.start()
    time.sleep(0.1)  # every one of them waits on its lookup
    with FakeUpstream() as up:
        up.script("/x", lambda _: Answer(200, {"ok": True}))
        reply = call("POST", up.url("/x"), json_body={}, timeout_s=1, public_only=False)
    assert reply.status == 200
    for thread in hung:
        thread.join(5)
    assert resolver.lookups["hung.example.com"] == 1
