"""HTTP through SCF Function URLs: routes, requests, responses, the event adapter."""

from app.http.request import Request
from app.http.resolver import http_handler
from app.http.response import Response
from app.http.routing import Auth, Route, Router

__all__ = ["Auth", "Request", "Response", "Route", "Router", "http_handler"]
