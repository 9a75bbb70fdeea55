"""Settings: language, display name (or pseudonym), weekly digest on/off."""

from __future__ import annotations

from telegram import Update
from telegram.ext import Application, CommandHandler, filters

from bot import callbacks as cb
from bot.context import BotContext
from domain import broadcasts as broadcast_service
from domain import residents as resident_service
from domain.residents import InvalidDisplayName
from domain.text import LANGUAGES
from handlers.common import Keyboard, answer, button, label, on_callback, render, show
from storage.models import DISPLAY_NAME_MAX, NOTIFY_MODES

AWAITING_NAME = "display_name"


async def _reload(context: BotContext) -> None:
    context.resident = await resident_service.reload(context.uow, context.resident)


async def show_settings(update: Update, context: BotContext, *, new: bool = False) -> None:
    resident = context.resident
    keyboard: Keyboard = [
        [button(label(context, "language_button"), cb.LANGUAGE_MENU.build())],
        [button(label(context, "name_button"), cb.NAME_PROMPT.build())],
        [
            button(
                label(context, "digest_button", not resident.digest_enabled),
                cb.DIGEST.build(on=0 if resident.digest_enabled else 1),
            )
        ],
        [button(label(context, "notify_button", resident.notify_mode), cb.NOTIFY_MENU.build())],
        [button(label(context, "main_menu"), cb.MENU.build())],
    ]
    await show(update, context, render(context, "settings", resident=resident), keyboard, new=new)


async def show_languages(update: Update, context: BotContext, *, new: bool = False) -> None:
    keyboard: Keyboard = [
        [
            button(
                label(context, "language_name", code, code == context.lang),
                cb.LANGUAGE.build(lang=code),
            )
            for code in LANGUAGES
        ],
        [button(label(context, "back"), cb.SETTINGS.build())],
    ]
    await show(update, context, render(context, "language_menu"), keyboard, new=new)


async def settings_command(update: Update, context: BotContext) -> None:
    await show_settings(update, context, new=True)


async def language_command(update: Update, context: BotContext) -> None:
    await show_languages(update, context, new=True)


async def settings_button(update: Update, context: BotContext, args: cb.Args) -> None:
    await show_settings(update, context)


async def language_menu_button(update: Update, context: BotContext, args: cb.Args) -> None:
    await show_languages(update, context)


async def language_button(update: Update, context: BotContext, args: cb.Args) -> None:
    if not await resident_service.set_language(context.uow, context.resident.id, args.text("lang")):
        await answer(update, context, label(context, "stale_button"))
        return
    await _reload(context)
    await answer(update, context, label(context, "language_set"))
    await show_settings(update, context)


async def digest_button(update: Update, context: BotContext, args: cb.Args) -> None:
    on = args.flag("on")
    await resident_service.set_digest(context.uow, context.resident.id, on)
    await _reload(context)
    await answer(update, context, label(context, "digest_set", on))
    await show_settings(update, context)


async def notify_menu_button(update: Update, context: BotContext, args: cb.Args) -> None:
    current = context.resident.notify_mode
    keyboard: Keyboard = [
        [button(label(context, "notify_choice", mode, mode == current), cb.NOTIFY.build(mode=mode))]
        for mode in NOTIFY_MODES
    ]
    keyboard.append([button(label(context, "back"), cb.SETTINGS.build())])
    await show(update, context, render(context, "notify_menu"), keyboard)


async def notify_button(update: Update, context: BotContext, args: cb.Args) -> None:
    await broadcast_service.set_notify_mode(context.uow, context.resident.id, args.text("mode"))
    await _reload(context)
    await answer(update, context, label(context, "notify_set"))
    await show_settings(update, context)


async def subscribe_command(update: Update, context: BotContext) -> None:
    await _set_digest_by_command(update, context, True)


async def unsubscribe_command(update: Update, context: BotContext) -> None:
    await _set_digest_by_command(update, context, False)


async def _set_digest_by_command(update: Update, context: BotContext, on: bool) -> None:
    await resident_service.set_digest(context.uow, context.resident.id, on)
    await _reload(context)
    await show(
        update,
        context,
        render(context, "digest_toggled", on=on),
        [[button(label(context, "menu_settings"), cb.SETTINGS.build())]],
    )


async def name_prompt_button(update: Update, context: BotContext, args: cb.Args) -> None:
    async with context.uow.write():
        await context.uow.conversations.set_awaiting(context.resident.id, AWAITING_NAME, {})
    keyboard: Keyboard = []
    if context.resident.author.display_name:
        keyboard.append([button(label(context, "use_pseudonym"), cb.NAME_CLEAR.build(clear="-"))])
    keyboard.append([button(label(context, "cancel"), cb.CANCEL.build())])
    await show(
        update,
        context,
        render(context, "name_prompt", resident=context.resident, limit=DISPLAY_NAME_MAX),
        keyboard,
    )


async def name_clear_button(update: Update, context: BotContext, args: cb.Args) -> None:
    await resident_service.set_display_name(context.uow, context.resident.id, None)
    await _reload(context)
    await answer(update, context, label(context, "name_cleared"))
    await show_settings(update, context)


async def receive_name(update: Update, context: BotContext, text: str) -> None:
    try:
        await resident_service.set_display_name(context.uow, context.resident.id, text)
    except InvalidDisplayName as exc:
        await show(
            update,
            context,
            render(context, "name_invalid", reason=exc.reason, limit=DISPLAY_NAME_MAX),
            [[button(label(context, "cancel"), cb.CANCEL.build())]],
        )
        return
    async with context.uow.write():
        await context.uow.conversations.take_awaiting(context.resident.id, AWAITING_NAME)
    await _reload(context)
    await show_settings(update, context, new=True)


def register(app: Application) -> None:  # type: ignore[type-arg]
    private = filters.ChatType.PRIVATE
    app.add_handler(CommandHandler("settings", settings_command, filters=private))
    app.add_handler(CommandHandler("language", language_command, filters=private))
    app.add_handler(CommandHandler("subscribe", subscribe_command, filters=private))
    app.add_handler(CommandHandler("unsubscribe", unsubscribe_command, filters=private))
    app.add_handler(on_callback(cb.NOTIFY_MENU, notify_menu_button))
    app.add_handler(on_callback(cb.NOTIFY, notify_button))
    app.add_handler(on_callback(cb.SETTINGS, settings_button))
    app.add_handler(on_callback(cb.LANGUAGE_MENU, language_menu_button))
    app.add_handler(on_callback(cb.LANGUAGE, language_button))
    app.add_handler(on_callback(cb.DIGEST, digest_button))
    app.add_handler(on_callback(cb.NAME_PROMPT, name_prompt_button))
    app.add_handler(on_callback(cb.NAME_CLEAR, name_clear_button))
