"""Register, password login, code login: API.md's rules, through the functions' handlers."""

from __future__ import annotations

import secrets
import threading
from collections import Counter
from typing import Any

import bcrypt
import pytest
from sqlalchemy import func, select, update

from app.config import get_settings
from app.db.tables import invite_codes, users
from app.db.transaction import transaction
from app.identity import sms, tokens
from app.identity import users as identity_users
from app.redis_client import get_redis
from tests.identity.conftest import PASSWORD, Flows, new_phone
from tests.support.lock_waits import wait_for_a_lock_wait
from tests.support.logs import capture_logs
from tests.support.net import closed_port
from tests.support.settings import app_engine_under, settings_env

USER_FIELDS = {
    "id",
    "phone",
    "nickname",
    "avatar",
    "gender",
    "role",
    "invite_code",
    "referrer_id",
    "quota",
    "membership",
    "created_at",
}


def _row(phone: str) -> dict | None:
    with transaction() as conn:
        row = conn.execute(select(users).where(users.c.phone == phone)).mappings().first()
    return dict(row) if row else None


def test_register_returns_a_token_pair_and_stores_a_bcrypt_hash(flows: Flows) -> None:
    phone = new_phone()
    reply = flows.register(phone[3:], nickname="  Ann  ")  # 11 digits in, +86 out
    assert reply.status == 201, reply.body
    pair = reply.json()
    assert set(pair) == {
        "access_token",
        "refresh_token",
        "token_type",
        "expires_in",
        "refresh_expires_in",
        "user",
        "is_new_user",
    }
    assert pair["token_type"] == "Bearer" and pair["expires_in"] == 900
    assert pair["refresh_expires_in"] == 604800 and pair["is_new_user"] is True
    user = pair["user"]
    assert set(user) == USER_FIELDS
    assert user["phone"] == phone and user["nickname"] == "Ann" and user["gender"] == "unknown"
    assert user["role"] == "user" and user["quota"] == {"balance": 0, "reserved": 0}
    assert user["membership"] is None and user["created_at"].endswith("Z")
    assert len(user["invite_code"]) == 8
    claims = tokens.decode(pair["access_token"], "access")
    assert claims["sub"] == user["id"] and claims["phone"] == phone and claims["role"] == "user"
    row = _row(phone)
    assert (
        row and row["password_hash"].startswith("$2b$10$") and PASSWORD not in row["password_hash"]
    )
    with transaction() as conn:
        claimed = conn.execute(
            select(invite_codes.c.claimed_by).where(invite_codes.c.code == user["invite_code"])
        ).scalar()
    assert claimed == user["id"]


def test_answers_holding_tokens_or_a_users_data_are_never_cached(flows: Flows) -> None:
    # RFC 6749 5.1: an answer with tokens says no-store; so does every API answer, errors too.
    phone = new_phone()
    registered = flows.register(phone)
    login = flows.login(phone)
    refreshed = flows.refresh(login.json()["refresh_token"])
    wrong = flows.login(phone, password="not-the-password")
    for reply in (registered, login, refreshed, wrong):
        assert reply.header("Cache-Control") == "no-store", reply.body
    assert wrong.status == 401


def test_register_twice_is_409_and_a_register_code_for_a_registered_phone_too(flows: Flows) -> None:
    pair = flows.registered()
    phone = pair["user"]["phone"]
    assert flows.sms(phone, "register").json()["code"] == "PHONE_ALREADY_REGISTERED"
    # A login code does not register, whether or not the phone is registered.
    get_redis().delete(sms.cooldown_key(phone))
    reply = flows.register(phone, code=flows.code_for(phone, "login"))
    assert (reply.status, reply.json()["code"]) == (400, "SMS_CODE_INVALID")
    # The owner of a register code whose phone got an account meanwhile (a code login) is
    # told why it cannot register.
    racing = new_phone()
    register_code = flows.code_for(racing, "register")
    get_redis().delete(sms.cooldown_key(racing))
    assert flows.code_login(racing).status == 200
    reply = flows.register(racing, code=register_code)
    assert (reply.status, reply.json()["code"]) == (409, "PHONE_ALREADY_REGISTERED")


