"""The identity verbs behind the auth routes: send a code, register, sign in (password, code,
WeChat), refresh, log out.

Each verb takes validated, normalised values and returns a domain value (`SignIn`,
`sms.CodeSent`); it raises AppError for anything the client can fix. The order of checks is
deliberate: cheap refusals first; a code is judged before anything it guards (a referrer,
an account), so without it nothing else is revealed; a register code is used once the
referrer holds, before the phone's row is written; and unknown phone and wrong password
take the same path to the same answer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from app import profiles
from app.clock import utcnow
from app.db.tables import users as users_table
from app.db.transaction import transaction
from app.errors import AppError, ErrorCode
from app.identity import passwords, sessions, sms, throttle, users, wechat
from app.identity.principal import Principal
from app.profiles import User


@dataclass(frozen=True)
class SignIn:
    """A session begun (or refreshed): its tokens and the user as it is now."""

    access_token: str
    refresh_token: str
    user: User
    is_new_user: bool


def _invalid_credentials() -> AppError:
    return AppError(ErrorCode.AUTH_INVALID_CREDENTIALS, "Wrong phone number or password.")


def _disabled() -> AppError:
    return AppError(ErrorCode.ACCOUNT_DISABLED, "This account has been disabled.")


def _token_pair(pair: sessions.Pair, row: dict[str, Any], *, is_new: bool) -> SignIn:
    return SignIn(pair.access_token, pair.refresh_token, profiles.user_of_row(row), is_new)


def _sign_in(row: dict[str, Any], *, is_new: bool) -> SignIn:
    user_id = str(row["id"])
    pair = sessions.start(user_id, role=str(row["role"]), phone=row["phone"])
    # Disabling commits the flag, then ends the sessions it finds. A sign-in that read the
    # row before that commit could start its session after the ending, and the session would
    # come back to life when the account is enabled again. Reading the flag once more after
    # the start closes the window: either this read sees it, or the ending comes after this
    # session began and ends it.
    with transaction() as conn:
        now = users.get(conn, user_id)
    if now is None or now["disabled"]:
        sessions.end(user_id, pair.sid)
        raise _disabled()
    return _token_pair(pair, row, is_new=is_new)


def _create_or_find(
    create: Callable[[Any], dict[str, Any]], find: Callable[[Any], dict[str, Any] | None]
) -> tuple[dict[str, Any], bool]:
    """Create a user, or, when a concurrent request created it first, find that one.

    The unique phone/openid index decides the race; the loser's transaction (its invite
    code claim and signup grant included) rolls back whole.
    """
    try:
        with transaction() as conn:
            return create(conn), True
    except IntegrityError:
        with transaction() as conn:
            row = find(conn)
        if row is None:
            raise
        return row, False


def _returning(
    row: dict[str, Any], *, fill_empty: dict[str, str | None] | None = None, **changes: Any
) -> dict[str, Any]:
    """Apply sign-in changes to an existing user: admin phones, `changes` (set), and
    `fill_empty` (profile fields set only where still empty)."""
    if row["disabled"]:
        raise _disabled()
    with transaction() as conn:
        updated = users.promote_if_admin_phone(conn, row)
        values = {k: v for k, v in changes.items() if v is not None and updated.get(k) != v}
        if values:
            conn.execute(
                update(users_table)
                .where(users_table.c.id == row["id"])
                .values(**values, updated_at=utcnow())
            )
            updated = {**updated, **values}
        if users.fill_empty(conn, str(row["id"]), **(fill_empty or {})):
            # A locking read sees what a concurrent sign-in may have filled first.
            current = users.get(conn, str(row["id"]), for_update=True)
            assert current is not None
            updated = current
        if updated["role"] != row["role"]:
            profiles.hold(conn, str(row["id"]))
        elif updated != row:
            conn.after_commit(profiles.forgetter(str(row["id"])), user_id=row["id"])
    return updated


# ---------------------------------------------------------------- verbs


def send_code(phone: str, purpose: sms.Purpose, ip: str) -> sms.CodeSent:
    if purpose == "register":
        # Paid for before it is answered, so registered phones cannot be listed for free.
        throttle.take_lookup(ip)
        if users.phone_registered(phone):
            raise AppError(ErrorCode.PHONE_ALREADY_REGISTERED, "This phone is already registered.")
    return sms.send(phone, purpose, ip)


def register(
    phone: str,
    password: str,
    code: str,
    *,
    ip: str,
    referrer_id: str | None = None,
    invite_code: str | None = None,
    nickname: str | None = None,
) -> SignIn:
    def referrer(conn: Any, registering_phone: str | None) -> str | None:
        return users.resolve_referrer(
            conn,
            referrer_id=referrer_id,
            invite_code=invite_code,
            registering_phone=registering_phone,
        )

    # The code before anything else: without this phone's register code every request gets
    # the same 400 SMS_CODE_INVALID, whatever its phone, referrer or invite code, so this
    # route tells no one whose phone is registered, which invite codes or user ids exist,
    # or whose phone an invite code is. The right code is only checked here: a mistyped
    # invite code is 400 REFERRER_INVALID and the same code registers once it is put
    # right. That refusal is a wrong try of the code (sms.strike), so one code tries at
    # most MAX_WRONG_TRIES referrers.
    sms.check(phone, "register", code, ip)
    try:
        with transaction() as conn:
            referrer(conn, phone)
    except AppError as error:
        if error.code == ErrorCode.REFERRER_INVALID:
            sms.strike(phone, "register", code)
        raise
    # Used before the phone is looked at (a parallel request with it is now refused). A
    # register code is only sent to a phone that was not registered then, so a 409 below
    # is a race its owner lost.
    sms.use(phone, "register", code)
    with transaction() as conn:
        if users.find_by_phone(conn, phone) is not None:
            raise AppError(ErrorCode.PHONE_ALREADY_REGISTERED, "This phone is already registered.")
    password_hash = passwords.hash_password(password)
    try:
        with transaction() as conn:
            row = users.create(
                conn,
                phone=phone,
                password_hash=password_hash,
                nickname=nickname,
                referrer_id=referrer(conn, phone),
            )
    except IntegrityError:
        if users.phone_registered(phone):
            raise AppError(
                ErrorCode.PHONE_ALREADY_REGISTERED, "This phone is already registered."
            ) from None
        raise
    return _sign_in(row, is_new=True)


def login(phone: str, *, password: str | None, code: str | None, ip: str) -> SignIn:
    """Password or code; the password wins when both are given."""
    if password is not None:
        return login_password(phone, password, ip)
    if code is not None:
        return login_code(phone, code, ip)
    raise AppError(
        ErrorCode.VALIDATION_ERROR,
        "Send a password or an SMS code.",
        details=[{"loc": ["body", "password"], "msg": "password or code is required"}],
    )


def login_password(phone: str, password: str, ip: str) -> SignIn:
    # Counted before the slow check, so parallel guesses cannot outrun the limit.
    attempt = throttle.reserve(phone, ip)
    try:
        with transaction() as conn:
            row = users.find_by_phone(conn, phone)
        # Unknown phones get a bcrypt check too (against a dummy hash): same time, same answer.
        right = passwords.verify(password, row["password_hash"] if row else None)
    except Exception:
        throttle.release(phone, ip, attempt)
        raise
    if row is None or not right:
        raise _invalid_credentials()  # the reserved attempt stays counted
    # The right password, whatever the account's state: its check stays counted for the
    # phone's hour, so a disabled account's holder cannot have bcrypt run without end.
    throttle.succeeded(phone, ip)
    # Only a caller who knows the password learns that the account is disabled.
    if row["disabled"]:
        raise _disabled()
    changes: dict[str, Any] = {}
    if passwords.needs_rehash(row["password_hash"]):
        changes["password_hash"] = passwords.hash_password(password)
    return _sign_in(_returning(row, **changes), is_new=False)


def login_code(phone: str, code: str, ip: str) -> SignIn:
    sms.consume(phone, "login", code, ip)
    with transaction() as conn:
        row = users.find_by_phone(conn, phone)
    if row is not None:
        return _sign_in(_returning(row), is_new=False)
    row, is_new = _create_or_find(
        lambda conn: users.create(conn, phone=phone),
        lambda conn: users.find_by_phone(conn, phone),
    )
    if not is_new:
        row = _returning(row)
    return _sign_in(row, is_new=is_new)


def wechat_login(
    code: str,
    *,
    ip: str,
    nickname: str | None = None,
    avatar: str | None = None,
    invite_code: str | None = None,
) -> SignIn:
    throttle.take_wechat_login(ip)
    identity = wechat.code_to_identity(code)
    # nickname/avatar only fill empty fields of an existing user.
    with transaction() as conn:
        row = users.find_by_openid(conn, identity.openid)
    if row is None:

        def create(conn: Any) -> dict[str, Any]:
            return users.create(
                conn,
                openid=identity.openid,
                unionid=identity.unionid,
                nickname=nickname,
                avatar=avatar,
                referrer_id=users.resolve_referrer(conn, referrer_id=None, invite_code=invite_code),
            )

        row, is_new = _create_or_find(create, lambda c: users.find_by_openid(c, identity.openid))
        if is_new:
            return _sign_in(row, is_new=True)
    fill = {
        "nickname": None if row["nickname"] else nickname,
        "avatar": None if row["avatar"] else avatar,
    }
    updated = _returning(row, fill_empty=fill, wechat_unionid=identity.unionid)
    return _sign_in(updated, is_new=False)


def refresh(token: str) -> SignIn:
    claims = sessions.refresh_claims(token)
    with transaction() as conn:
        row = users.get(conn, str(claims["sub"]))
    if row is None:
        sessions.end(str(claims["sub"]), str(claims["sid"]))
        raise AppError(ErrorCode.AUTH_REFRESH_INVALID, "The session has ended; sign in again.")
    if row["disabled"]:
        # Every token of a disabled user is 403, as an access token is (the state before the
        # session: disabling ended it). A row disabled behind the service's back still gets
        # its sessions ended here.
        sessions.end_all(str(row["id"]))
        raise _disabled()
    # Role and phone come from the row, so a promotion or demotion shows at the next refresh.
    pair = sessions.rotate(claims, role=str(row["role"]), phone=row["phone"])
    return _token_pair(pair, row, is_new=False)


def logout(principal: Principal) -> None:
    sessions.end(principal.user_id, principal.sid)


def logout_all(principal: Principal) -> None:
    sessions.end_all(principal.user_id)
