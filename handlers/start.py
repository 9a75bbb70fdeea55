"""/start (with deep links), /help, /privacy and the main menu."""

from __future__ import annotations

from telegram import Update
from telegram.ext import Application, CommandHandler, filters

from bot import callbacks as cb
from bot.context import BotContext
from domain import items as item_service
from domain import sessions as session_service
from handlers import goals, items, sessions
from handlers.common import (
    Keyboard,
    button,
    label,
    menu_keyboard,
    on_callback,
    render,
    show,
)

PRIVATE = filters.ChatType.PRIVATE


def main_menu_keyboard(context: BotContext) -> Keyboard:
    return [
        [
            button(label(context, "menu_sessions"), cb.SESSIONS.build(page=0)),
            button(label(context, "menu_items"), cb.ITEMS_MENU.build()),
        ],
        [
            button(label(context, "menu_goals"), cb.GOALS.build(page=0)),
            button(label(context, "menu_my_items"), cb.MY_ITEMS.build(page=0)),
        ],
        [button(label(context, "menu_settings"), cb.SETTINGS.build())],
    ]


async def show_main_menu(update: Update, context: BotContext, *, new: bool = False) -> None:
    await show(update, context, render(context, "main_menu"), main_menu_keyboard(context), new=new)


async def start(update: Update, context: BotContext) -> None:
    payload = context.args[0] if context.args else ""
    new_resident = context.resident.is_new
    if payload:
        if new_resident:
            # First contact through a shared link: greet (with the privacy notice) first.
            await show(
                update,
                context,
                render(context, "start", new_resident=True),
                main_menu_keyboard(context),
            )
        if await open_deep_link(update, context, payload):
            return
        await show(
            update, context, render(context, "deep_link_unknown"), main_menu_keyboard(context)
        )
        return
    await show(
        update,
        context,
        render(context, "start", new_resident=new_resident),
        main_menu_keyboard(context),
    )


async def open_deep_link(update: Update, context: BotContext, payload: str) -> bool:
    """Open the item, session or goal a `/start item_TD-07` link points at. False if
    unknown."""
    match = cb.DEEP_LINK.match(payload)
    if match is None:
        return False
    if match["kind"] == "goal":
        return await goals.open_goal_key(update, context, match["key"])
    if match["kind"] == "item":
        item_id = await item_service.item_id_for_key(context.uow, match["key"])
        if item_id is None:
            return False
        await items.show_item(update, context, item_id, "H", new=True)
        return True
    session_id = await session_service.session_id_for_key(context.uow, match["key"])
    if session_id is None:
        return False
    await sessions.show_session(update, context, session_id, new=True)
    return True


async def menu_command(update: Update, context: BotContext) -> None:
    await show_main_menu(update, context, new=True)


async def menu_button(update: Update, context: BotContext, args: cb.Args) -> None:
    await show_main_menu(update, context)


async def help_command(update: Update, context: BotContext) -> None:
    await show(
        update,
        context,
        render(context, "help", is_moderator=context.is_moderator, is_admin=context.is_admin),
        menu_keyboard(context),
    )


async def privacy_command(update: Update, context: BotContext) -> None:
    settings = context.services.settings
    await show(
        update,
        context,
        render(
            context,
            "privacy",
            controller=settings.privacy_controller,
            contact=settings.privacy_contact,
            months=settings.inactivity_delete_months,
            grace_days=settings.inactivity_grace_days,
        ),
        menu_keyboard(context),
    )


async def noop(update: Update, context: BotContext, args: cb.Args) -> None:
    """The page counter between ‹ and ›: nothing to do, but the press is answered."""


def register(app: Application) -> None:  # type: ignore[type-arg]
    app.add_handler(CommandHandler("start", start, filters=PRIVATE))
    app.add_handler(CommandHandler("menu", menu_command, filters=PRIVATE))
    app.add_handler(CommandHandler("help", help_command, filters=PRIVATE))
    app.add_handler(CommandHandler("privacy", privacy_command, filters=PRIVATE))
    app.add_handler(on_callback(cb.MENU, menu_button))
    app.add_handler(on_callback(cb.NOOP, noop))
