"""The WebSocket contract (API.md, "WebSocket") with real clients against the local cloud,
which serves /ws with the `ws` web function's own app: updates of one's own tasks only,
the handshake refused with 401, replay of what was not acknowledged, ping, two connections
of one user, the close before the time limit and of a client gone silent."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import requests
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from app import cache, profiles
from app.events.websocket import (
    CLEANUP_S,
    CLIENT_MESSAGE_MAX_BYTES,
    PONG_BURST,
    PONGS_PER_S,
    REAUTH_S,
)
from app.identity import sessions
from app.identity import users as user_rows
from app.identity.tokens import decode
from app.realtime import presence, streams
from app.realtime.streams import StreamId
from tests.fakes.upstream import Answer, FakeUpstream
from tests.realtime.conftest import Client, User, open_client, ws_url
from tests.support.audit import an_actor
from tests.support.local_cloud import wait_for
from tests.support.logs import capture_logs
from tests.support.net import closed_port
from tests.support.pipelines import token_for
from tests.support.settings import app_engine_under, settings_env
from tests.support.websocket_raw import handshake_then_gone

pytestmark = pytest.mark.usefixtures("fresh_redis")


def _refused(cloud: Any, token: str) -> int:
    with pytest.raises(InvalidStatus) as refused:
        connect(ws_url(cloud, token), open_timeout=10)
    return refused.value.response.status_code


def test_a_user_sees_running_then_succeeded_of_its_own_task_and_nothing_of_anothers(
    cloud: Any,
) -> None:
    alice, bob = User.new(), User.new()
    watching, other = open_client(cloud, alice.token), open_client(cloud, bob.token)

    task_id = alice.create(cloud)
    seen = watching.until_ended(task_id)

    assert [m["data"]["status"] for m in seen] == ["running", "succeeded"]
    final = alice.task(cloud, task_id)
    assert seen[-1]["data"] == {k: final[k] for k in streams.FIELDS}
    assert StreamId.parse(seen[0]["id"]) < StreamId.parse(seen[1]["id"])  # type: ignore[operator]
    assert other.silent_for(0.5)
    assert other.ping() == {"type": "pong"}
    assert other.received == [{"type": "pong"}]
    watching.close()
    other.close()


def test_a_bad_expired_or_ended_token_or_a_disabled_user_is_refused_at_the_handshake(
    cloud: Any,
) -> None:
    user = User.new()
    assert _refused(cloud, "") == 401
    assert _refused(cloud, "not-a-token") == 401
    assert _refused(cloud, user.token[:-2] + "xx") == 401
    with settings_env(ACCESS_TOKEN_TTL_S="1"):
        short = sessions.start(user.id, role="user", phone=None).access_token
    time.sleep(2.1)
    assert _refused(cloud, short) == 401

    ended = User.new()
    sessions.end(ended.id, str(decode(ended.token, "access")["sid"]))
    assert _refused(cloud, ended.token) == 401

    disabled = User.new()
    user_rows.admin_change(disabled.id, actor=an_actor(), disabled=True)
    assert _refused(cloud, disabled.token) == 401

    open_client(cloud, user.token).close()  # the same user's live token is let in


def test_an_open_connection_ends_when_its_session_does_or_its_user_is_disabled(
    cloud: Any,
) -> None:
    """Revocation takes effect on a connection already open, within REAUTH_S."""
    ended, disabled, kept = User.new(), User.new(), User.new()
    clients = {
        name: open_client(cloud, u.token)
        for name, u in (("ended", ended), ("disabled", disabled), ("kept", kept))
    }
    sessions.end_all(ended.id)
    user_rows.admin_change(disabled.id, actor=an_actor(), disabled=True)
    assert clients["ended"].close_code(timeout=REAUTH_S + 5) == 1008
    assert clients["disabled"].close_code(timeout=REAUTH_S + 5) == 1008
    assert clients["kept"].ping() == {"type": "pong"}  # a live session stays connected
    clients["kept"].close()


def test_what_was_not_acknowledged_comes_again_in_order_with_the_same_ids(cloud: Any) -> None:
    user = User.new()
    first = open_client(cloud, user.token)
    task_id = user.create(cloud)
    sent = first.until_ended(task_id)
    first.close()

    again = open_client(cloud, user.token)
    replayed = again.updates(2)
    assert replayed == sent
    again.ack(replayed[0]["id"])
    assert again.ping() == {"type": "pong"}  # the ack is read before the ping
    again.close()

    after_ack = open_client(cloud, user.token)
    assert after_ack.updates(1) == sent[1:]
    after_ack.ack(sent[1]["id"])
    assert after_ack.ping() == {"type": "pong"}
    after_ack.close()

    nothing_left = open_client(cloud, user.token)
    assert nothing_left.ping() == {"type": "pong"}
    assert nothing_left.received == [{"type": "pong"}]
    nothing_left.close()


def test_an_acknowledgement_never_moves_back_or_past_what_was_sent(cloud: Any) -> None:
    user = User.new()
    client = open_client(cloud, user.token)
    sent = client.until_ended(user.create(cloud))
    client.ack(sent[1]["id"])
    client.ack(sent[0]["id"])  # another connection's older ack: the position stays
    newest = StreamId.parse(sent[1]["id"])
    assert newest is not None
    client.ack(f"{newest.ms + 60_000}-0")  # never sent: ignored
    client.ack("not-an-id")
    assert client.ping() == {"type": "pong"}
    client.close()

    later = open_client(cloud, user.token)
    task_id = user.create(cloud)
    assert [m["data"]["id"] for m in later.updates(2)] == [task_id, task_id]
    later.close()


def test_a_websocket_to_an_event_functions_path_is_refused(cloud: Any) -> None:
    user = User.new()
    with pytest.raises(InvalidStatus) as refused:
        connect(f"ws://{cloud.host}:{cloud.port}/tasks?token={user.token}", open_timeout=10)
    assert refused.value.response.status_code == 403


def test_a_plain_request_to_ws_is_the_web_functions_own_422(cloud: Any) -> None:
    """The domain hands a web function's path to its app whether or not the request is a
    handshake, as SCF does: a plain GET is the app's 422, not the platform's 502."""
    reply = requests.get(f"{cloud.url}/ws?token=x", timeout=10)
    assert reply.status_code == 422, reply.text
    assert reply.headers["Upgrade"] == "websocket"
    assert reply.json()["request_id"] == reply.headers["X-Request-Id"]


def test_ping_is_answered(cloud: Any) -> None:
    client = open_client(cloud, User.new().token)
    assert client.ping() == {"type": "pong"}
    client.send({"type": "something else"})  # ignored
    client.socket.send("not json")
    # Nested past the parser's depth, as large as a message may be: ignored as well.
    client.socket.send("[" * CLIENT_MESSAGE_MAX_BYTES)
    assert client.ping() == {"type": "pong"}
    client.close()


def test_pings_past_the_burst_are_not_answered_until_the_allowance_refills(cloud: Any) -> None:
    # A client that sends pings and never reads would otherwise grow the send buffer at will.
    client = open_client(cloud, User.new().token)
    for _ in range(5 * PONG_BURST):
        client.send({"type": "ping"})
    pongs = 0
    # A second of silence ends the count: a busy server may pause mid-burst for less.
    while not client.silent_for(1.0):
        pongs += 1
    assert PONG_BURST <= pongs < 2 * PONG_BURST
    time.sleep(1.5 / PONGS_PER_S)
    assert client.ping() == {"type": "pong"}
    client.close()


def test_a_client_message_over_the_limit_closes_the_connection_with_1009(cloud: Any) -> None:
    client = open_client(cloud, User.new().token)
    client.socket.send("[]," * (CLIENT_MESSAGE_MAX_BYTES // 3) + "[]]")
    assert client.close_code() == 1009


def test_a_database_that_cannot_answer_is_503_at_the_handshake_and_keeps_open_connections(
    cloud: Any, fresh_redis: Any
) -> None:
    """The database layer says it is down with an AppError: that is not the token's fault,
    so the handshake is 503 (not 401), and an open connection is not closed with 1008."""
    kept, late = User.new(), User.new()
    client = open_client(cloud, kept.token)
    for user in (kept, late):  # their profiles must come from the database
        fresh_redis.delete(cache.redis_key(profiles.key(user.id)))
    with app_engine_under(DATABASE_URL=f"mysql+pymysql://root@127.0.0.1:{closed_port()}/x"):
        with pytest.raises(InvalidStatus) as refused:
            connect(ws_url(cloud, late.token), open_timeout=10)
        assert refused.value.response.status_code == 503
        assert json.loads(refused.value.response.body)["code"] == "SERVICE_UNAVAILABLE"
        time.sleep(REAUTH_S + 1)  # a reauthorization went by while the database was away
        assert client.ping() == {"type": "pong"}
    client.close()


def test_two_connections_of_one_user_both_receive(cloud: Any) -> None:
    user = User.new()
    phone, laptop = open_client(cloud, user.token), open_client(cloud, user.token)
    task_id = user.create(cloud)
    on_phone, on_laptop = phone.until_ended(task_id), laptop.until_ended(task_id)
    assert on_phone == on_laptop
    assert [m["data"]["status"] for m in on_phone] == ["running", "succeeded"]
    phone.close()
    laptop.close()


def test_a_user_holds_at_most_max_per_user_connections_at_once(cloud: Any) -> None:
    user, other = User.new(), User.new()
    held = [open_client(cloud, user.token) for _ in range(presence.MAX_PER_USER)]
    with pytest.raises(InvalidStatus) as refused:
        connect(ws_url(cloud, user.token), open_timeout=10)
    assert refused.value.response.status_code == 429
    assert json.loads(refused.value.response.body)["code"] == "RATE_LIMITED"
    held.append(open_client(cloud, other.token))  # another user's are counted apart
    assert all(client.ping() == {"type": "pong"} for client in held)
    held.pop(0).close()
    deadline = time.monotonic() + 10
    while True:  # the server counts the closed one out once it has seen the close
        try:
            again = open_client(cloud, user.token)
            break
        except InvalidStatus:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    assert again.ping() == {"type": "pong"}
    for client in [*held, again]:
        client.close()


def test_a_user_opens_at_most_connects_per_window_connections_in_the_window(
    cloud: Any, fresh_redis: Any
) -> None:
    """Each connection first reads all its device has not acknowledged: a client that
    reconnects in a loop is refused once the window's connections are spent."""
    user, other = User.new(), User.new()
    for _ in range(presence.CONNECTS_PER_WINDOW):
        open_client(cloud, user.token).close()
        assert wait_for(lambda: fresh_redis.zcard(presence.online_key(user.id)) == 0)
    with pytest.raises(InvalidStatus) as refused:
        connect(ws_url(cloud, user.token), open_timeout=10)
    reply = refused.value.response
    assert reply.status_code == 429 and json.loads(reply.body)["code"] == "RATE_LIMITED"
    assert 0 < int(reply.headers["Retry-After"]) <= presence.CONNECT_WINDOW_S
    counted_apart = open_client(cloud, other.token)
    assert counted_apart.ping() == {"type": "pong"}
    counted_apart.close()
    fresh_redis.delete(presence.connects_key(user.id))  # as the window's end does
    again = open_client(cloud, user.token)
    assert again.ping() == {"type": "pong"}
    again.close()


