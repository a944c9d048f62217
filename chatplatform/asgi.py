"""The ASGI entry point: HTTP to Django; WebSockets through Origin and session checks.

The process's generation runtime is made here, with the application, and
started on the event loop by the first event of any kind (a health probe
will do, so a restarted process sweeps a dead one's replies at once) or by
the ASGI lifespan startup; it drains on shutdown: the lifespan shutdown, or,
under daphne, the reactor's shutdown (conversations/generation/runtime.py).
"""

import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatplatform.settings")
django_asgi_app = get_asgi_application()  # sets Django up before the imports below

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from chatplatform.websocket import SocketAuthMiddlewareStack  # noqa: E402
from conversations.generation import get_runtime  # noqa: E402
from conversations.routing import websocket_urlpatterns  # noqa: E402


class WithRuntime:
    """Start the runtime before the first event; run the ASGI lifespan protocol for it."""

    def __init__(self, app, runtime) -> None:
        self.app = app
        self.runtime = runtime

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            return await self.lifespan(receive, send)
        await self.runtime.ensure_started()
        return await self.app(scope, receive, send)

    async def lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.runtime.ensure_started()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.runtime.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return


def freeze_startup_heap() -> None:
    """Leave what start-up made (Django, the apps, every module: ~160,000 objects) out
    of the garbage collector's full passes: it lives as long as the process, and
    every full collection walked it with the event loop stopped, 80-120 ms under
    load; ~10-25 ms once frozen (docs/perf.md, round five). Garbage is collected
    first, so nothing unreachable is kept."""
    gc.collect()
    gc.freeze()


runtime = get_runtime()
application = WithRuntime(
    ProtocolTypeRouter(
        {
            "http": django_asgi_app,
            "websocket": AllowedHostsOriginValidator(
                SocketAuthMiddlewareStack(URLRouter(websocket_urlpatterns))
            ),
        }
    ),
    runtime,
)
freeze_startup_heap()