def test_registered_phone_lookups_are_rate_limited_per_ip(flows: Flows) -> None:
    registered = [flows.registered()["user"]["phone"] for _ in range(3)]
    with settings_env(SMS_PER_IP_PER_HOUR="2"):
        ip = "192.0.2.200"
        for phone in registered[:2]:
            assert flows.sms(phone, "register", ip=ip).json()["code"] == "PHONE_ALREADY_REGISTERED"
        reply = flows.sms(registered[2], "register", ip=ip)
        assert (reply.status, reply.json()["code"]) == (429, "SMS_RATE_LIMITED")
        assert int(reply.header("Retry-After")) > 0


def test_registration_without_the_phones_code_says_nothing_about_the_phone(
    flows: Flows,
) -> None:
    # It used to answer 409 for a registered phone before looking at the code: a free
    # lookup, limited only per IP.
    registered = flows.registered()["user"]["phone"]

    def register(phone: str) -> tuple[int, str]:
        body = {"phone": phone, "password": PASSWORD, "code": "123456"}
        reply = flows.call("auth-register", "POST", "/auth/register", body=body)
        return reply.status, reply.json()["code"]

    assert register(registered) == register(new_phone()) == (400, "SMS_CODE_INVALID")


def test_wrong_used_and_cross_purpose_codes_are_refused(flows: Flows) -> None:
    phone = new_phone()
    code = flows.code_for(phone, "register")
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    reply = flows.register(phone, code=wrong)
    assert (reply.status, reply.json()["code"]) == (400, "SMS_CODE_INVALID")
    assert _row(phone) is None
    # A register code does not log in...
    reply = flows.code_login(phone, code)
    assert (reply.status, reply.json()["code"]) == (400, "SMS_CODE_INVALID")
    # ...it registers, once.
    assert flows.register(phone, code=code).status == 201
    reply = flows.call(
        "auth-register",
        "POST",
        "/auth/register",
        body={"phone": new_phone(), "password": PASSWORD, "code": code},
    )
    assert reply.json()["code"] == "SMS_CODE_INVALID"
    # A login code does not register.
    other = new_phone()
    login_code = flows.code_for(other, "login")
    reply = flows.register(other, code=login_code)
    assert reply.json()["code"] == "SMS_CODE_INVALID" and _row(other) is None


def test_a_code_is_burnt_after_five_wrong_tries(flows: Flows) -> None:
    phone = new_phone()
    code = flows.code_for(phone, "login")
    wrong = f"{(int(code) + 7) % 1_000_000:06d}"
    for _ in range(5):
        assert flows.code_login(phone, wrong).json()["code"] == "SMS_CODE_INVALID"
    reply = flows.code_login(phone, code)
    assert (reply.status, reply.json()["code"]) == (400, "SMS_CODE_INVALID")


def test_code_reuse_is_refused(flows: Flows) -> None:
    phone = new_phone()
    code = flows.code_for(phone)
    assert flows.code_login(phone, code).status == 200
    reply = flows.code_login(phone, code)
    assert (reply.status, reply.json()["code"]) == (400, "SMS_CODE_INVALID")


def test_passwords_outside_8_to_72_bytes_are_422(flows: Flows) -> None:
    for bad in ("short7!", "x" * 73, "密" * 25):  # 7 bytes, 73 bytes, 75 bytes in 25 chars
        phone = new_phone()
        reply = flows.call(
            "auth-register",
            "POST",
            "/auth/register",
            body={"phone": phone, "password": bad, "code": "123456"},
        )
        assert reply.status == 422 and reply.json()["details"][0]["loc"] == ["body", "password"]
    assert flows.register(password="密" * 24).status == 201  # exactly 72 bytes


def test_bad_phones_are_422(flows: Flows) -> None:
    for bad in ("12345", "+1 415 555 0100", "12800138000", "1380013800a", "+86138001380001"):
        reply = flows.sms(bad)
        assert reply.status == 422, bad
        assert reply.json()["details"][0]["loc"] == ["body", "phone"]


