"""Messages that are not commands: the text the bot waits for (comment, search query,
display name), anything else gets a short hint."""

from __future__ import annotations

from telegram import Update
from telegram.ext import Application, MessageHandler, filters

from bot import callbacks as cb
from bot.context import BotContext
from domain import announcements
from domain import comments as comment_service
from domain import goal_admin as goal_admin_service
from domain import goals as goal_service
from domain import items as item_service
from domain import moderation as moderation_service
from domain import proposals as proposal_service
from handlers import (
    broadcast,
    comments,
    goal_admin,
    goals,
    moderation,
    proposals,
    search,
    settings,
)
from handlers.common import (
    button,
    label,
    render,
    show,
    show_notice,
)

PRIVATE = filters.ChatType.PRIVATE


async def on_text(update: Update, context: BotContext) -> None:
    message = update.effective_message
    text = message.text if message is not None else None
    if text is None:
        return
    awaiting = context.resident.awaiting
    if awaiting == comment_service.AWAITING_COMMENT:
        await comments.receive_text(update, context, text)
    elif awaiting == item_service.AWAITING_SEARCH:
        await search.receive_query(update, context, text)
    elif awaiting == settings.AWAITING_NAME:
        await settings.receive_name(update, context, text)
    elif awaiting in announcements.AWAITING:
        await broadcast.receive_text(update, context)
    elif awaiting in proposal_service.AWAITING:
        await proposals.receive_text(update, context, text)
    elif awaiting == moderation_service.AWAITING_REASON:
        await moderation.receive_reason(update, context, text)
    elif awaiting == goal_service.AWAITING_HELP:
        await goals.receive_help_note(update, context, text)
    elif awaiting in goal_admin_service.AWAITING:
        await goal_admin.receive_text(update, context, text)
    else:
        await show(
            update,
            context,
            render(context, "text_hint"),
            [
                [
                    button(label(context, "search"), cb.SEARCH_PROMPT.build()),
                    button(label(context, "main_menu"), cb.MENU.build()),
                ]
            ],
        )


async def on_other(update: Update, context: BotContext) -> None:
    """Stickers, photos, voice notes, …: we only understand text."""
    if context.resident.awaiting in announcements.AWAITING:
        await broadcast.receive_non_text(update, context)
        return
    if context.resident.awaiting in proposal_service.AWAITING:
        await proposals.receive_non_text(update, context)
        return
    if context.resident.awaiting == moderation_service.AWAITING_REASON:
        await moderation.receive_non_text(update, context)
        return
    if context.resident.awaiting == goal_service.AWAITING_HELP:
        await goals.receive_non_text(update, context)
        return
    if context.resident.awaiting in goal_admin_service.AWAITING:
        await goal_admin.receive_non_text(update, context)
        return
    if context.resident.awaiting is not None:
        await comments.receive_non_text(update, context)
        return
    await show_notice(update, context, "text_hint")


async def unknown_command(update: Update, context: BotContext) -> None:
    await show_notice(update, context, "unknown_command")


def register(app: Application) -> None:  # type: ignore[type-arg]
    app.add_handler(MessageHandler(PRIVATE & filters.TEXT & ~filters.COMMAND, on_text))
    app.add_handler(MessageHandler(PRIVATE & filters.COMMAND, unknown_command))
    app.add_handler(MessageHandler(PRIVATE & ~filters.TEXT & ~filters.StatusUpdate.ALL, on_other))
