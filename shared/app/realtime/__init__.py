"""Realtime task updates: what a user's client hears of its tasks while it is connected,
and what it is told when it is not.

- `streams`: each user's Redis Stream of `task.updated` messages (the outbox), appended to
  after a transition commits; the stream id is the message id.
- `acks`: how far each user has acknowledged, and a connection's acks within their
  allowance (`allowance`, the token bucket the connection's pongs use too).
- `presence`: which users hold an open connection to the `ws` web function.
- `subscription`: the WeChat subscription message sent when a task ends while its user is
  away.
- `announce`: the entry `app.tasks.hooks` calls with every committed transition.

The connection itself (the WebSocket protocol) is `app.events.websocket`'s. Nothing here
ever fails a transition: it all runs after the commit, and a failure is logged.
"""