def test_only_ascii_digits_make_a_phone(flows: Flows) -> None:
    digits = flows.registered()["user"]["phone"][3:]
    fullwidth = str.maketrans("0123456789", "".join(chr(0xFF10 + d) for d in range(10)))
    arabic_indic = str.maketrans("0123456789", "".join(chr(0x0660 + d) for d in range(10)))
    # Each would be another spelling of the same phone, with counters of its own.
    for bad in (
        digits[:3] + digits[3:].translate(fullwidth),
        digits[:3] + digits[3:].translate(arabic_indic),
        digits[:-1] + digits[-1].translate(fullwidth),
    ):
        reply = flows.sms(bad)
        assert (reply.status, reply.json()["code"]) == (422, "VALIDATION_ERROR"), bad
        assert flows.login(bad).status == 422, bad


def test_password_login_and_unknown_phone_wrong_password_answer_alike(flows: Flows) -> None:
    pair = flows.registered()
    phone = pair["user"]["phone"]
    ok = flows.login(phone)
    assert ok.status == 200 and ok.json()["is_new_user"] is False
    assert ok.json()["user"]["id"] == pair["user"]["id"]
    wrong = flows.login(phone, "wrong password", ip="198.51.100.1")
    unknown = flows.login(new_phone(), "wrong password", ip="198.51.100.2")
    assert wrong.status == unknown.status == 401
    a, b = wrong.json(), unknown.json()
    assert a["code"] == b["code"] == "AUTH_INVALID_CREDENTIALS"
    assert a["message"] == b["message"]
    assert set(a) == set(b)


def test_login_needs_a_password_or_a_code_and_the_password_wins(flows: Flows) -> None:
    pair = flows.registered()
    phone = pair["user"]["phone"]
    reply = flows.call("auth-login", "POST", "/auth/login", body={"phone": phone})
    assert reply.status == 422
    code = flows.code_for(phone)
    reply = flows.call(
        "auth-login",
        "POST",
        "/auth/login",
        body={"phone": phone, "password": "not the password", "code": code},
    )
    assert reply.json()["code"] == "AUTH_INVALID_CREDENTIALS"  # the password was judged
    assert flows.code_login(phone, code).status == 200  # and the code was left unused


def test_failed_logins_lock_password_login_but_not_code_login(flows: Flows) -> None:
    pair = flows.registered()
    phone = pair["user"]["phone"]
    for i in range(5):
        assert flows.login(phone, "wrong password", ip=f"198.51.100.{i}").status == 401
    locked = flows.login(phone, ip="198.51.100.99")  # even the right password
    assert (locked.status, locked.json()["code"]) == (429, "AUTH_TOO_MANY_ATTEMPTS")
    assert int(locked.header("Retry-After")) > 0
    assert flows.code_login(phone).status == 200


def test_parallel_wrong_passwords_cannot_outrun_the_lock(flows: Flows) -> None:
    phone = flows.registered()["user"]["phone"]
    flows.login(new_phone(), "wrong password", ip="192.0.2.1")  # functions loaded first
    guesses = 40
    barrier = threading.Barrier(guesses)
    answers: list[tuple[int, str]] = []

    def guess(i: int) -> None:
        barrier.wait()
        reply = flows.login(phone, f"wrong password {i}", ip=f"198.18.{i}.1")
        answers.append((reply.status, reply.json()["code"]))

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(guesses)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert Counter(answers) == {
        (401, "AUTH_INVALID_CREDENTIALS"): 5,
        (429, "AUTH_TOO_MANY_ATTEMPTS"): guesses - 5,
    }
    assert flows.login(phone).status == 429  # still locked for the right password
    assert flows.code_login(phone).status == 200


def test_the_right_password_of_a_disabled_account_is_no_failed_guess(flows: Flows) -> None:
    pair = flows.registered()
    phone, user_id = pair["user"]["phone"], pair["user"]["id"]
    flows.disable(user_id)
    # The right password on a disabled account is not a failed guess.
    for _ in range(6):
        assert flows.login(phone).json()["code"] == "ACCOUNT_DISABLED"


