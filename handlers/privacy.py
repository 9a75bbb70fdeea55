"""/mydata (everything stored about the resident, as a JSON file) and /deleteme (delete the
account, with or without the comments)."""

from __future__ import annotations

from telegram import InputFile, Update
from telegram.ext import Application, CommandHandler, filters

from bot import callbacks as cb
from bot.context import BotContext
from domain import privacy as privacy_service
from handlers.common import button, label, on_callback, render, show
from storage.models import utcnow

PRIVATE = filters.ChatType.PRIVATE
#: Delete the account: keep=1 keeps the comments as "deleted account", keep=0 deletes them.
DELETE_ACCOUNT = cb.Route("dme", ("keep", r"[01]"))


async def mydata_command(update: Update, context: BotContext) -> None:
    data = await privacy_service.my_data(context.uow, context.resident.id, utcnow())
    await context.uow.end_reads()
    chat = update.effective_chat
    if data is None or chat is None:
        return
    await context.bot.send_document(
        chat.id,
        InputFile(privacy_service.to_json_bytes(data), filename="my-data.json"),
        caption=label(context, "mydata_caption"),
    )


async def deleteme_command(update: Update, context: BotContext) -> None:
    keyboard = [
        [button(label(context, "delete_keep_comments"), DELETE_ACCOUNT.build(keep=1))],
        [button(label(context, "delete_with_comments"), DELETE_ACCOUNT.build(keep=0))],
        [button(label(context, "cancel"), cb.MENU.build())],
    ]
    await show(update, context, render(context, "deleteme"), keyboard, new=True)


async def delete_account(update: Update, context: BotContext, args: cb.Args) -> None:
    keep = args.flag("keep")
    language = context.lang
    await privacy_service.delete_account(context.uow, context.resident.id, keep_comments=keep)
    text = context.renderer.render("deleted", language, keep_comments=keep)
    await show(update, context, text)


def register(app: Application) -> None:  # type: ignore[type-arg]
    app.add_handler(CommandHandler("mydata", mydata_command, filters=PRIVATE))
    app.add_handler(CommandHandler("deleteme", deleteme_command, filters=PRIVATE))
    app.add_handler(on_callback(DELETE_ACCOUNT, delete_account))
