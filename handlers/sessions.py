"""Sessions of the event week: list grouped by day, session card with recordings."""

from __future__ import annotations

from itertools import groupby

from telegram import Update
from telegram.ext import Application

from bot import callbacks as cb
from bot.context import BotContext
from domain import sessions as session_service
from handlers.common import (
    Keyboard,
    button,
    label,
    on_callback,
    pager,
    render,
    show,
    show_notice,
    url_button,
)


async def show_sessions(update: Update, context: BotContext, page: int) -> None:
    tz = context.services.settings.tz
    result = await session_service.list_sessions(context.uow, context.lang, page, tz)
    days = [
        (day, list(group))
        for day, group in groupby(result.entries, key=lambda s: s.starts_at.date())
    ]
    keyboard: Keyboard = [
        [button(label(context, "session_button", s.starts_at, s.title), cb.SESSION.build(sid=s.id))]
        for s in result.entries
    ]
    nav = pager(context, result, lambda p: cb.SESSIONS.build(page=p))
    if nav:
        keyboard.append(nav)
    keyboard.append([button(label(context, "main_menu"), cb.MENU.build())])
    await show(update, context, render(context, "sessions_list", page=result, days=days), keyboard)


async def show_session(
    update: Update, context: BotContext, session_id: int, *, new: bool = False
) -> None:
    tz = context.services.settings.tz
    card = await session_service.session_card(context.uow, session_id, context.lang, tz)
    if card is None:
        await show_notice(update, context, "session_not_found", new=new)
        return
    keyboard: Keyboard = [
        [url_button(label(context, "recording_button", r.title, r.duration_seconds), r.url)]
        for r in card.recordings
    ]
    origin = f"S{card.id}"
    keyboard += [
        [
            button(
                label(context, "item_button", i.key, i.title),
                cb.ITEM.build(iid=i.id, origin=origin),
            )
        ]
        for i in card.items
    ]
    page = await session_service.page_of_session(context.uow, card.id)
    keyboard.append(
        [
            button(label(context, "back"), cb.SESSIONS.build(page=page)),
            button(label(context, "main_menu"), cb.MENU.build()),
        ]
    )
    await show(update, context, render(context, "session_card", session=card), keyboard, new=new)


async def sessions_button(update: Update, context: BotContext, args: cb.Args) -> None:
    await show_sessions(update, context, args.number("page"))


async def session_button(update: Update, context: BotContext, args: cb.Args) -> None:
    await show_session(update, context, args.number("sid"))


def register(app: Application) -> None:  # type: ignore[type-arg]
    app.add_handler(on_callback(cb.SESSIONS, sessions_button))
    app.add_handler(on_callback(cb.SESSION, session_button))
