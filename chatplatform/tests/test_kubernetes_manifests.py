"""deploy/kubernetes/: every manifest validates offline against the Kubernetes schemas,
and the Deployment's probes, ports, grace period and environment match the settings."""

from __future__ import annotations

import shlex
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from django.conf import settings
from django.test import Client, override_settings
from django.urls import resolve

from chatplatform.tests.test_deployment_files import ROOT, compose, settings_variables

K8S = ROOT / "deploy" / "kubernetes"
# The oldest release managed clusters still run, and the newest the package knows.
VERSIONS = ["1.29.0", kubernetes_validate.latest_version()]
MARGIN_SECONDS = 5


def manifests() -> list[Path]:
    return sorted(path for path in K8S.glob("*.yaml") if path.name != "kustomization.yaml")


def load(name: str) -> dict:
    return yaml.safe_load((K8S / name).read_text())


def web_pod() -> dict:
    return load("deployment.yaml")["spec"]["template"]


def web_container() -> dict:
    (container,) = web_pod()["spec"]["containers"]
    return container


def purge_pod() -> dict:
    return load("purge-cronjob.yaml")["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def every_container() -> list[dict]:
    pods = [web_pod()["spec"], load("migrate-job.yaml")["spec"]["template"]["spec"], purge_pod()]
    return [c for pod in pods for c in pod.get("initContainers", []) + pod["containers"]]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("path", manifests(), ids=lambda p: p.name)
def test_every_manifest_validates_against_the_kubernetes_schemas(path, version):
    documents = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert documents
    for document in documents:
        # strict: an unknown or misspelt field is an error, not silently ignored.
        kubernetes_validate.validate(document, version, strict=True)


def test_the_validator_rejects_a_misspelt_field():
    deployment = load("deployment.yaml")
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, VERSIONS[-1], strict=True)


def test_kustomization_lists_every_manifest_but_the_secret_template():
    kustomization = load("kustomization.yaml")
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in manifests()} - {"secret.example.yaml"}
    images = {c["image"].split(":")[0] for c in every_container()}
    assert images == {image["name"] for image in kustomization["images"]}


def test_every_variable_in_the_configmap_and_secret_is_one_the_settings_read():
    keys = set(load("configmap.yaml")["data"]) | set(load("secret.example.yaml")["stringData"])
    assert keys <= settings_variables(), keys - settings_variables()
    # What must stay secret is never in the ConfigMap.
    assert not {"SECRET_KEY", "DATABASE_URL", "REDIS_URL", "LLM_API_KEY"} & set(
        load("configmap.yaml")["data"]
    )


def test_the_pods_read_the_configmap_and_the_secret():
    config, secret = (
        load("configmap.yaml")["metadata"]["name"],
        load("secret.example.yaml")["metadata"]["name"],
    )
    for container in every_container():
        sources = container["envFrom"]
        assert {"configMapRef": {"name": config}} in sources, container["name"]
        assert {"secretRef": {"name": secret}} in sources, container["name"]


def test_probes_hit_health_and_health_deps_on_the_served_port():
    container = web_container()
    command = container["command"]
    port = int(command[command.index("--port") + 1])
    (named,) = container["ports"]
    assert (named["name"], named["containerPort"]) == ("http", port)
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["startupProbe"]["httpGet"]["path"] == "/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/deps"
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] == "http"
    assert resolve("/health").url_name == "health"
    assert resolve("/health/deps").url_name == "health-deps"
    service = load("service.yaml")["spec"]
    assert service["ports"][0]["targetPort"] == "http"
    assert service["selector"] == web_pod()["metadata"]["labels"]