def test_the_server_closes_before_the_time_limit_with_a_code_to_reconnect_on(
    cloud: Any,
) -> None:
    user = User.new()
    with settings_env(WS_MAX_CONNECTION_S="0.5"):
        client = open_client(cloud, user.token)
    assert client.close_code() == 1012
    assert open_client(cloud, user.token).ping() == {"type": "pong"}


# WS_CLIENT_SILENCE_S for these tests: the contract's 150 s, shortened, with room for a
# busy machine to delay a client's next message by a second or so.
SILENCE_S = 2.0


def test_a_client_that_sends_nothing_is_closed_with_1001_and_counted_out(
    cloud: Any, fresh_redis: Any
) -> None:
    """A client whose network vanished without a close sends nothing, while updates sent
    into its socket keep the platform's idle timer from firing: the server closes it once
    nothing has come for WS_CLIENT_SILENCE_S, its presence with it, so a task that ends
    after sends the WeChat message."""
    user = User.new()
    streams.append(user.id, {"id": "task-0", "status": "running"}, 1)  # traffic one way
    with capture_logs() as logs:
        opened = time.monotonic()  # before the server's timer starts, at the handshake
        with settings_env(WS_CLIENT_SILENCE_S=str(SILENCE_S)):
            client = open_client(cloud, user.token)
        assert client.next()["type"] == "task.updated"
        # Counted while open (at its handshake), so the 0 below is its leaving.
        assert fresh_redis.zcard(presence.online_key(user.id)) == 1
        assert client.close_code(timeout=SILENCE_S + 10) == 1001
        assert time.monotonic() - opened >= SILENCE_S
        assert wait_for(lambda: fresh_redis.zcard(presence.online_key(user.id)) == 0)
        closed = {"message": "connection closed", "user_id": user.id}
        assert wait_for(lambda: logs.where(**closed))
    [line] = logs.where(**closed)
    assert line["code"] == 1001 and line["reason"] == "client silent: reconnect", line
    # `held_s` counts from after the presence check, which comes after the timer starts and
    # may take a second on a busy machine.
    assert line["held_s"] >= SILENCE_S - 1 and line["client_code"] is None, line
    assert logs.where(level="error") == []


