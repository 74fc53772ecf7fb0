"""Who may talk to the annotator, and how much: loopback by default, a token otherwise,
bodies capped in size.

A web page of another site, open in the same browser, can send requests to a server on
127.0.0.1 (cross-site requests), and can even point its own host name at 127.0.0.1 to read
the answers (DNS rebinding). So a request that changes anything must come from the
annotator's own page (its Origin, when the browser sends one, names the Host it was sent
to), and without a token only requests addressed to a loopback name are answered."""
from __future__ import annotations

import ipaddress
import json
import secrets
from urllib.parse import urlsplit

TOKEN_HEADER = "X-ClickPose-Token"
TOKEN_QUERY = "token"
LOOPBACK_NAMES = {"localhost"}


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def require_token_off_loopback(host: str, token: str | None) -> None:
    """Binding beyond this machine exposes the labels: refuse it without a token."""
    if not is_loopback(host) and not token:
        raise ValueError(f"host {host!r} is reachable from other machines; pass a token "
                         "(--token, or CLICKPOSE_ANNOTATOR_TOKEN) that the page will send "
                         "with every request, or bind 127.0.0.1")


SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


def host_name(host_header: str) -> str:
    """The name in a Host header: "127.0.0.1:8765" -> "127.0.0.1", "[::1]:80" -> "::1"."""
    return urlsplit(f"//{host_header}").hostname or ""


def refusal(method: str, headers: dict[str, str], token: str | None) -> str | None:
    """Why a request must be refused before it reaches the app (None: let it through)."""
    host = headers.get("host", "")
    if token is None and not is_loopback(host_name(host)):
        return (f"Host {host!r} is not this machine's loopback name: without a token the "
                "annotator answers only requests addressed to 127.0.0.1 or localhost; open "
                "the address the server printed, or start it with a token (--token)")
    origin = headers.get("origin")
    if method not in SAFE_METHODS and origin is not None and urlsplit(origin).netloc != host:
        return (f"a {method} from the page of {origin!r} is refused: only the annotator's own "
                f"page (http://{host}) may change labels")
    return None


def token_matches(given: str | None, expected: str) -> bool:
    return given is not None and secrets.compare_digest(given.encode(), expected.encode())


async def _send_error(send, status: int, message: str) -> None:
    body = json.dumps({"detail": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class GuardMiddleware:
    """ASGI middleware: refuses requests of other sites and, without a token, requests not
    addressed to loopback (403); checks the token (header or ?token=) on every request, and
    reads request bodies up to `max_body_bytes` (413 beyond) before the app sees them."""

    def __init__(self, app, token: str | None, max_body_bytes: int):
        self.app, self.token, self.max_body_bytes = app, token, max_body_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        refused = refusal(scope["method"], headers, self.token)
        if refused is not None:
            return await _send_error(send, 403, refused)
        if self.token is not None:
            given = headers.get(TOKEN_HEADER.lower()) or _query_token(scope)
            if not token_matches(given, self.token):
                return await _send_error(send, 401, "missing or wrong token: open the link "
                                         "the server printed (it carries ?token=...)")
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                return await _send_error(send, 400, f"Content-Length {length!r} is not a number")
            if int(length) > self.max_body_bytes:
                return await _send_error(send, 413, f"request body of {length} bytes is over "
                                         f"the {self.max_body_bytes}-byte limit")
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_body_bytes:
                return await _send_error(send, 413, "request body is over the "
                                         f"{self.max_body_bytes}-byte limit")
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)


def _query_token(scope) -> str | None:
    from urllib.parse import parse_qs

    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get(TOKEN_QUERY)
    return values[0] if values else None
