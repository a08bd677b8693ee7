"""Answers with the Function URL event it was given, so tests can see what the local cloud
built; a few paths answer in the other ways a function can (binary, crash, no payload)."""

import base64
import json


class _Paths:
    """What the local cloud reads to map the domain's `/_test/*` here (http_handler's
    `routes` carry the same)."""

    path = "/_test/{anything}"


def main_handler(event, context):
    path = event["path"]
    if path == "/_test/binary":
        body = base64.b64encode(bytes(range(256))).decode()
        headers = {"Content-Type": "application/octet-stream"}
        return {"isBase64Encoded": True, "statusCode": 200, "headers": headers, "body": body}
    if path == "/_test/crash":
        raise RuntimeError("the probe crashed on purpose")
    if path == "/_test/not-a-payload":
        return "just a string"
    answer = {"event": event, "context": context}
    return {
        "statusCode": 200,
        "headers": {"Content-Type": "application/json", "X-Probe": ["a", "b"]},
        "body": json.dumps(answer),
    }


main_handler.routes = [_Paths()]
