"""The application factory: wires settings, database, templates and handlers together."""

from __future__ import annotations

import gc
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from telegram import Bot, BotCommand, BotCommandScopeChat
from telegram.error import TelegramError
from telegram.ext import Application, ApplicationBuilder, ContextTypes

from bot.context import BotContext, Services
from bot.delivery.service import Delivery
from bot.metrics import MeteredRequest, Metrics
from bot.processor import ArrivalQueue, ClaimsAhead, ResidentOrderedProcessor
from bot.rendering import Renderer
from bot.settings import Settings
from domain import staff as staff_service
from domain.text import DEFAULT_LANGUAGE, LANGUAGES
from handlers import register_all
from storage.uow import Database

log = logging.getLogger(__name__)

RESIDENT_COMMANDS = (
    "start",
    "menu",
    "search",
    "myitems",
    "goals",
    "propose",
    "settings",
    "language",
    "privacy",
    "mydata",
    "deleteme",
    "help",
    "subscribe",
    "unsubscribe",
    "cancel",
)
MODERATOR_COMMANDS = (
    "queue",
    "unban",
    "status",
    "goal",
    "progress",
    "helpers",
    "broadcast",
    "digest",
    "stats",
    "export",
    "audit",
)
ADMIN_COMMANDS = ("mod",)
#: In the moderators' group only the queue works (the rest is done in private chats).
GROUP_COMMANDS = ("queue",)
ALLOWED_UPDATES = ["message", "edited_message", "callback_query", "my_chat_member"]
PRUNE_EVERY = 6 * 3600.0


#: The cyclic garbage collector's thresholds while the bot runs (Python's are 700, 10, 10).
#: Handling an update allocates thousands of short-lived objects (python-telegram-bot's,
#: SQLAlchemy's, Jinja's), so with the defaults a young collection ran every few updates
#: and an old one, walking every object of the process, every few hundred. Measured with
#: the update benchmark (SQLite, best of two runs each): CPU per update 3.70 ms with the
#: defaults, 3.39 with a young generation of 50,000 and 2.96 with 10,000. 50,000 also
#: cost 13 MB during a 200,000-recipient broadcast (145 MB against 132, `python -m
#: benchmarks.memory`); 10,000 costs 1 MB (133).
GC_THRESHOLDS = (10_000, 20, 100)


