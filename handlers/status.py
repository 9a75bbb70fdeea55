"""`/status KEY STATUS [note]`: moderators move an item along the pipeline."""

from __future__ import annotations

from telegram import Update
from telegram.ext import Application, CommandHandler, filters

from bot.context import BotContext
from domain import pipeline
from handlers.common import actor, render, show
from storage.models import ITEM_STATUSES


async def status_command(update: Update, context: BotContext) -> None:
    if not context.is_moderator:
        await show(update, context, render(context, "not_allowed"))
        return
    args = list(context.args or [])
    if len(args) < 2:
        await show(update, context, render(context, "status_usage", statuses=ITEM_STATUSES))
        return
    key, status, rest = args[0], args[1], args[2:]
    merge_into = None
    if status.lower() == "merged" and rest:
        merge_into, rest = rest[0], rest[1:]
    change = await pipeline.change_status(
        context.uow, actor(update), key, status, " ".join(rest) or None, merge_into=merge_into
    )
    if change.problem is not None:
        await show(
            update,
            context,
            render(
                context,
                "status_problem",
                change=change,
                problem=change.problem.value,
                statuses=ITEM_STATUSES,
            ),
        )
        return
    await show(update, context, render(context, "status_changed", change=change))


def register(app: Application) -> None:  # type: ignore[type-arg]
    app.add_handler(CommandHandler("status", status_command, filters=filters.ChatType.PRIVATE))