def test_an_unknown_phone_costs_one_bcrypt_check_and_no_hashing(
    flows: Flows, monkeypatch: pytest.MonkeyPatch
) -> None:
    hashed: list[bytes] = []
    checked: list[bytes] = []
    hashpw, checkpw = bcrypt.hashpw, bcrypt.checkpw

    def counting_hashpw(password: bytes, salt: bytes) -> bytes:
        hashed.append(salt)
        return hashpw(password, salt)

    def counting_checkpw(password: bytes, hashed_password: bytes) -> bool:
        checked.append(hashed_password)
        return checkpw(password, hashed_password)

    monkeypatch.setattr(bcrypt, "hashpw", counting_hashpw)
    monkeypatch.setattr(bcrypt, "checkpw", counting_checkpw)
    with settings_env(BCRYPT_COST="11"):  # a cost this process has not hashed at
        reply = flows.login(new_phone(), "wrong password")
    assert reply.json()["code"] == "AUTH_INVALID_CREDENTIALS"
    assert hashed == []
    assert len(checked) == 1 and checked[0].startswith(b"$2b$11$")


def test_every_allowed_cost_has_its_dummy_hash() -> None:
    from app.config import Settings
    from app.identity import passwords

    bounds = {type(m).__name__: m for m in Settings.model_fields["bcrypt_cost"].metadata}
    allowed = range(bounds["Ge"].ge, bounds["Le"].le + 1)
    assert sorted(passwords._DUMMY_HASHES) == list(allowed)
    for cost, dummy in passwords._DUMMY_HASHES.items():
        assert dummy.startswith(b"$2b$%02d$" % cost) and len(dummy) == 60


def test_a_hash_of_another_cost_is_replaced_at_the_next_sign_in(flows: Flows) -> None:
    phone = flows.registered()["user"]["phone"]

    def stored_hash() -> str:
        row = _row(phone)
        assert row is not None
        return str(row["password_hash"])

    first = stored_hash()
    assert first.startswith("$2b$10$")
    with settings_env(BCRYPT_COST="11"):
        assert flows.login(phone, "wrong password").status == 401
        assert stored_hash() == first
        assert flows.login(phone).status == 200
        rehashed = stored_hash()
        assert rehashed.startswith("$2b$11$")
        assert bcrypt.checkpw(PASSWORD.encode(), rehashed.encode())
        assert flows.login(phone).status == 200
        assert stored_hash() == rehashed


def test_success_clears_the_failure_count(flows: Flows) -> None:
    phone = flows.registered()["user"]["phone"]
    for _ in range(4):
        flows.login(phone, "wrong password")
    assert flows.login(phone).status == 200
    for _ in range(4):
        flows.login(phone, "wrong password")
    assert flows.login(phone).status == 200


def test_failures_per_ip_are_capped(flows: Flows) -> None:
    with settings_env(LOGIN_FAILURES_PER_IP_PER_HOUR="3"):
        ip = "192.0.2.77"
        for _ in range(3):
            assert flows.login(new_phone(), "wrong password", ip=ip).status == 401
        phone = flows.registered()["user"]["phone"]
        reply = flows.login(phone, ip=ip)
        assert (reply.status, reply.json()["code"]) == (429, "AUTH_TOO_MANY_ATTEMPTS")
        assert flows.login(phone, ip="192.0.2.78").status == 200


def test_a_refusal_by_the_ip_gives_the_phone_its_attempt_back(flows: Flows) -> None:
    # The phone's attempt is taken first, and given back when the IP refuses.
    with settings_env(LOGIN_FAILURES_PER_IP_PER_HOUR="1", LOGIN_MAX_FAILURES="1"):
        ip = "192.0.2.79"
        assert flows.login(new_phone(), "wrong password", ip=ip).status == 401
        phone = flows.registered()["user"]["phone"]
        refused = flows.login(phone, ip=ip)
        assert (refused.status, refused.json()["code"]) == (429, "AUTH_TOO_MANY_ATTEMPTS")
        # No counter of the phone is left (each would stay its window, one per phone tried).
        assert list(get_redis().scan_iter(match=f"login:*{phone}")) == []
        assert flows.login(phone, ip="192.0.2.80").status == 200


