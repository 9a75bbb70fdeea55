"""My items: what the resident follows, supports or commented on."""

from __future__ import annotations

from telegram import Update
from telegram.ext import Application, CommandHandler, filters

from bot import callbacks as cb
from bot.context import BotContext
from domain import items as item_service
from handlers.common import Keyboard, button, label, on_callback, pager, render, show


async def show_my_items(
    update: Update, context: BotContext, page: int, *, new: bool = False
) -> None:
    result = await item_service.my_items(context.uow, context.resident.id, context.lang, page)
    origin = f"M{result.page}"
    keyboard: Keyboard = [
        [
            button(
                label(
                    context,
                    "my_item_button",
                    m.summary.key,
                    m.summary.title,
                    m.supporting,
                    m.following,
                    m.commented,
                ),
                cb.ITEM.build(iid=m.summary.id, origin=origin),
            )
        ]
        for m in result.entries
    ]
    nav = pager(context, result, lambda p: cb.MY_ITEMS.build(page=p))
    if nav:
        keyboard.append(nav)
    if not result.entries:
        keyboard.append([button(label(context, "menu_items"), cb.ITEMS_MENU.build())])
    keyboard.append([button(label(context, "main_menu"), cb.MENU.build())])
    await show(update, context, render(context, "my_items", page=result), keyboard, new=new)


async def my_items_button(update: Update, context: BotContext, args: cb.Args) -> None:
    await show_my_items(update, context, args.number("page"))


async def my_items_command(update: Update, context: BotContext) -> None:
    await show_my_items(update, context, 0, new=True)


def register(app: Application) -> None:  # type: ignore[type-arg]
    app.add_handler(CommandHandler("myitems", my_items_command, filters=filters.ChatType.PRIVATE))
    app.add_handler(on_callback(cb.MY_ITEMS, my_items_button))
