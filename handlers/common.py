"""Small Telegram helpers shared by the feature handlers: show a screen (edit the current
message when navigating), answer callback queries exactly once, build keyboards."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from telegram import (
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    LinkPreviewOptions,
    Message,
    Update,
)
from telegram.constants import ParseMode
from telegram.error import BadRequest
from telegram.ext import CallbackQueryHandler

from bot import callbacks as cb
from bot.context import BotContext
from bot.telegram_text import ANSWER_LIMIT, shorten
from domain.staff import Actor
from domain.views import Page

log = logging.getLogger(__name__)

Keyboard = list[list[InlineKeyboardButton]]
NO_PREVIEW = LinkPreviewOptions(is_disabled=True)
BUTTON_TEXT_LIMIT = 64


def button(text: str, data: str) -> InlineKeyboardButton:
    return InlineKeyboardButton(shorten(text, BUTTON_TEXT_LIMIT), callback_data=data)


def url_button(text: str, url: str) -> InlineKeyboardButton:
    return InlineKeyboardButton(shorten(text, BUTTON_TEXT_LIMIT), url=url)


def label(context: BotContext, name: str, *args: Any) -> str:
    return context.renderer.label(context.lang, name, *args)


def render(context: BotContext, name: str, **values: Any) -> str:
    return context.renderer.render(name, context.lang, **values)


def pager(
    context: BotContext, page: Page[Any], data: Callable[[int], str]
) -> list[InlineKeyboardButton]:
    """‹ 2/5 › navigation row; empty when everything fits on one page."""
    if page.pages <= 1:
        return []
    row = []
    if page.has_prev:
        row.append(button(label(context, "prev"), data(page.page - 1)))
    row.append(button(label(context, "page", page.page + 1, page.pages), cb.NOOP.build()))
    if page.has_next:
        row.append(button(label(context, "next"), data(page.page + 1)))
    return row


async def show(
    update: Update,
    context: BotContext,
    text: str,
    keyboard: Sequence[Sequence[InlineKeyboardButton]] | None = None,
    *,
    new: bool = False,
) -> Message | None:
    """Show a screen: edit the message whose button was pressed, or send a new message.
    A press not answered yet is answered at the same time: one round trip to Telegram
    instead of two in a row (a handler with a note to show answers before it shows)."""
    await context.uow.end_reads()  # no transaction stays open across the network call
    if update.callback_query is not None and not context.scope.extra.get("answered"):
        shown, _ = await asyncio.gather(
            _show(update, context, text, keyboard, new=new), answer(update, context)
        )
        return shown
    return await _show(update, context, text, keyboard, new=new)


async def _show(
    update: Update,
    context: BotContext,
    text: str,
    keyboard: Sequence[Sequence[InlineKeyboardButton]] | None,
    *,
    new: bool,
) -> Message | None:
    markup = InlineKeyboardMarkup(keyboard) if keyboard else None
    query = update.callback_query
    if query is not None and query.message is not None and not new:
        try:
            result = await query.edit_message_text(
                text,
                parse_mode=ParseMode.HTML,
                reply_markup=markup,
                link_preview_options=NO_PREVIEW,
            )
            return result if isinstance(result, Message) else None
        except BadRequest as exc:
            reason = exc.message.lower()
            if "not modified" in reason:
                return None
            if "not found" not in reason and "can't be edited" not in reason:
                raise
            # The message is gone or too old to edit: send the screen anew.
    chat = update.effective_chat
    if chat is None:
        return None
    return await context.bot.send_message(
        chat.id,
        text,
        parse_mode=ParseMode.HTML,
        reply_markup=markup,
        link_preview_options=NO_PREVIEW,
    )


def actor(update: Update) -> Actor:
    """The staff member behind this update, for "decided by" and the audit log."""
    user = update.effective_user
    assert user is not None
    return Actor(user.id, f"@{user.username}" if user.username else user.full_name)


def menu_keyboard(context: BotContext) -> Keyboard:
    """Just the way back to the main menu."""
    return [[button(label(context, "main_menu"), cb.MENU.build())]]


async def show_notice(
    update: Update, context: BotContext, template: str, *, new: bool = False, **values: Any
) -> None:
    """A short message (not found, hints, ...) with the way back to the main menu."""
    await show(
        update, context, render(context, template, **values), menu_keyboard(context), new=new
    )


async def answer(
    update: Update, context: BotContext, text: str | None = None, *, alert: bool = False
) -> None:
    """Answer the callback query (once): stops the spinner, optionally with a short note."""
    query = update.callback_query
    if query is None or context.scope.extra.get("answered"):
        return
    context.scope.extra["answered"] = True
    try:
        await query.answer(shorten(text, ANSWER_LIMIT) if text else None, show_alert=alert)
    except BadRequest as exc:
        # A replayed or late update: the query was answered already or has expired. The
        # press is still handled; there is just no spinner left to stop.
        reason = exc.message.lower()
        if "query is too old" not in reason and "query id is invalid" not in reason:
            raise
        log.info("callback query not answered: %s", exc.message)


CallbackFn = Callable[[Update, BotContext, cb.Args], Awaitable[None]]


def on_callback(route: cb.Route, fn: CallbackFn) -> CallbackQueryHandler[BotContext, None]:
    """A handler for one callback route: parses the data strictly and answers the query
    when the handler did not."""

    async def handle(update: Update, context: BotContext) -> None:
        query = update.callback_query
        assert query is not None
        args = route.parse(query.data)
        if args is None:  # pattern matched, so this cannot happen; be safe anyway
            await answer(update, context, label(context, "stale_button"))
            return
        await fn(update, context, args)
        await answer(update, context)

    return CallbackQueryHandler(handle, pattern=route.regex)