def test_code_login_of_a_new_phone_creates_the_account(flows: Flows) -> None:
    phone = new_phone()
    reply = flows.code_login(phone)
    assert reply.status == 200 and reply.json()["is_new_user"] is True
    row = _row(phone)
    assert row and row["password_hash"] is None
    # No password: password login is the same 401 as a wrong one.
    assert flows.login(phone).json()["code"] == "AUTH_INVALID_CREDENTIALS"
    again = flows.code_login(phone)
    assert again.json()["is_new_user"] is False
    assert again.json()["user"]["id"] == reply.json()["user"]["id"]


def test_disabled_accounts_are_403_but_only_with_the_right_password(flows: Flows) -> None:
    pair = flows.registered()
    phone, user_id = pair["user"]["phone"], pair["user"]["id"]
    flows.disable(user_id)
    assert flows.login(phone).json()["code"] == "ACCOUNT_DISABLED"
    assert flows.login(phone, "wrong password").json()["code"] == "AUTH_INVALID_CREDENTIALS"
    assert flows.code_login(phone).json()["code"] == "ACCOUNT_DISABLED"
    # every token of a disabled user, its refresh token too, though its session has ended
    refused = flows.refresh(pair["refresh_token"])
    assert (refused.status, refused.json()["code"]) == (403, "ACCOUNT_DISABLED")


def test_admin_phones_hold_at_registration_and_at_login(flows: Flows) -> None:
    pair = flows.registered("13700000001")
    assert pair["user"]["role"] == "admin"
    assert tokens.decode(pair["access_token"], "access")["role"] == "admin"
    # Registered before being listed: admin from the next login on.
    phone = new_phone()
    assert flows.registered(phone)["user"]["role"] == "user"
    with settings_env(ADMIN_PHONES=phone[3:]):
        reply = flows.login(phone)
    assert reply.json()["user"]["role"] == "admin"
    me = flows.me(reply.json()["access_token"]).json()
    assert me["role"] == "admin"


def test_referrer_by_id_or_invite_code(flows: Flows) -> None:
    referrer = flows.registered()["user"]
    by_id = flows.registered(referrer_id=referrer["id"])["user"]
    assert by_id["referrer_id"] == referrer["id"]
    by_code = flows.registered(invite_code=referrer["invite_code"].lower())["user"]
    assert by_code["referrer_id"] == referrer["id"]
    both = flows.registered(referrer_id=referrer["id"], invite_code=referrer["invite_code"])
    assert both["user"]["referrer_id"] == referrer["id"]


def test_invalid_referrers_are_400_and_create_nothing(flows: Flows) -> None:
    referrer = flows.registered()["user"]
    other = flows.registered()["user"]
    disabled = flows.registered()["user"]
    flows.disable(disabled["id"])
    cases = [
        {"referrer_id": "no-such-user"},
        {"invite_code": "ZZZZZZZZ"},
        {"referrer_id": referrer["id"], "invite_code": other["invite_code"]},
        {"referrer_id": disabled["id"]},
    ]
    for extra in cases:
        phone = new_phone()
        code = flows.code_for(phone, "register")
        reply = flows.register(phone, code=code, **extra)
        assert (reply.status, reply.json()["code"]) == (400, "REFERRER_INVALID"), extra
        assert _row(phone) is None
        # The code was not spent on the refused attempt.
        assert flows.register(phone, code=code).status == 201


def test_register_without_its_code_does_not_tell_whose_phone_an_invite_belongs_to(
    flows: Flows,
) -> None:
    """An invite code is public: without the phone's register code, the inviter's own phone
    and any other phone get the same answer."""
    inviter = flows.registered()["user"]
    answers = {}
    for phone in (inviter["phone"], new_phone()):
        reply = flows.register(phone, code="000000", invite_code=inviter["invite_code"])
        answers[phone] = (reply.status, reply.json()["code"])
    assert set(answers.values()) == {(400, "SMS_CODE_INVALID")}, answers


