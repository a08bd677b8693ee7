"""`bench/cold_start.py` keeps up with the functions: every HTTP function has a first
request to be measured on, and the environment its children start with is one the
settings accept (a value the app no longer knows would stop every child at its first
request)."""

from __future__ import annotations

from app.config import Settings
from bench import cold_start


def test_every_http_function_has_a_first_request() -> None:
    http, _others = cold_start.http_functions()
    assert sorted(cold_start.PROBES) == sorted(http)


def test_the_childrens_environment_is_valid_settings() -> None:
    environ = cold_start.instance_settings("bench_cold_start_check")
    settings = Settings.from_environ(environ)
    assert settings.queue_backend == "scf" and settings.sms_provider == "tencent"
