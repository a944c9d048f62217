"""compose.yaml, the Dockerfile and .env.example agree with the settings (no Docker engine runs here)."""

from __future__ import annotations

import re
from pathlib import Path

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


def test_compose_has_the_three_services_on_llmnet():
    services = compose()["services"]
    assert set(services) == {"api", "postgres", "redis"}
    for service in services.values():
        assert service["networks"] == ["llmnet"]
    assert compose()["networks"]["llmnet"]["name"] == "llmnet"


def test_compose_images_and_ports():
    services = compose()["services"]
    assert services["postgres"]["image"] == "postgres:16-alpine"
    assert services["redis"]["image"] == "redis:7-alpine"
    assert services["api"]["ports"] == ["8001:8000"]
    assert services["redis"]["ports"] == ["6380:6379"]


def test_compose_health_checks_gate_the_api():
    services = compose()["services"]
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert services["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert services["api"]["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "redis": {"condition": "service_healthy"},
    }


def test_every_variable_compose_passes_is_one_the_settings_read():
    passed = set(compose()["services"]["api"]["environment"])
    assert passed <= settings_variables(), passed - settings_variables()


def test_env_example_documents_every_variable_the_settings_read():
    documented = set(re.findall(r"^([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))
    missing = settings_variables() - documented
    assert not missing, f"undocumented in .env.example: {sorted(missing)}"


def test_dockerfile_is_multi_stage_non_root_with_healthcheck_and_daphne():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", dockerfile, re.M)) >= 2
    assert re.search(r"^USER (?!root)\S+", dockerfile, re.M)
    assert "collectstatic" in dockerfile
    assert re.search(r"^HEALTHCHECK .*\n.*/health", dockerfile, re.M)
    assert "daphne" in dockerfile.split("CMD", 1)[1]
