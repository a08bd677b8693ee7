"""`deadline.within` bounds a call made through a library's own transport too (the payment
SDKs': requests for wechatpayv3, urllib for python-alipay-sdk): the sockets the call opens
in its thread are shut down at the deadline, over plain HTTP and TLS alike, so an answer
dripped a byte at a time ends there and the server sees the connection closed."""

from __future__ import annotations

import socket
import ssl
import time
import urllib.request
from pathlib import Path

import pytest
import requests

from app.outbound import deadline
from tests.fakes.drip import Dripping
from tests.support.tls import authority


def fetch(transport: str, url: str, ca_file: Path) -> bytes:
    if transport == "urllib":
        context = ssl.create_default_context(cafile=str(ca_file))
        with urllib.request.urlopen(url, timeout=5, context=context) as answer:
            body: bytes = answer.read()
            return body
    return requests.get(url, timeout=5, verify=str(ca_file)).content


@pytest.mark.parametrize("scheme", ["http", "https"])
@pytest.mark.parametrize("transport", ["urllib", "requests"])
def test_a_librarys_own_transport_is_cut_at_the_deadline(
    tmp_path: Path, transport: str, scheme: str
) -> None:
    made = authority(tmp_path, "localhost")
    drip = Dripping()
    if scheme == "https":
        drip.tls = made.server_context()
    with drip:
        assert len(drip.body) * drip.interval_s > 10  # far past the deadline
        url = f"{scheme}://localhost:{drip.port}/"
        with deadline.within(0.5) as watch, pytest.raises(Exception):
            # Each library raises its own kind for a connection shut mid-answer.
            fetch(transport, url, made.ca_file)
        assert watch.expired
        assert drip.hung_up.wait(5), "the server did not see the connection closed"
        assert drip.sent < len(drip.body)


def test_only_the_sockets_made_inside_the_block_are_shut() -> None:
    """A socket the thread made before `within` is not the call's: it stays open after the
    deadline, while one made inside is shut down."""
    before, before_peer = socket.socketpair()
    try:
        with deadline.within(0.05) as watch:
            inside, inside_peer = socket.socketpair()
            waited = 0
            while not watch.expired and waited < 500:
                time.sleep(0.01)
                waited += 1
        assert watch.expired
        inside.settimeout(5)  # not shut down: a timeout, not a test that never ends
        assert inside.recv(1) == b""  # shut down: end of stream
        before_peer.sendall(b"y")
        assert before.recv(1) == b"y"
    finally:
        for sock in (before, before_peer, inside, inside_peer):
            sock.close()
