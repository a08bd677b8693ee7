"""Answers with the API Gateway event it was given, so tests can see what the gateway built;
a few paths answer in the other ways a function can (binary, crash, no integration response)."""

import base64
import json


def main_handler(event, context):
    path = event["path"]
    if path == "/_test/binary":
        body = base64.b64encode(bytes(range(256))).decode()
        headers = {"Content-Type": "application/octet-stream"}
        return {"isBase64Encoded": True, "statusCode": 200, "headers": headers, "body": body}
    if path == "/_test/crash":
        raise RuntimeError("the probe crashed on purpose")
    if path == "/_test/not-integration":
        return "just a string"
    answer = {"event": event, "context": context}
    return {
        "isBase64Encoded": False,
        "statusCode": 200,
        "headers": {"Content-Type": "application/json", "X-Probe": ["a", "b"]},
        "body": json.dumps(answer),
    }