@pytest.mark.django_db
def test_the_probe_request_passes_the_production_host_check_and_ssl_redirect():
    """The kubelet sends the probe's Host header over plain HTTP: Django must answer 200,
    neither 400 (host not allowed) nor 301 (redirect to https)."""
    config = load("configmap.yaml")["data"]
    probe = web_container()["livenessProbe"]["httpGet"]
    host = {h["name"]: h["value"] for h in probe["httpHeaders"]}["Host"]
    allowed = config["ALLOWED_HOSTS"].split(",")
    with override_settings(
        ALLOWED_HOSTS=allowed, SECURE_SSL_REDIRECT=config["SECURE_SSL_REDIRECT"] == "true"
    ):
        response = Client().get(probe["path"], HTTP_HOST=host)
        assert response.status_code == 200
        # The same host check refuses a host that is not listed: the test can fail.
        assert Client().get(probe["path"], HTTP_HOST="10.1.2.3:8000").status_code == 400


def test_the_grace_period_covers_prestop_and_the_runtimes_drain():
    pod = web_pod()["spec"]
    config = load("configmap.yaml")["data"]
    # The runtime's drain as the pods get it: the ConfigMap's value, else the settings' default.
    drain = float(config.get("CHAT_SHUTDOWN_GRACE_SECONDS", settings.CHAT_SHUTDOWN_GRACE_SECONDS))
    pre_stop = web_container()["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    # The kubelet counts preStop inside the grace period, then sends SIGTERM.
    assert pod["terminationGracePeriodSeconds"] >= float(pre_stop[1]) + drain + MARGIN_SECONDS
    # compose gives a web container the same drain.
    stop = compose()["services"]["web"]["stop_grace_period"]
    assert float(stop.rstrip("s")) >= drain + MARGIN_SECONDS


def test_containers_are_non_root_read_only_and_bounded():
    dockerfile_uid = int((ROOT / "Dockerfile").read_text().split("\nUSER ", 1)[1].split()[0])
    for pod in (web_pod()["spec"], load("migrate-job.yaml")["spec"]["template"]["spec"], purge_pod()):
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == dockerfile_uid
        assert pod["automountServiceAccountToken"] is False
    for container in every_container():
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True, container["name"]
        assert context["allowPrivilegeEscalation"] is False, container["name"]
        assert context["capabilities"]["drop"] == ["ALL"], container["name"]
        assert {"cpu", "memory"} <= set(container["resources"]["requests"]), container["name"]
        assert {"cpu", "memory"} <= set(container["resources"]["limits"]), container["name"]
        assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"], container["name"]


def test_the_commands_are_compose_commands():
    services = compose()["services"]
    assert web_container()["command"] == services["web"]["command"]
    (job,) = load("migrate-job.yaml")["spec"]["template"]["spec"]["containers"]
    assert job["command"] == services["migrate"]["command"]
    assert load("migrate-job.yaml")["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    # The web pods wait for the Job: `migrate --check` fails while a migration is unapplied.
    (wait,) = web_pod()["spec"]["initContainers"]
    assert "manage.py migrate --check" in shlex.join(wait["command"])


def test_ingress_keeps_websockets_and_streams_open():
    annotations = load("ingress.yaml")["metadata"]["annotations"]
    prefix = "nginx.ingress.kubernetes.io/"
    assert int(annotations[prefix + "proxy-read-timeout"]) >= 3600
    assert int(annotations[prefix + "proxy-send-timeout"]) >= 3600
    assert annotations[prefix + "proxy-buffering"] == "off"
    backend = load("ingress.yaml")["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": load("service.yaml")["metadata"]["name"], "port": {"name": "http"}}


def test_autoscaler_and_disruption_budget_target_the_web_pods():
    hpa, pdb = load("hpa.yaml")["spec"], load("pdb.yaml")["spec"]
    deployment = load("deployment.yaml")
    assert hpa["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert hpa["minReplicas"] >= 2
    assert pdb["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    assert pdb["maxUnavailable"] < hpa["minReplicas"]


def test_the_purge_runs_daily_and_alone_with_the_command_that_deletes():
    cron = load("purge-cronjob.yaml")["spec"]
    assert cron["concurrencyPolicy"] == "Forbid"
    (container,) = purge_pod()["containers"]
    assert container["command"] == ["python", "manage.py", "purge_old_conversations", "--yes"]
    from django.core.management import get_commands

    assert get_commands()["purge_old_conversations"] == "conversations"
