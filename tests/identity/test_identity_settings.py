"""Identity settings: short JWT secrets outside local mode, BCRYPT_COST bounds, ADMIN_PHONES."""

from __future__ import annotations

import pydantic
import pytest

from app.config import ProductionMisconfigured, get_settings, production
from app.identity import phones
from tests.support.settings import settings_env


@pytest.mark.parametrize("env", ["test", "production"])
def test_a_short_jwt_secret_is_refused_outside_local_mode(env: str) -> None:
    with settings_env(APP_ENV=env, JWT_SECRET="s" * 63), pytest.raises(ProductionMisconfigured):
        get_settings()


@pytest.mark.parametrize("env", ["test", "production"])
def test_a_short_previous_jwt_secret_is_refused_outside_local_mode(env: str) -> None:
    with (
        settings_env(APP_ENV=env, JWT_SECRET="s" * 64, JWT_PREVIOUS_SECRET="p" * 63),
        pytest.raises(ProductionMisconfigured, match="JWT_PREVIOUS_SECRET is shorter"),
    ):
        get_settings()


def test_a_short_jwt_secret_is_allowed_on_a_laptop() -> None:
    with settings_env(APP_ENV="local", JWT_SECRET="s" * 20):
        assert get_settings().app_env == "local"


def test_bcrypt_cost_is_at_least_10() -> None:
    with settings_env(BCRYPT_COST="9"), pytest.raises(pydantic.ValidationError):
        get_settings()
    with settings_env(BCRYPT_COST=None):
        assert get_settings().bcrypt_cost == 12


def test_admin_phones_accept_every_spelling_and_ignore_junk() -> None:
    assert phones.admin_phones(" 13800138000,+8613900139000, nonsense,,8613700137000") == {
        "+8613800138000",
        "+8613900139000",
        "+8613700137000",
    }


def test_tencent_sms_needs_its_three_settings_in_production() -> None:
    with settings_env(SMS_PROVIDER="tencent", SMS_TEMPLATE_ID=""):
        problems = production.problems(get_settings())
    assert any("SMS_TEMPLATE_ID" in p for p in problems)
