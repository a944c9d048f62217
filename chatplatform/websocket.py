"""The WebSocket middleware stack: channels' cookie, session and auth middleware,
without the session wrapper on every frame a socket sends.

channels' `SessionMiddleware` wraps `send` so that it can save the session on an
HTTP response start; for a socket that never comes, but the wrapper still reads
the lazy session on every message it passes (`modified`, `is_empty()`): on a
streaming process that was ~4 % of its CPU (docs/perf.md, round two's profile).
Here the session is resolved at connect exactly as channels does it, and the
socket's frames go out through the server's own `send`.
"""

from __future__ import annotations

from channels.auth import AuthMiddleware
from channels.sessions import CookieMiddleware, InstanceSessionWrapper, SessionMiddleware


class SocketSessionMiddleware(SessionMiddleware):
    async def __call__(self, scope, receive, send):
        if scope["type"] != "websocket":
            return await super().__call__(scope, receive, send)
        wrapper = InstanceSessionWrapper(scope, send)
        await wrapper.resolve_session()
        # A socket's messages are never one the session is saved on (http.response.start).
        return await self.inner(wrapper.scope, receive, send)


def SocketAuthMiddlewareStack(inner):
    """channels' AuthMiddlewareStack, with SocketSessionMiddleware."""
    return CookieMiddleware(SocketSessionMiddleware(AuthMiddleware(inner)))
