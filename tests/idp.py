"""A real OpenID Connect provider on loopback for the SSO tests: node-oidc-provider
(tests/oidc/provider.mjs, installed from the npm registry by scripts/services.sh)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from conftest import require_service
from tests.servers import ROOT, free_port, wait_for_http

OIDC_DIR = ROOT / "tests" / "oidc"
CLIENT_ID = "chat-tests"
CLIENT_SECRET = "chat-tests-client-secret-0123456789"


@dataclass
class IdentityProvider:
    issuer: str
    process: subprocess.Popen
    log_path: Path

    def app_env(self, *, button_label: str = "Log in with Test IdP") -> dict[str, str]:
        """The environment that points the app at this provider."""
        return {
            "OIDC_ISSUER": self.issuer,
            "OIDC_CLIENT_ID": CLIENT_ID,
            "OIDC_CLIENT_SECRET": CLIENT_SECRET,
            "OIDC_BUTTON_LABEL": button_label,
        }

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextlib.contextmanager
def identity_provider(
    *, redirect_uri: str, users: dict[str, dict], log_dir: Path
) -> Iterator[IdentityProvider]:
    """node-oidc-provider with one confidential client (redirecting to `redirect_uri`) and `users`
    ({login: {password, email, email_verified, name}})."""
    node = shutil.which("node")
    installed = (OIDC_DIR / "node_modules" / "oidc-provider" / "package.json").is_file()
    require_service(
        "the test identity provider (node and tests/oidc/node_modules: run make services)",
        bool(node and installed),
    )
    port = free_port()
    env = {
        **os.environ,
        "OIDC_TEST_PORT": str(port),
        "OIDC_TEST_CLIENT_ID": CLIENT_ID,
        "OIDC_TEST_CLIENT_SECRET": CLIENT_SECRET,
        "OIDC_TEST_REDIRECT_URI": redirect_uri,
        "OIDC_TEST_USERS": json.dumps(users),
    }
    log_path = log_dir / f"oidc-provider-{port}.log"
    with log_path.open("w") as log_file:
        process = subprocess.Popen(
            [node, str(OIDC_DIR / "provider.mjs")],
            cwd=OIDC_DIR,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        issuer = f"http://127.0.0.1:{port}"
        try:
            wait_for_http(f"{issuer}/.well-known/openid-configuration", process=process)
            yield IdentityProvider(issuer=issuer, process=process, log_path=log_path)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