@pytest.mark.parametrize("sending", ["ping", "ack", "ignored"])
def test_a_client_that_sends_anything_keeps_its_connection_past_the_silence_limit(
    cloud: Any, fresh_redis: Any, sending: str
) -> None:
    """Any message tells the server the client is there: a ping, an ack, even one ignored."""
    user = User.new()
    streams.append(user.id, {"id": "task-0", "status": "running"}, 1)
    with settings_env(WS_CLIENT_SILENCE_S=str(SILENCE_S)):
        client = open_client(cloud, user.token)
    [update] = client.updates(1)
    messages = {
        "ping": {"type": "ping"},
        "ack": {"type": "ack", "id": update["id"]},
        "ignored": {"type": "hello"},
    }
    held_until = time.monotonic() + 2 * SILENCE_S
    while time.monotonic() < held_until:
        client.send(messages[sending])
        time.sleep(SILENCE_S / 4)
    # Past two limits, sending nothing else all along: still open, and present.
    assert client.ping() == {"type": "pong"}
    assert fresh_redis.zcard(presence.online_key(user.id)) == 1
    client.close()


def test_a_message_is_the_stream_entry_and_its_id(cloud: Any, fresh_redis: Any) -> None:
    user = User.new()
    client = open_client(cloud, user.token)
    sent = client.until_ended(user.create(cloud))
    entries = fresh_redis.xrange(streams.stream_key(user.id))
    assert [entry_id for entry_id, _ in entries] == [m["id"] for m in sent]
    assert 0 < fresh_redis.pttl(streams.stream_key(user.id)) <= streams.KEEP_MS
    client.close()


