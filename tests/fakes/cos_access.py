"""What FakeCos decides from an object's ACL and from the bucket policy, as far as the tests
rely on it.

- An object's ACL is what the request that wrote it said in `x-cos-acl` and `x-cos-grant-*`
  (PUT Object, and PUT Object acl: cloud.tencent.com/document/api/436/7748). It is
  readable by anyone, without a signature, when `x-cos-acl` is `public-read` or
  `public-read-write`, or a read or full-control grant names all users
  (`uri="http://cam.qcloud.com/groups/global/AllUsers"`, or `qcs::cam::anyone:anyone`):
  cloud.tencent.com/document/product/436/13327 (ACL, preset ACLs).
- A bucket policy's `deny` statements refuse an object request (403 AccessDenied) when the
  statement names everyone (`qcs::cam::anyone:anyone`), the request's action
  (`name/cos:PutObject`, `*` matching any run of characters), a resource matching
  `qcs::cos:{region}:uid/{appid}:{bucket}/{key}`, and every condition holds. Conditions on
  request headers (`cos:x-cos-acl`, `cos:x-cos-grant-read`, `cos:x-cos-storage-class`, ...:
  .../436/71306) with `string_equal`, `string_not_equal`, `string_like`, `string_not_like`,
  each also with `_if_exist` (a header that is absent: true with `_if_exist`, false without), as in
  .../436/46206's example (an allow on `string_equal` and a deny on
  `string_not_equal_if_exist` of `cos:x-cos-acl`). Several keys of one condition must all
  hold; several values of one key: any one of them (for a `not` operator: none of them).
  Statements with other operators, principals or `allow` are not modelled and change
  nothing: the fake authorises every request signed with its key, as CAM authorises ours.
- GET Object acl answers the ACL in COS's XML (`acl_answer`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

ANYONE = "qcs::cam::anyone:anyone"
ALL_USERS_URI = "http://cam.qcloud.com/groups/global/AllUsers"
ACL_HEADERS = (
    "x-cos-acl",
    "x-cos-grant-read",
    "x-cos-grant-read-acp",
    "x-cos-grant-write-acp",
    "x-cos-grant-full-control",
)
_OPERATORS = ("string_equal", "string_not_equal", "string_like", "string_not_like")
OWNER = "qcs::cam::uin/100000000001:uin/100000000001"
_PERMISSIONS = {
    "x-cos-grant-read": "READ",
    "x-cos-grant-read-acp": "READ_ACP",
    "x-cos-grant-write-acp": "WRITE_ACP",
    "x-cos-grant-full-control": "FULL_CONTROL",
}
_CANNED = {"public-read": ("READ",), "public-read-write": ("READ", "WRITE")}
_GRANTEE = re.compile(r'(id|uri)="([^"]*)"')


def acl_of(headers: Mapping[str, str]) -> dict[str, str]:
    """The ACL headers of a request, names lower-cased."""
    lower = {name.lower(): value for name, value in headers.items()}
    return {name: lower[name] for name in ACL_HEADERS if name in lower}


def publicly_readable(acl: Mapping[str, str]) -> bool:
    if acl.get("x-cos-acl") in ("public-read", "public-read-write"):
        return True
    grants = (acl.get("x-cos-grant-read", ""), acl.get("x-cos-grant-full-control", ""))
    return any(ALL_USERS_URI in grant or ANYONE in grant for grant in grants)


def acl_answer(acl: Mapping[str, str]) -> tuple[list[tuple[str, str]], bytes]:
    """GET Object acl's answer: the owner's FULL_CONTROL, then what the ACL
    headers granted, all users as the AllUsers group (as the SDK's parse_object_canned_acl
    reads a public-read object); `x-cos-acl: default` in the headers for an object that has
    no ACL of its own."""
    grants = [("CanonicalUser", "ID", OWNER, "FULL_CONTROL")]
    for permission in _CANNED.get(acl.get("x-cos-acl", ""), ()):
        grants.append(("Group", "URI", ALL_USERS_URI, permission))
    for header, permission in _PERMISSIONS.items():
        for kind, name in _GRANTEE.findall(acl.get(header, "")):
            if kind == "uri" or name == ANYONE:
                grants.append(("Group", "URI", ALL_USERS_URI, permission))
            else:
                grants.append(("CanonicalUser", "ID", name, permission))
    xsi = 'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
    body = "".join(
        f'<Grant><Grantee {xsi} xsi:type="{kind}"><{tag}>{name}</{tag}></Grantee>'
        f"<Permission>{permission}</Permission></Grant>"
        for kind, tag, name, permission in grants
    )
    answer = (
        f"<AccessControlPolicy><Owner><ID>{OWNER}</ID><DisplayName>{OWNER}</DisplayName>"
        f"</Owner><AccessControlList>{body}</AccessControlList></AccessControlPolicy>"
    )
    headers = [("Content-Type", "application/xml")]
    if acl.get("x-cos-acl", "default") == "default" and len(grants) == 1:
        headers.append(("x-cos-acl", "default"))
    return headers, answer.encode()


def denied(
    policy: Mapping[str, Any] | None, *, action: str, resource: str, headers: Mapping[str, str]
) -> bool:
    """Whether a deny statement of `policy` refuses this request."""
    if not policy:
        return False
    lower_headers = {name.lower(): value for name, value in headers.items()}
    document = {str(k).lower(): v for k, v in policy.items()}
    for raw in _values(document.get("statement")):
        if not isinstance(raw, dict):
            continue
        statement = {str(k).lower(): v for k, v in raw.items()}
        if str(statement.get("effect", "")).lower() != "deny":
            continue
        principal = statement.get("principal")
        everyone = _values(principal.get("qcs")) if isinstance(principal, dict) else []
        if ANYONE not in everyone:
            continue
        if not any(_like(a, f"name/cos:{action}") for a in _values(statement.get("action"))):
            continue
        if not any(_like(r, resource) for r in _values(statement.get("resource"))):
            continue
        if _conditions_hold(statement.get("condition") or {}, lower_headers):
            return True
    return False


def _conditions_hold(condition: Any, headers: Mapping[str, str]) -> bool:
    if not isinstance(condition, dict):
        return False
    for operator, block in condition.items():
        name = str(operator).lower()
        if_exist = name.endswith("_if_exist")
        base = name.removesuffix("_if_exist")
        if base not in _OPERATORS or not isinstance(block, dict):
            return False  # not modelled: the statement does not apply
        for key, wanted in block.items():
            header = str(key).lower().removeprefix("cos:")
            value = headers.get(header)
            if value is None:
                if not if_exist:
                    return False
                continue
            like = base.endswith("like")
            matches = any(
                _like(str(w), value) if like else str(w) == value for w in _values(wanted)
            )
            if matches == ("_not_" in base):
                return False
    return True


def _like(pattern: str, value: str) -> bool:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in str(pattern))
    return re.fullmatch(regex, value, flags=re.DOTALL) is not None


def _values(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]
