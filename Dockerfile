# to:DO Bot — production image (see "Docker" in README.md; compose.yaml runs workers, web replicas, nginx).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md alembic.ini ./
COPY bot bot
COPY domain domain
COPY handlers handlers
COPY storage storage
COPY templates templates
COPY data data
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 todo
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER todo
WORKDIR /home/todo
# Owned by todo, so a named volume mounted here is writable for the bot.
RUN mkdir -p /home/todo/var
ENV DATABASE_URL=sqlite+aiosqlite:////home/todo/var/todo-bot.sqlite3 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LOG_LEVEL=INFO \
    LOG_FORMAT=json \
    WEBHOOK_LISTEN=0.0.0.0 \
    WEBHOOK_PORT=8080
VOLUME ["/home/todo/var"]
# Webhook mode (WEBHOOK_URL set): the webhook, /healthz and /metrics on WEBHOOK_PORT.
# Workers and polling mode: /healthz and /metrics on HTTP_PORT (when set).
EXPOSE 8080
# /healthz on WEBHOOK_PORT (webhook mode) or HTTP_PORT (workers, polling); the image has no
# curl. Polling without HTTP_PORT has no endpoint to ask: healthy while it runs.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD python -c "import os, sys, urllib.request as r; e = os.environ; p = e.get('WEBHOOK_PORT', '8080') if e.get('WEBHOOK_URL') and e.get('ROLE') != 'worker' else e.get('HTTP_PORT'); sys.exit(0) if not p else r.urlopen(f'http://127.0.0.1:{p}/healthz', timeout=8)"
# `run` applies migrations (once, under a lock) before it starts; ROLE or --role picks the role.
CMD ["todo-bot", "run"]