def test_a_stored_output_is_presigned_when_sent_not_when_appended(
    cloud: Any, fresh_redis: Any
) -> None:
    """The stream keeps a message a day and a presigned URL lives an hour: the entry keeps
    the task's reference, and each send presigns it afresh."""
    big = {"image": "B" * 20_000}
    with FakeUpstream() as upstream:
        upstream.script("/draw", lambda _c: Answer(200, big))
        user = User.new()
        client = open_client(cloud, user.token)
        task_id = user.create(cloud, [{"id": "d", "type": "http", "url": upstream.url("/draw")}])
        sent = client.until_ended(task_id)
    shown = sent[-1]["data"]["output"]
    assert shown["stored"] is True and requests.get(shown["url"], timeout=10).json() == big
    [_, last] = fresh_redis.xrange(streams.stream_key(user.id))
    kept = json.loads(last[1]["data"])["output"]
    size = len(json.dumps(big, separators=(",", ":")))
    assert kept == {"stored": True, "key": f"tasks/{task_id}/d.-.json", "size_bytes": size}
    client.close()
    again = open_client(cloud, user.token)  # nothing acknowledged: both come again
    replayed = again.until_ended(task_id)
    assert replayed[-1]["data"]["output"]["stored"] is True
    assert requests.get(replayed[-1]["data"]["output"]["url"], timeout=10).json() == big
    again.close()