def test_each_sign_in_route_names_its_user_on_the_invocation_log_line(flows: Flows) -> None:
    import secrets

    from tests.support.functions import handler
    from tests.support.logs import capture_logs

    phone = new_phone()
    wechat_code = "wx-" + secrets.token_hex(6)
    flows.wechat.code(wechat_code, openid="o" + secrets.token_hex(10))
    for name in ("auth-register", "auth-login", "auth-wechat-login", "auth-refresh"):
        handler(name)  # built before the capture: building one configures the root logger
    with capture_logs() as logs:
        pairs = [
            flows.register(phone).json(),
            flows.login(phone).json(),
            flows.code_login(phone).json(),
            flows.wechat_login(wechat_code).json(),
        ]
        pairs.append(flows.refresh(pairs[1]["refresh_token"]).json())

    # (registering and the code login each ask for an SMS code first: no user yet)
    lines = [line for line in logs.where(message="invocation") if line["route"] != "/auth/sms-code"]
    assert [line.get("user_id") for line in lines] == [p["user"]["id"] for p in pairs]


def test_failures_per_ip_count_an_ipv6_client_by_its_64(flows: Flows) -> None:
    with settings_env(LOGIN_FAILURES_PER_IP_PER_HOUR="2"):
        prefix = f"2001:db8:{secrets.randbelow(65536):x}:{secrets.randbelow(65536):x}"
        for host in ("::1", "::2"):
            assert flows.login(new_phone(), "wrong password", ip=prefix + host).status == 401
        reply = flows.login(new_phone(), "wrong password", ip=f"{prefix}:ffff::3")
        assert (reply.status, reply.json()["code"]) == (429, "AUTH_TOO_MANY_ATTEMPTS")


def test_registered_phone_lookups_count_an_ipv6_client_by_its_64(flows: Flows) -> None:
    registered = [flows.registered()["user"]["phone"] for _ in range(2)]
    with settings_env(SMS_PER_IP_PER_HOUR="1"):
        prefix = f"2001:db8:{secrets.randbelow(65536):x}:{secrets.randbelow(65536):x}"
        first = flows.sms(registered[0], "register", ip=f"{prefix}::1")
        assert first.json()["code"] == "PHONE_ALREADY_REGISTERED"
        reply = flows.sms(registered[1], "register", ip=f"{prefix}::2")
        assert (reply.status, reply.json()["code"]) == (429, "SMS_RATE_LIMITED")


def test_password_checks_per_phone_are_bounded_successes_included(flows: Flows) -> None:
    """A right password gives its attempt back to the failure counts, so without a bound of
    its own one account's holder could have a bcrypt check run on every request, from one
    address, for ever."""
    pair = flows.registered()
    phone = pair["user"]["phone"]
    with settings_env(LOGIN_PER_PHONE_PER_HOUR="3"):
        for _ in range(3):
            assert flows.login(phone, ip="192.0.2.90").status == 200
        refused = flows.login(phone, ip="192.0.2.91")
        assert (refused.status, refused.json()["code"]) == (429, "AUTH_TOO_MANY_ATTEMPTS")
        assert int(refused.header("Retry-After")) > 0
        assert flows.code_login(phone).status == 200  # an SMS code still signs in
        # The refusal took nothing from the address: another phone signs in from it.
        other = flows.registered()["user"]["phone"]
        assert flows.login(other, ip="192.0.2.91").status == 200


def test_right_passwords_of_a_disabled_account_count_against_the_phones_checks(
    flows: Flows,
) -> None:
    """A disabled account's holder still knows its password, and each 403 is a bcrypt check
    all the same: those are bounded as every right password is."""
    pair = flows.registered()
    phone = pair["user"]["phone"]
    flows.disable(pair["user"]["id"])
    with settings_env(LOGIN_PER_PHONE_PER_HOUR="3"):
        for _ in range(3):
            assert flows.login(phone, ip="192.0.2.92").json()["code"] == "ACCOUNT_DISABLED"
        refused = flows.login(phone, ip="192.0.2.93")
        assert (refused.status, refused.json()["code"]) == (429, "AUTH_TOO_MANY_ATTEMPTS")
        # Neither the failure lock nor the address was charged for them.
        assert get_redis().exists(f"login:failures:phone:{phone}") == 0
        other = flows.registered()["user"]["phone"]
        assert flows.login(other, ip="192.0.2.92").status == 200


