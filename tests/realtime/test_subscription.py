"""WeChat subscription messages when a task ends and its user is away, through the WeChat
fake (`cgi-bin/token` and `subscribe/send`, checking the app's credentials and the token):
one message for a user with no connection, none for a user with one; 43101 is no error; a
rejected token is replaced once; the token is fetched once and reused."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
from sqlalchemy import insert, update

from app.clock import utcnow
from app.db.tables import tasks, users
from app.db.transaction import transaction
from app.ids import new_id
from app.realtime import announce, subscription
from app.realtime.subscription import Outcome
from app.tasks import lifecycle
from tests.fakes.wechat import FakeWechat
from tests.realtime.conftest import User, open_client
from tests.support.local_cloud import wait_for
from tests.support.logs import capture_logs
from tests.support.settings import redis_down, settings_env

TEMPLATE = "tmpl-task-ended"


@pytest.fixture
def wechat(fresh_redis: Any) -> Iterator[FakeWechat]:
    with FakeWechat() as fake, settings_env(**fake.env(), WECHAT_SUBSCRIBE_TEMPLATE_ID=TEMPLATE):
        yield fake


def wechat_user(openid: str) -> User:
    user = User.new()
    with transaction() as tx:
        tx.execute(update(users).where(users.c.id == user.id).values(wechat_openid=openid))
    return user


def queued_task(user: User) -> str:
    """A queued task of `user`'s with no step, as the sweeper finds one to expire."""
    task_id = new_id()
    now = utcnow()
    with transaction() as tx:
        tx.execute(
            insert(tasks).values(
                id=task_id,
                user_id=user.id,
                pipeline_id="p-subscription",
                status="queued",
                cost=0,
                input={},
                steps=[],
                created_at=now,
                updated_at=now,
            )
        )
    return task_id


def ended(user: User, status: str = "succeeded") -> dict[str, Any]:
    return {
        "id": "task-1",
        "user_id": user.id,
        "status": status,
        "updated_at": "2026-12-05T02:03:04Z",
        "finished_at": "2026-12-05T02:03:04Z",
    }


def test_a_finished_task_of_a_user_with_no_connection_sends_one_message(
    cloud: Any, wechat: FakeWechat
) -> None:
    user = wechat_user("openid-away")
    task_id = user.create(cloud)
    assert user.wait(cloud, task_id)["status"] == "succeeded"

    assert wait_for(lambda: wechat.sent)  # the message follows the commit
    assert len(wechat.sent) == 1
    message = wechat.sent[0]
    assert message["touser"] == "openid-away" and message["template_id"] == TEMPLATE
    assert message["data"]["character_string1"] == {"value": task_id}
    assert message["data"]["phrase2"] == {"value": "成功"}
    assert message["page"] == f"pages/tasks/detail?id={task_id}"
    assert len(wechat.tokens) == 1


def test_a_user_with_a_connection_gets_no_message(cloud: Any, wechat: FakeWechat) -> None:
    user = wechat_user("openid-here")
    client = open_client(cloud, user.token)
    task_id = user.create(cloud)
    statuses = [m["data"]["status"] for m in client.until_ended(task_id)]
    assert statuses == ["running", "succeeded"]
    assert cloud.queue_idle(10)["idle"]  # the worker's invocation, its hook included, is over
    client.close()
    assert wechat.sends == []


def test_a_user_without_wechat_or_a_deployment_without_a_template_gets_none(
    wechat: FakeWechat,
) -> None:
    assert subscription.notify_if_away(ended(User.new())) is Outcome.SKIPPED
    with settings_env(WECHAT_SUBSCRIBE_TEMPLATE_ID=None):
        assert subscription.notify_if_away(ended(wechat_user("o-1"))) is Outcome.SKIPPED
    assert subscription.notify_if_away({**ended(wechat_user("o-2")), "status": "running"}) is (
        Outcome.SKIPPED
    )
    assert wechat.sends == []


def test_a_refused_subscription_is_not_an_error(wechat: FakeWechat) -> None:
    wechat.refuse("openid-unsubscribed")
    user = wechat_user("openid-unsubscribed")
    assert subscription.notify_if_away(ended(user, "failed")) is Outcome.REFUSED
    assert [s["errcode"] for s in wechat.sends] == [43101]