@pytest.mark.parametrize("ending", ["close", "too big"])
def test_a_connection_that_ends_while_messages_are_sent_is_no_failure(
    cloud: Any, fresh_redis: Any, ending: str
) -> None:
    """A client may close at any moment, or send a message over the limit (the server
    closes with 1009), a replay in full flow included: the connection ends as the client's
    doing, with no ERROR line and no 1011 sent after."""
    user = User.new()
    for number in range(streams.STREAM_MAX):
        streams.append(user.id, {"id": f"task-{number}", "status": "running"}, 1)
    with capture_logs() as logs:
        for _ in range(10):
            client = Client(connect(ws_url(cloud, user.token), open_timeout=10, close_timeout=0.2))
            assert client.next()["type"] == "task.updated"
            if ending == "too big":
                client.socket.send("x" * (CLIENT_MESSAGE_MAX_BYTES + 1))
            client.close()
        closed = {"message": "connection closed", "user_id": user.id}
        assert wait_for(lambda: len(logs.where(**closed)) == 10)
    assert logs.where(level="error") == []
    assert {line["code"] for line in logs.where(**closed)} == {None}


def test_what_one_device_acknowledged_still_comes_to_another_at_its_next_connect(
    cloud: Any,
) -> None:
    """Each signed-in device (session) has its own position: a phone away while the laptop
    received and acknowledged a task's updates is sent them at its next connect, where the
    laptop's acknowledgement moved the one position of the user past them."""
    user = User.new()
    phone_token = token_for(user.id)  # the phone's own sign-in
    phone = open_client(cloud, phone_token)
    assert phone.ping() == {"type": "pong"}
    phone.close()  # in the background: its socket closed

    laptop = open_client(cloud, user.token)
    sent = laptop.until_ended(user.create(cloud))
    laptop.ack(sent[-1]["id"])
    assert laptop.ping() == {"type": "pong"}
    laptop.close()

    back = open_client(cloud, phone_token)
    assert back.updates(2) == sent
    back.ack(sent[-1]["id"])
    assert back.ping() == {"type": "pong"}
    back.close()
    for token in (phone_token, user.token):  # each acknowledged both: nothing comes again
        again = open_client(cloud, token)
        assert again.ping() == {"type": "pong"}
        assert again.received == [{"type": "pong"}]
        again.close()


def test_a_connection_closed_as_soon_as_opened_lets_go_at_once_and_logs_no_error(
    cloud: Any, fresh_redis: Any
) -> None:
    """A client may close at once (a page left as it opened): the connection counts out of
    the user's connections right away, so a user at the limit reconnects, and nothing it
    started is left behind to fail later with a traceback (a cancel that lands as a Redis
    command completes is lost before Python 3.12: its work went on into a blocking read, the
    connection counted for CLEANUP_S)."""
    user = User.new()
    key = presence.online_key(user.id)
    with capture_logs() as logs:
        for _ in range(30):
            open_client(cloud, user.token).close()
            assert wait_for(lambda: fresh_redis.zcard(key) == 0, timeout=0.5), "still counted"
        time.sleep(CLEANUP_S + 1)  # past the wait for jobs that would not stop
    assert logs.where(level="error") == []
    # This user's: an earlier test's connection may log its close while these run.
    assert len(logs.where(message="connection closed", user_id=user.id)) == 30


def test_a_client_gone_during_its_handshake_is_let_go_at_once_and_logs_no_error(
    cloud: Any, fresh_redis: Any
) -> None:
    """A client may go while its handshake is judged (a phone losing its network as it
    connects): uvicorn then refuses the app's answer. The user is not counted connected
    for what it left (MAX_PER_USER such handshakes would refuse its next connection with
    429 until their entries lapsed, and hold back its WeChat messages meanwhile), and
    neither that nor a refused token's answer is an ERROR with a traceback in the log."""
    user = User.new()
    with capture_logs() as logs:
        for _ in range(presence.MAX_PER_USER):
            handshake_then_gone(cloud.host, cloud.port, f"/ws?token={user.token}")
        handshake_then_gone(cloud.host, cloud.port, "/ws?token=not-a-token")

        def answered() -> bool:
            ended = logs.where(message="connection closed", user_id=user.id)
            refused = logs.where(message="handshake refused", error="AUTH_TOKEN_INVALID")
            return len(ended) == presence.MAX_PER_USER and len(refused) == 1

        assert wait_for(answered, timeout=5), logs.lines
        time.sleep(0.2)  # what uvicorn writes once the app has returned
    assert fresh_redis.zcard(presence.online_key(user.id)) == 0
    assert logs.where(level="error") == []
    open_client(cloud, user.token).close()  # not refused as holding MAX_PER_USER already


