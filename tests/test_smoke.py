from tests.support.function_url import call
from tests.support.functions import handler


def test_health_is_ok_against_mariadb_and_redis() -> None:
    reply = call(handler("health"), "GET", "/health")
    assert reply.status == 200
    assert reply.json() == {"status": "ok", "checks": {"db": "ok", "redis": "ok"}}
    assert reply.header("X-Request-Id")