def test_the_token_is_cached_and_a_rejected_one_is_replaced_once(wechat: FakeWechat) -> None:
    user = wechat_user("openid-t")
    with capture_logs() as logs:
        assert subscription.notify_if_away(ended(user)) is Outcome.SENT
        assert subscription.notify_if_away(ended(user)) is Outcome.SENT
        assert len(wechat.tokens) == 1  # the second send reused the cached token

        wechat.expire_tokens()
        assert subscription.notify_if_away(ended(user, "failed")) is Outcome.SENT
    assert len(logs.where(message="subscription message", outcome="sent")) == 3
    for secret in (*wechat.tokens, wechat.secret):
        assert secret not in logs.text
    assert [s["errcode"] for s in wechat.sends] == [0, 0, 42001, 0]
    assert len(wechat.tokens) == 2
    assert wechat.sent[-1]["data"]["phrase2"] == {"value": "失败"}
    assert wechat.sent[-1]["data"]["time3"] == {"value": "2026-12-05 10:03"}


def test_wrong_credentials_send_nothing_and_fail_no_transition(wechat: FakeWechat) -> None:
    user = wechat_user("openid-w")
    with settings_env(WECHAT_SECRET="not-the-secret"):
        assert subscription.notify_if_away(ended(user)) is Outcome.FAILED
    assert wechat.sends == [] and wechat.tokens == []


@pytest.mark.parametrize("path", ["/cgi-bin/token", "/cgi-bin/message/subscribe/send"])
def test_an_answer_past_its_bound_is_a_failure_read_no_further(
    wechat: FakeWechat, fresh_redis: Any, path: str
) -> None:
    """An answer that goes on (valid JSON, then 32 MiB of spaces) is cut at its bound and is
    WeChat's failure, as an unreadable one is: no token kept, the send not retried."""
    user = wechat_user("openid-big-" + path.rsplit("/", 1)[-1])
    wechat.pad(path, 32 * 1024 * 1024)
    assert subscription.notify_if_away(ended(user)) is Outcome.FAILED
    assert fresh_redis.get(subscription.TOKEN_KEY) is None or path.endswith("/send")
    assert len(wechat.sends) == (1 if path.endswith("/send") else 0)
    assert wait_for(lambda: path in wechat.cut_off)


@pytest.mark.parametrize(
    ("answer", "errcode"),
    [
        (b"<html><body>502 Bad Gateway</body></html>", None),  # not JSON
        (b"[]", None),  # JSON, not an object
        (b'{"errcode": 40003, "errmsg": "invalid openid"}', 40003),
    ],
)
def test_a_send_answered_with_a_refusal_or_no_verdict_fails_once_and_is_logged(
    wechat: FakeWechat, answer: bytes, errcode: int | None
) -> None:
    user = wechat_user(f"openid-odd-{errcode}-{len(answer)}")
    wechat.answer_next("/cgi-bin/message/subscribe/send", answer)
    with capture_logs() as logs:
        assert subscription.notify_if_away(ended(user)) is Outcome.FAILED
    (line,) = logs.where(message="subscribe/send refused")
    assert line["level"] == "warning" and line["errcode"] == errcode and line["status"] == 200
    (summary,) = logs.where(message="subscription message")
    assert summary["outcome"] == "failed" and summary["level"] == "warning"
    assert len(wechat.sends) == 1  # not sent again
    for secret in (*wechat.tokens, wechat.secret):
        assert secret not in logs.text


def test_a_token_rejected_again_when_fresh_fails_the_send(wechat: FakeWechat) -> None:
    user = wechat_user("openid-rejected")
    for _ in range(2):
        wechat.answer_next("/cgi-bin/message/subscribe/send", b'{"errcode": 40001}')
    with capture_logs() as logs:
        assert subscription.notify_if_away(ended(user)) is Outcome.FAILED
    assert len(wechat.tokens) == 2 and len(wechat.sends) == 2  # one fresh token, once
    (line,) = logs.where(message="subscribe/send refused")
    assert line["errcode"] == 40001


