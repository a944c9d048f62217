"""Run Debian's nginx on loopback with deploy/nginx/chat.conf in front of given upstreams.

The benchmark and the tests use the same file compose mounts: only the
upstream addresses and the listening port (the wrapper compose.conf holds in
compose) are written here.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.servers import ROOT, free_port

CHAT_CONF = ROOT / "deploy" / "nginx" / "chat.conf"


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (path for path in ("/usr/sbin/nginx",) if os.access(path, os.X_OK)), None
    )


def nginx_conf(*, prefix: Path, listen_port: int, upstreams: Sequence[str]) -> str:
    """A whole nginx.conf, every path inside `prefix`, that serves chat.conf."""
    servers = "\n".join(f"        server {address};" for address in upstreams)
    temp = "\n".join(
        f"    {kind}_temp_path {prefix / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    # As root, nginx's workers would drop to `nobody`, who cannot enter the test's directory.
    user = "user root;\n" if os.geteuid() == 0 else ""
    return f"""{user}worker_processes 1;
pid {prefix / "nginx.pid"};
error_log {prefix / "error.log"} notice;
events {{ worker_connections 1024; }}
http {{
    access_log {prefix / "access.log"};
{temp}
    upstream chat_backend {{
{servers}
        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{listen_port};
        server_name _;
        include {CHAT_CONF};
    }}
}}
"""


@dataclass
class Nginx:
    process: subprocess.Popen
    port: int
    prefix: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def error_log(self) -> str:
        path = self.prefix / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""


@contextlib.contextmanager
def nginx(*, upstreams: Sequence[str], prefix: Path, port: int | None = None) -> Iterator[Nginx]:
    """Debian's nginx in the foreground serving chat.conf; stopped (QUIT, then KILL) on exit."""
    binary = nginx_binary()
    if binary is None:
        raise RuntimeError("nginx is not installed (scripts/services.sh installs it)")
    port = port or free_port()
    prefix.mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    conf.write_text(nginx_conf(prefix=prefix, listen_port=port, upstreams=upstreams))
    command = [binary, "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"]
    subprocess.run([*command, "-t", "-q"], check=True, capture_output=True)
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    server = Nginx(process=process, port=port, prefix=prefix)
    try:
        deadline = time.monotonic() + 15
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"nginx exited with {process.returncode}: {server.error_log()}")
            try:
                with urllib.request.urlopen(f"{server.url}/nginx-health", timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield server
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