def tune_garbage_collector() -> None:
    """Once everything is imported and built, before the first update: what exists now
    lives as long as the process, so the collector stops walking it (`gc.freeze`), and
    collections run less often (GC_THRESHOLDS). Reference counting frees almost
    everything anyway; the collector is only for cycles."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def build_application(
    settings: Settings,
    database: Database,
    *,
    renderer: Renderer | None = None,
    on_update_done: Callable[[object], Awaitable[None] | None] | None = None,
    webhook: bool = False,
) -> Application:  # type: ignore[type-arg]
    """The bot. `webhook`: without an Updater (bot/web.py feeds it the updates)."""
    token = settings.require_token()
    processor = ResidentOrderedProcessor(
        settings.update_concurrency, database, on_update_done, across_processes=webhook
    )
    metrics = Metrics()
    processor.metrics = metrics
    builder = ApplicationBuilder().request(MeteredRequest(metrics, connection_pool_size=256))
    if webhook:
        builder = builder.updater(None)
    else:
        builder = builder.get_updates_request(MeteredRequest(metrics, connection_pool_size=1))
        processor.claims_ahead = ClaimsAhead()
        builder = builder.update_queue(ArrivalQueue(processor.claims_ahead))
    app = (
        builder.token(token)
        .base_url(f"{settings.telegram_api_url}/bot")
        .base_file_url(f"{settings.telegram_api_url}/file/bot")
        .context_types(ContextTypes(context=BotContext))
        .concurrent_updates(processor)
        .post_init(_post_init)
        .post_stop(_post_stop)
        .build()
    )
    renderer = renderer or Renderer(settings.tz)
    delivery = Delivery(settings, database, renderer)
    delivery.api_observer = lambda method, code: metrics.api_call("sender", method, code)
    app.bot_data["metrics"] = metrics
    app.bot_data["services"] = Services(settings, database, renderer, delivery)
    register_all(app)
    return app


async def _post_init(app: Application) -> None:  # type: ignore[type-arg]
    services: Services = app.bot_data["services"]
    services.renderer.warm_up()
    await configure_bot_profile(app)
    if services.delivery is not None:
        await services.delivery.start(app, run=services.settings.role == "all")
    await _forget_old_update_ids(app)
    if app.job_queue is not None:
        app.job_queue.run_repeating(
            _forget_old_update_ids, interval=PRUNE_EVERY, first=PRUNE_EVERY, name="prune-updates"
        )
    if app.updater is not None and services.settings.http_port is not None:
        # Polling mode: /healthz and /metrics on HTTP_PORT (webhook mode serves them itself).
        from bot.web import WebServer, create_web_app

        server = WebServer(
            create_web_app(app, mode="polling"),
            services.settings.webhook_listen,
            services.settings.http_port,
        )
        await server.start()
        app.bot_data["http_server"] = server
        log.info("health and metrics on port %s", server.port)


async def _forget_old_update_ids(app_or_context: Any) -> None:
    """processed_updates keeps a week of update ids (on start and every few hours)."""
    app = getattr(app_or_context, "application", app_or_context)
    processor = app.update_processor
    if isinstance(processor, ResidentOrderedProcessor):
        try:
            removed = await processor.prune()
        except Exception as exc:
            log.warning("could not prune processed_updates: %s", type(exc).__name__)
            return
        if removed:
            log.info("forgot %s old update ids", removed)


async def _post_stop(app: Application) -> None:  # type: ignore[type-arg]
    server = app.bot_data.pop("http_server", None)
    if server is not None:
        await server.stop()
    services: Services = app.bot_data["services"]
    if services.delivery is not None:
        await services.delivery.stop()


def staff_commands(renderer: Renderer, language: str, role: str) -> list[BotCommand]:
    """The command menu of a moderator (admins also get /mod)."""
    names: tuple[str, ...] = RESIDENT_COMMANDS + MODERATOR_COMMANDS
    if role == staff_service.ADMIN:
        names += ADMIN_COMMANDS
    return _commands(renderer, language, names)


def _commands(renderer: Renderer, language: str, names: tuple[str, ...]) -> list[BotCommand]:
    return [BotCommand(name, renderer.label(language, "cmd_" + name, limit=256)) for name in names]


async def _optional(what: str, call: Awaitable[object]) -> None:
    """Profile calls may be refused (rate limits, permissions): log and go on."""
    try:
        await call
    except TelegramError as exc:
        log.warning("optional Bot API call refused (%s): %s", what, exc)


async def set_staff_menu(bot: Bot, renderer: Renderer, telegram_id: int, role: str | None) -> None:
    """Give one person the command menu of their role in their private chat, in every
    language (after /mod add), or take it away (role None: they see the residents' menu)."""
    scope = BotCommandScopeChat(telegram_id)
    for language in LANGUAGES:
        code = None if language == "en" else language
        if role is None:
            await _optional(
                "deleteMyCommands staff", bot.delete_my_commands(scope=scope, language_code=code)
            )
        else:
            await _optional(
                "setMyCommands staff",
                bot.set_my_commands(
                    staff_commands(renderer, language, role), scope=scope, language_code=code
                ),
            )


async def configure_bot_profile(app: Application) -> None:  # type: ignore[type-arg]
    """Command menus per role and language, descriptions. None of it may stop start-up."""
    services: Services = app.bot_data["services"]
    renderer, settings, bot = services.renderer, services.settings, app.bot
    async with services.database.uow() as uow:
        members = await staff_service.staff(uow, settings.admin_ids)
    for language in LANGUAGES:
        # Telegram shows the list for the user's app language; all others get the default,
        # which is English (German speakers get German through language_code "de").
        code = None if language == "en" else language
        await _optional(
            "setMyCommands",
            bot.set_my_commands(
                _commands(renderer, language, RESIDENT_COMMANDS), language_code=code
            ),
        )
        await _optional(
            "setMyDescription",
            bot.set_my_description(
                renderer.label(language, "bot_description", limit=512), language_code=code
            ),
        )
        await _optional(
            "setMyShortDescription",
            bot.set_my_short_description(
                renderer.label(language, "bot_short_description", limit=120), language_code=code
            ),
        )
        for member, role in sorted(members.items()):
            await _optional(
                "setMyCommands staff",
                bot.set_my_commands(
                    staff_commands(renderer, language, role),
                    scope=BotCommandScopeChat(member),
                    language_code=code,
                ),
            )
    if settings.moderation_chat_id is not None:
        await _optional(
            "setMyCommands moderation chat",
            bot.set_my_commands(
                _commands(renderer, DEFAULT_LANGUAGE, GROUP_COMMANDS),
                scope=BotCommandScopeChat(settings.moderation_chat_id),
            ),
        )
