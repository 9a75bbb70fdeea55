# to:DO Bot — production image (the production issue extends this with compose and webhooks).
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
ENV DATABASE_URL=sqlite+aiosqlite:////home/todo/var/todo-bot.sqlite3 \
    PYTHONUNBUFFERED=1
VOLUME ["/home/todo/var"]
# Webhook mode (WEBHOOK_URL set): the webhook, /healthz and /metrics on WEBHOOK_PORT.
EXPOSE 8080
# `run` applies migrations before it starts polling.
CMD ["todo-bot", "run"]
