"""compose.yaml, the Dockerfile and .env.example agree with the settings (no Docker engine runs here)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = (ROOT / "chatplatform" / "settings.py").read_text()


def settings_variables() -> set[str]:
    """Every environment variable settings.py reads."""
    typed = re.findall(r'env(?:\.\w+)?\(\s*"([A-Z][A-Z0-9_]+)"', SETTINGS)
    raw = re.findall(r'os\.environ(?:\.get)?[\(\[]"([A-Z][A-Z0-9_]+)"', SETTINGS)
    composed = re.findall(r'"(POSTGRES_[A-Z]+)"', SETTINGS)
    return (set(typed) | set(raw) | set(composed)) - {"CHATPLATFORM_IGNORE_DOTENV"}


def compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def interpolate(value: str, variables: dict[str, str]) -> str:
    """compose's own interpolation, as far as compose.yaml uses it: ${NAME:-default},
    ${NAME:?error} and $$ for a literal dollar."""

    def one(match: re.Match) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        if variables.get(name):
            return variables[name]
        if op == ":?":
            raise KeyError(f"{name}: {arg}")
        return arg or ""

    return re.sub(r"\$\{([A-Z_][A-Z0-9_]*)(?:(:-|:\?)([^}]*))?\}", one, value).replace("$$", "$")


def test_compose_services_all_on_llmnet():
    services = compose()["services"]
    assert set(services) == {"nginx", "migrate", "web", "postgres", "redis"}
    for service in services.values():
        assert service["networks"] == ["llmnet"]
    assert compose()["networks"]["llmnet"]["name"] == "llmnet"


def test_compose_images():
    services = compose()["services"]
    assert services["postgres"]["image"] == "postgres:16-alpine"
    assert services["redis"]["image"] == "redis:7-alpine"
    assert services["nginx"]["image"].startswith("nginx:")
    assert services["web"]["build"] == services["migrate"]["build"] == "."


def test_compose_publishes_no_database_or_redis_port_beyond_loopback():
    services = compose()["services"]
    assert "ports" not in services["postgres"]
    for port in services["redis"].get("ports", []):
        # host_ip:host_port:container_port; a bare "6380:6379" would bind every interface.
        assert str(port).startswith("127.0.0.1:"), port
    # Only nginx is published; the web replicas are reached through it.
    assert "ports" not in services["web"] and "ports" not in services["migrate"]
    assert services["nginx"]["ports"] == ["8001:8080"]


def test_compose_redis_requires_the_password_the_app_is_given():
    services = compose()["services"]
    variables = {"REDIS_PASSWORD": "s3cret-hex", "SECRET_KEY": "k"}
    command = interpolate(" ".join(services["redis"]["command"]), variables)
    assert '--requirepass "$REDIS_PASSWORD"' in command
    assert interpolate(services["redis"]["environment"]["REDIS_PASSWORD"], variables) == "s3cret-hex"
    assert (
        interpolate(services["web"]["environment"]["REDIS_URL"], variables)
        == "redis://:s3cret-hex@redis:6379/0"
    )
    assert "REDISCLI_AUTH" in " ".join(services["redis"]["healthcheck"]["test"])
    # No password, no stack: compose refuses to start rather than run an open Redis.
    with pytest.raises(KeyError, match="REDIS_PASSWORD"):
        interpolate(services["redis"]["environment"]["REDIS_PASSWORD"], {})


def test_compose_migrations_run_once_before_web():
    services = compose()["services"]
    migrate, web = services["migrate"], services["web"]
    assert migrate["command"] == ["python", "manage.py", "migrate", "--noinput"]
    assert migrate["restart"] == "no"
    assert "deploy" not in migrate
    assert web["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    assert "migrate" not in " ".join(web["command"])
    # The image's own command serves; it no longer migrates in every replica.
    cmd = (ROOT / "Dockerfile").read_text().split("\nCMD", 1)[1]
    assert "migrate" not in cmd and "chatplatform.serve" in cmd


def test_compose_web_scales_behind_nginx():
    services = compose()["services"]
    assert services["web"]["deploy"]["replicas"] >= 2
    assert services["nginx"]["depends_on"]["web"] == {"condition": "service_healthy"}
    mounts = {v.split(":")[1]: v.split(":")[0] for v in services["nginx"]["volumes"]}
    assert mounts["/etc/nginx/chat.conf"] == "./deploy/nginx/chat.conf"
    assert mounts["/etc/nginx/conf.d/default.conf"] == "./deploy/nginx/compose.conf"
    wrapper = (ROOT / "deploy/nginx/compose.conf").read_text()
    assert "server web:8000;" in wrapper and "include /etc/nginx/chat.conf;" in wrapper
    assert "listen 8080;" in wrapper


def test_compose_health_checks_on_every_long_running_service():
    services = compose()["services"]
    for name, service in services.items():
        if service.get("restart") == "no":
            continue  # a one-shot: what depends on it waits for its exit code
        assert service["healthcheck"]["test"], name
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert "/health" in " ".join(services["web"]["healthcheck"]["test"])
    assert "/nginx-health" in " ".join(services["nginx"]["healthcheck"]["test"])
    assert services["web"]["depends_on"]["postgres"] == {"condition": "service_healthy"}
    assert services["web"]["depends_on"]["redis"] == {"condition": "service_healthy"}


def test_every_variable_compose_passes_is_one_the_settings_read():
    for name in ("web", "migrate"):
        passed = set(compose()["services"][name]["environment"])
        assert passed <= settings_variables(), passed - settings_variables()


def test_env_example_documents_every_variable_the_settings_read():
    documented = set(re.findall(r"^([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))
    missing = settings_variables() - documented
    assert not missing, f"undocumented in .env.example: {sorted(missing)}"


def test_dockerfile_is_multi_stage_non_root_with_healthcheck_and_the_launcher():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", dockerfile, re.M)) >= 2
    assert re.search(r"^USER (?!root)\S+", dockerfile, re.M)
    assert "collectstatic" in dockerfile
    assert re.search(r"^HEALTHCHECK .*\n.*/health", dockerfile, re.M)
    assert '"-m", "chatplatform.serve"' in dockerfile.split("\nCMD", 1)[1]  # daphne on uvloop


def test_operations_doc_shows_the_nginx_files_as_they_are():
    blocks = re.findall(r"```nginx\n(.*?)```", (ROOT / "docs/operations.md").read_text(), re.S)
    for name in ("chat.conf", "compose.conf"):
        assert (ROOT / "deploy/nginx" / name).read_text() in blocks, f"docs/operations.md shows an old {name}"
