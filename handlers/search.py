"""/search WORDS, the Search button, and result pages."""

from __future__ import annotations

from telegram import Update
from telegram.ext import Application, CommandHandler, filters

from bot import callbacks as cb
from bot.context import BotContext
from domain import items as item_service
from handlers.common import Keyboard, button, label, on_callback, pager, render, show
from handlers.items import item_buttons


async def show_results(
    update: Update, context: BotContext, query: str, page: int, *, new: bool = False
) -> None:
    result = await item_service.search(context.uow, context.lang, query, page)
    keyboard: Keyboard = item_buttons(context, result.entries, f"Q{result.page}")
    nav = pager(context, result, lambda p: cb.SEARCH.build(page=p))
    if nav:
        keyboard.append(nav)
    keyboard.append(
        [
            button(label(context, "new_search"), cb.SEARCH_PROMPT.build()),
            button(label(context, "main_menu"), cb.MENU.build()),
        ]
    )
    await show(
        update,
        context,
        render(context, "search_results", query=query, page=result),
        keyboard,
        new=new,
    )


async def run_search(update: Update, context: BotContext, text: str) -> None:
    query = await item_service.remember_search(context.uow, context.resident.id, text)
    await show_results(update, context, query, 0, new=True)


async def prompt(update: Update, context: BotContext, *, new: bool = False) -> None:
    await item_service.start_search(context.uow, context.resident.id)
    await show(
        update,
        context,
        render(context, "search_prompt"),
        [[button(label(context, "cancel"), cb.CANCEL.build())]],
        new=new,
    )


async def search_command(update: Update, context: BotContext) -> None:
    words = " ".join(context.args or [])
    if words.strip():
        await run_search(update, context, words)
    else:
        await prompt(update, context, new=True)


async def search_prompt_button(update: Update, context: BotContext, args: cb.Args) -> None:
    await prompt(update, context)


async def results_button(update: Update, context: BotContext, args: cb.Args) -> None:
    query = await item_service.last_search(context.uow, context.resident.id)
    if not query:
        await prompt(update, context)
        return
    await show_results(update, context, query, args.number("page"))


async def receive_query(update: Update, context: BotContext, text: str) -> None:
    """Plain text after choosing "Search"."""
    if await item_service.take_search(context.uow, context.resident.id):
        await run_search(update, context, text)


def register(app: Application) -> None:  # type: ignore[type-arg]
    app.add_handler(CommandHandler("search", search_command, filters=filters.ChatType.PRIVATE))
    app.add_handler(on_callback(cb.SEARCH_PROMPT, search_prompt_button))
    app.add_handler(on_callback(cb.SEARCH, results_button))
