"""/health, /metrics and the request context every response carries."""

from __future__ import annotations

import pytest


def test_health_is_exactly_status_and_app_env(client, settings):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "app_env": settings.APP_ENV}


@pytest.mark.django_db
def test_health_does_no_io(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        assert client.get("/health").status_code == 200


def test_health_refuses_post(client):
    assert client.post("/health").status_code == 405


def test_request_id_is_made_and_returned(client):
    response = client.get("/health")
    assert len(response["X-Request-ID"]) == 32


def test_request_id_from_the_caller_is_kept(client):
    response = client.get("/health", headers={"X-Request-ID": "lb-abc.123"})
    assert response["X-Request-ID"] == "lb-abc.123"


def test_malformed_request_id_is_replaced(client):
    response = client.get("/health", headers={"X-Request-ID": "bad id\nwith newline"})
    assert response["X-Request-ID"] != "bad id\nwith newline"
    assert len(response["X-Request-ID"]) == 32


def test_every_response_has_a_strict_content_security_policy(client):
    csp = client.get("/health")["Content-Security-Policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert "img-src 'self'" in csp


@pytest.mark.django_db
def test_metrics_serves_prometheus_text_with_request_counts(client):
    client.get("/health")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    body = response.content.decode()
    assert 'chat_http_requests_total{method="GET",status="200"}' in body
    assert "chat_websockets_open" in body
    assert "chat_time_to_first_token_seconds_bucket" in body or "chat_time_to_first_token_seconds" in body
