"""The local cloud's /ws, served with the `ws` function's protocol as scf_bootstrap serves it:
a client that sends protocol ping frames and never reads is stopped being read once the
server's unread pongs back up, rather than growing the server's send buffer; the contract's
application-level pings stay answered as before."""

from __future__ import annotations

from typing import Any

import pytest

from tests.realtime.conftest import User, open_client
from tests.support.websocket_raw import connect_unread, flood_pings

pytestmark = pytest.mark.usefixtures("fresh_redis")


def test_ping_frames_never_read_stall_the_client_rather_than_grow_the_servers_buffer(
    cloud: Any,
) -> None:
    user = User.new()
    sock = connect_unread(cloud.host, cloud.port, f"/ws?token={user.token}")
    flood = flood_pings(sock, seconds=10)
    sock.close()
    assert flood.stalled, f"the server kept reading: {flood.sent / 2**20:.1f} MB of pings"
    # The server goes on serving its other connections, and a client that reads.
    client = open_client(cloud, user.token)
    assert client.ping() == {"type": "pong"}
    client.close()