def test_each_connections_lines_carry_its_own_ids_its_jobs_and_threads_included(
    cloud: Any, fresh_redis: Any
) -> None:
    """Two connections open at once in one process, each reauthorized while the database
    cannot answer: the lines written in each connection's job and in the thread its
    authorization runs in name that connection, its user and session, the function and the
    connection's request id, never the other's; a refused handshake's lines, its request id."""
    first, second, late = User.new(), User.new(), User.new()
    clients = [open_client(cloud, user.token) for user in (first, second)]
    for user in (first, second, late):  # their profiles must come from the database
        fresh_redis.delete(cache.redis_key(profiles.key(user.id)))
    with capture_logs() as logs:
        with app_engine_under(DATABASE_URL=f"mysql+pymysql://root@127.0.0.1:{closed_port()}/x"):
            with pytest.raises(InvalidStatus) as refused:
                connect(ws_url(cloud, late.token), open_timeout=10)
            time.sleep(REAUTH_S + 1)  # each connection was reauthorized meanwhile
            assert all(client.ping() == {"type": "pong"} for client in clients)
        for client in clients:
            client.close()
        ends = [{"message": "connection closed", "user_id": user.id} for user in (first, second)]
        assert wait_for(lambda: all(logs.where(**line) for line in ends))

    handshake = refused.value.response.headers["X-Request-Id"]
    at_handshake = logs.where(request_id=handshake)
    assert {line["message"] for line in at_handshake} >= {
        "db connection failed",
        "handshake refused",
    }
    assert all(line["function"] == "ws" and "user_id" not in line for line in at_handshake)
    assert len({line["connection"] for line in at_handshake}) == 1

    request_ids = set()
    for user in (first, second):
        closed = logs.where(message="connection closed", user_id=user.id)
        assert len(closed) == 1, closed
        ids = {
            "function": "ws",
            "user_id": user.id,
            "session_id": decode(user.token, "access")["sid"],
            "connection": closed[0]["connection"],
            "request_id": closed[0]["request_id"],
        }
        request_ids.add(ids["request_id"])
        ours = logs.where(connection=ids["connection"])
        assert {line["message"] for line in ours} == {
            "db connection failed",  # in the thread of the reauthorization
            "connection not reauthorized",  # in the connection's job
            "connection closed",
        }
        assert all(line[k] == v for line in ours for k, v in ids.items()), ours
        assert logs.where(user_id=user.id) == ours
    assert len(request_ids) == 2 and handshake not in request_ids


def test_an_ack_lost_with_its_connection_is_recorded_when_sent_first_on_the_next(
    cloud: Any,
) -> None:
    """A phone whose connection dropped under its ack sends the ack again as soon as it is
    back, before (or while) the replay sends that message again: the ack is recorded all the
    same, so the message does not come at every connect after."""
    user = User.new()
    first = open_client(cloud, user.token)
    sent = first.until_ended(user.create(cloud))
    first.close()  # the ack of sent[-1] was lost with it

    again = open_client(cloud, user.token)
    again.ack(sent[-1]["id"])
    assert again.ping() == {"type": "pong"}  # the ack is read before the ping
    again.close()

    nothing_left = open_client(cloud, user.token)
    assert nothing_left.ping() == {"type": "pong"}
    assert nothing_left.received == [{"type": "pong"}]
    nothing_left.close()


@pytest.mark.slow  # lives past one refresh: about 18 s
def test_an_open_connection_renews_its_presence_every_refresh(cloud: Any, fresh_redis: Any) -> None:
    """A connection that lives past TTL_S stays counted: its entry is pushed forward every
    REFRESH_S, so a task that ends while it is open sends no WeChat message."""
    user = User.new()
    client = open_client(cloud, user.token)
    key = presence.online_key(user.id)
    [(connection, first)] = fresh_redis.zrange(key, 0, -1, withscores=True)
    deadline = time.monotonic() + presence.REFRESH_S + 3
    while time.monotonic() < deadline:
        assert client.ping() == {"type": "pong"}
        time.sleep(1)
    [(same, renewed)] = fresh_redis.zrange(key, 0, -1, withscores=True)
    assert same == connection and renewed >= first + (presence.REFRESH_S - 1) * 1000
    assert 0 < fresh_redis.pttl(key) <= presence.TTL_S * 1000
    client.close()
