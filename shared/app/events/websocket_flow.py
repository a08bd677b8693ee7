"""The WebSocket protocol the `ws` function is served with (`scf_bootstrap`'s `--ws`, and the
local cloud's): uvicorn's websockets-sansio implementation, reading paused while the
server's own writes are backed up.

The sans-I/O protocol answers each of the client's ping frames itself, below the app, with a
pong as large (up to 125 bytes), written to the transport whatever its buffer holds; uvicorn
pauses reading only while the app has a message of the client's it has not taken. A client
that sends ping frames and never reads would so grow the server's send buffer without end
(18 to 118 MB in 10 s, by machine): the app's own answers are bounded (its pongs are rate
limited, its updates by the stream's size), these are not. Here, when what the client sent
has been handled and the transport holds more than its high-water mark, reading pauses (the
client's sends then stall in TCP), and it resumes when the transport says the buffer has
drained below its low-water mark (asyncio's `resume_writing`), unless uvicorn paused it for
the app. A read goes past the mark by at most one read's worth of pongs (a read is at most
256 KiB), so the buffer stays under a few hundred KiB. The app's own sends are not held
back: they never wait on the client.
"""

from __future__ import annotations

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol


class FlowControlledWebSocket(WebSocketsSansIOProtocol):
    """uvicorn's websockets-sansio protocol that stops reading while its writes back up."""

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        _low, high = self.transport.get_write_buffer_limits()
        if self.transport.get_write_buffer_size() > high:
            # Over the mark the transport has called `pause_writing`, so `resume_writing`
            # follows once the buffer drains (or the connection is lost).
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        super().resume_writing()
        # uvicorn's own pause (a message the app has not taken yet) stands: it resumes
        # reading itself when the app takes it.
        if not self.read_paused:
            self.transport.resume_reading()