def test_a_token_answer_that_is_not_json_fails_the_send_and_keeps_nothing(
    wechat: FakeWechat, fresh_redis: Any
) -> None:
    user = wechat_user("openid-no-token")
    wechat.answer_next("/cgi-bin/token", b"<html>busy</html>")
    with capture_logs() as logs:
        assert subscription.notify_if_away(ended(user)) is Outcome.FAILED
    assert fresh_redis.get(subscription.TOKEN_KEY) is None and wechat.sends == []
    (line,) = logs.where(message="subscribe/send failed")
    assert line["error"] == "cgi-bin/token refused: errcode None, status 200"
    assert subscription.notify_if_away(ended(user)) is Outcome.SENT  # the next one fetches


def test_an_ending_while_redis_is_down_sends_nothing_and_logs_why(wechat: FakeWechat) -> None:
    user = wechat_user("openid-redis-down")
    with redis_down(), capture_logs() as logs:
        announce.task_updated(ended(user))  # after the commit: nothing may be raised over it
    (pushed,) = logs.where(message="task update not pushed")
    (line,) = logs.where(message="subscription message not sent")
    for found in (pushed, line):
        assert found["level"] == "warning" and found["error"] == "ConnectionError"
        assert (found["task_id"], found["user_id"], found["status"]) == (
            "task-1",
            user.id,
            "succeeded",
        )
    assert wechat.sends == [] and wechat.tokens == []


def test_a_token_cache_that_fails_loses_the_message_and_nothing_the_ending_committed(
    cloud: Any, wechat: FakeWechat, fresh_redis: Any
) -> None:
    """Redis answering the presence check but failing at the cached token (here its key
    holds a hash: GET answers WRONGTYPE): the worker's ending and the sweeper's expiry
    (`lifecycle.finish`) commit and answer as without a message, the worker's invocation
    is not failed (its message is not delivered again), and the line that says the
    message was lost names the error's class, no token or secret."""
    fresh_redis.hset(subscription.TOKEN_KEY, "not", "a token")
    user = wechat_user("openid-token-cache-down")
    before = cloud.queue_idle(10)
    with capture_logs() as logs:
        task_id = user.create(cloud)
        assert user.wait(cloud, task_id)["status"] == "succeeded"
        after = cloud.queue_idle(10)
        expired = queued_task(user)
        assert lifecycle.finish(expired, error=lifecycle.step_failed("overdue")) is True
    assert user.task(cloud, expired)["status"] == "failed"
    assert after["idle"] and after["delivered"] - before["delivered"] == 1  # once, no retry
    assert after["dead"] == before["dead"]
    assert wechat.sends == [] and wechat.tokens == []
    lines = logs.where(message="subscription message not sent")
    assert {(line["task_id"], line["status"]) for line in lines} == {
        (task_id, "succeeded"),
        (expired, "failed"),
    }
    assert {(line["level"], line["error"]) for line in lines} == {("warning", "ResponseError")}
    assert logs.where(message="queue message failed") == []
    assert wechat.secret not in logs.text


def test_a_fetched_token_the_cache_cannot_keep_still_sends_its_message(
    wechat: FakeWechat, fresh_redis: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis failing the write of a token just fetched (redis-py's SET raising): the token
    is WeChat's answer whether or not it is kept, so the send that fetched it uses it, and
    a warning names the error's class, no token or secret. The next send fetches again."""
    kept = redis.Redis.set

    def failing_set(self: redis.Redis, name: Any, *args: Any, **kwargs: Any) -> Any:
        if name == subscription.TOKEN_KEY:
            raise redis.exceptions.ConnectionError("Connection reset by peer")
        return kept(self, name, *args, **kwargs)

    monkeypatch.setattr(redis.Redis, "set", failing_set)
    user = wechat_user("openid-token-not-kept")
    with capture_logs() as logs:
        assert subscription.notify_if_away(ended(user)) is Outcome.SENT
    assert [s["errcode"] for s in wechat.sends] == [0] and len(wechat.tokens) == 1
    assert wechat.sent[0]["touser"] == "openid-token-not-kept"
    assert fresh_redis.get(subscription.TOKEN_KEY) is None
    (line,) = logs.where(message="wechat access token not cached")
    assert (line["level"], line["error"]) == ("warning", "ConnectionError")
    for secret in (*wechat.tokens, wechat.secret):
        assert secret not in logs.text
    assert subscription.notify_if_away(ended(user)) is Outcome.SENT
    assert len(wechat.tokens) == 2