def _database_down() -> Any:
    return app_engine_under(DATABASE_URL=f"mysql+pymysql://root@127.0.0.1:{closed_port()}/x")


def test_a_registration_the_database_cannot_answer_is_503_and_spends_nothing_of_its_code(
    flows: Flows,
) -> None:
    # The referrer is the first thing registering asks the database: a failure there is no
    # wrong try of the code, however many times the client sends it again.
    phone = new_phone()
    code = flows.code_for(phone, "register")
    with _database_down():
        for _ in range(sms.MAX_WRONG_TRIES + 1):
            reply = flows.register(phone, code=code)
            assert (reply.status, reply.json()["code"]) == (503, "SERVICE_UNAVAILABLE")
    reply = flows.register(phone, code=code)
    assert reply.status == 201, reply.body


def test_a_password_login_the_database_cannot_answer_is_503_and_counts_no_failure(
    flows: Flows,
) -> None:
    phone = flows.registered()["user"]["phone"]
    with _database_down():
        for _ in range(get_settings().login_max_failures + 1):  # past it, were they counted
            reply = flows.login(phone)
            assert (reply.status, reply.json()["code"]) == (503, "SERVICE_UNAVAILABLE")
    assert flows.login(phone).status == 200


class _CreatingElsewhere:
    """A concurrent sign-in of `phone` that has inserted its user and not yet committed:
    `users.create` in a transaction of its own, held open until `commit`."""

    def __init__(self, phone: str) -> None:
        self.phone = phone
        self.user_id = ""
        self._inserted, self._commit = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._run)
        self._thread.start()
        assert self._inserted.wait(10)

    def _run(self) -> None:
        with transaction() as conn:
            self.user_id = str(identity_users.create(conn, phone=self.phone)["id"])
            self._inserted.set()
            self._commit.wait(30)

    def commit(self) -> None:
        self._commit.set()
        self._thread.join(10)


def _alongside(creating: _CreatingElsewhere, request: Any) -> Any:
    """`request()` run while `creating` holds its insert; it commits once the request waits
    on that row, so the request has looked the phone up and found nothing."""
    replies: list[Any] = []
    thread = threading.Thread(target=lambda: replies.append(request()))
    thread.start()
    try:
        wait_for_a_lock_wait()
    finally:
        creating.commit()
        thread.join(20)
    return replies[0]


def test_a_registration_that_loses_its_phone_to_a_concurrent_sign_in_is_409(
    flows: Flows,
) -> None:
    phone = new_phone()
    code = flows.code_for(phone, "register")
    creating = _CreatingElsewhere(phone)
    with capture_logs() as logs:
        reply = _alongside(creating, lambda: flows.register(phone, code=code))
    assert (reply.status, reply.json()["code"]) == (409, "PHONE_ALREADY_REGISTERED")
    row = _row(phone)
    assert row is not None and row["id"] == creating.user_id and row["password_hash"] is None
    assert [line for line in logs.lines if line["level"] == "error"] == []


def test_a_code_login_that_loses_its_new_phone_to_a_concurrent_sign_in_signs_that_user_in(
    flows: Flows,
) -> None:
    phone = new_phone()
    code = flows.code_for(phone, "login")
    creating = _CreatingElsewhere(phone)
    reply = _alongside(creating, lambda: flows.code_login(phone, code))
    assert reply.status == 200, reply.body
    assert reply.json()["is_new_user"] is False
    assert reply.json()["user"]["id"] == creating.user_id
    with transaction() as conn:
        count = conn.execute(
            select(func.count()).select_from(users).where(users.c.phone == phone)
        ).scalar()
    assert count == 1


def test_a_malformed_stored_hash_is_a_wrong_password_not_a_500(flows: Flows) -> None:
    phone = flows.registered()["user"]["phone"]
    with transaction() as conn:
        conn.execute(update(users).where(users.c.phone == phone).values(password_hash="$2b$10$x"))
    reply = flows.login(phone)
    assert (reply.status, reply.json()["code"]) == (401, "AUTH_INVALID_CREDENTIALS")
