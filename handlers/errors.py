"""Nothing a resident sees is a stack trace: errors are logged (without personal data)
and answered with a short "please try again"."""

from __future__ import annotations

import logging

from telegram import Update
from telegram.constants import ChatType, ParseMode
from telegram.error import Forbidden, NetworkError, TelegramError
from telegram.ext import Application, CallbackQueryHandler

from bot.context import BotContext
from bot.processor import current_scope
from domain import residents as resident_service
from domain.text import language_for
from handlers.common import answer, label

log = logging.getLogger(__name__)


async def stale_button(update: Update, context: BotContext) -> None:
    """Callback data no route understands: an old keyboard or a forged press."""
    await answer(update, context, label(context, "stale_button"), alert=False)


async def on_error(update: object, context: BotContext) -> None:
    error = context.error
    if not isinstance(update, Update):
        log.error("error outside an update: %s", type(error).__name__, exc_info=error)
        return
    chat = update.effective_chat
    scope = current_scope.get()
    if scope is not None:
        scope.extra["failed"] = True  # the processor releases the update id (metrics: error)
        try:
            await scope.uow.session.rollback()
        except Exception as exc:  # the connection itself may be what failed
            log.warning("rollback after an error failed: %s", type(exc).__name__)
    if isinstance(error, Forbidden) and chat is not None and chat.type == ChatType.PRIVATE:
        # The resident blocked the bot: stop writing to them.
        if scope is not None:
            await resident_service.mark_blocked(scope.uow, chat.id)
            if update.callback_query is not None and not scope.extra.get("answered"):
                try:  # every press is answered, even if no message can follow
                    await answer(update, context)
                except TelegramError as exc:
                    log.info("could not answer the press: %s", type(exc).__name__)
        return
    log.error(
        "update %s failed: %s",
        update.update_id,
        type(error).__name__,
        exc_info=error if not isinstance(error, NetworkError) else None,
    )
    if scope is None:
        # Handling never got as far as the handlers (the database is down: the update could
        # not even be claimed), so nothing was written. Still no silence.
        await _tell_without_database(update, context)
        return
    try:
        if update.callback_query is not None and not scope.extra.get("answered"):
            await answer(update, context, label(context, "error_short"), alert=False)
        if chat is not None and chat.type == ChatType.PRIVATE:
            text = context.renderer.render("error", context.lang)
            await context.bot.send_message(chat.id, text, parse_mode=ParseMode.HTML)
    except TelegramError as exc:
        log.warning("could not tell the resident about the error: %s", type(exc).__name__)


async def _tell_without_database(update: Update, context: BotContext) -> None:
    """Tell the resident to try again without the database: the language from Telegram's
    user, the press answered directly (no update scope remembers whether it was)."""
    user = update.effective_user
    language = language_for(user.language_code if user is not None else None)
    chat = update.effective_chat
    if update.callback_query is not None:
        try:
            await update.callback_query.answer(context.renderer.label(language, "error_short"))
        except TelegramError as exc:
            log.info("could not answer the press: %s", type(exc).__name__)
    if chat is not None and chat.type == ChatType.PRIVATE:
        try:
            text = context.renderer.render("error", language)
            await context.bot.send_message(chat.id, text, parse_mode=ParseMode.HTML)
        except TelegramError as exc:
            log.warning("could not tell the resident about the error: %s", type(exc).__name__)


def register(app: Application) -> None:  # type: ignore[type-arg]
    # Last in group 0: only presses that no route before it understood arrive here.
    app.add_handler(CallbackQueryHandler(stale_button))
    app.add_error_handler(on_error)  # type: ignore[arg-type]
