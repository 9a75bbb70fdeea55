"""Basic moderation: new comments go to the admins (or the moderators' group) with
Approve / Reject; the first decision wins; /queue lists what is pending."""

from __future__ import annotations

import logging

from telegram import InlineKeyboardMarkup, Update
from telegram.constants import ParseMode
from telegram.error import BadRequest, Forbidden, TelegramError
from telegram.ext import Application, CommandHandler, filters

from bot import callbacks as cb
from bot.context import BotContext
from domain import comments as comment_service
from domain import residents as resident_service
from domain import staff as staff_service
from domain.text import DEFAULT_LANGUAGE
from domain.views import CommentView
from handlers.common import (
    NO_PREVIEW,
    Keyboard,
    actor,
    answer,
    button,
    label,
    on_callback,
    render,
    show,
)

log = logging.getLogger(__name__)


def decision_keyboard(context: BotContext, language: str, comment_id: int) -> Keyboard:
    labels = context.renderer
    return [
        [
            button(
                labels.label(language, "approve"), cb.MODERATE.build(decision="a", cid=comment_id)
            ),
            button(
                labels.label(language, "reject"), cb.MODERATE.build(decision="r", cid=comment_id)
            ),
        ]
    ]


async def _targets(context: BotContext) -> dict[int, str]:
    """Chat id → language for everyone who reviews comments."""
    settings = context.services.settings
    if settings.moderation_chat_id is not None:
        return {settings.moderation_chat_id: DEFAULT_LANGUAGE}
    members = sorted(await staff_service.staff(context.uow, settings.admin_ids))
    languages = await resident_service.languages_of(context.uow, members)
    return {member: languages.get(member, DEFAULT_LANGUAGE) for member in members}


async def _send_for_review(
    context: BotContext, chat_id: int, language: str, comment: CommentView
) -> None:
    text = context.renderer.render("moderation_comment", language, comment=comment)
    await context.uow.end_reads()
    message = await context.bot.send_message(
        chat_id,
        text,
        parse_mode=ParseMode.HTML,
        link_preview_options=NO_PREVIEW,
        reply_markup=InlineKeyboardMarkup(decision_keyboard(context, language, comment.id)),
    )
    await comment_service.record_moderation_message(
        context.uow, comment.id, chat_id, message.message_id
    )


async def notify_moderators(context: BotContext, comment_id: int) -> None:
    """Send a new pending comment for review. A moderator who cannot be reached (never
    started the bot, blocked it) is skipped; the comment stays in /queue."""
    targets = await _targets(context)
    for chat_id, language in targets.items():
        comment = await comment_service.comment(context.uow, comment_id, language)
        if comment is None:
            return
        try:
            await _send_for_review(context, chat_id, language, comment)
        except (Forbidden, BadRequest) as exc:
            log.warning("cannot reach a moderation chat: %s", exc.message)
        except TelegramError as exc:
            log.warning("sending a comment for review failed: %s", exc)


async def _show_decided(
    context: BotContext, chat_id: int, message_id: int, language: str, comment_id: int
) -> None:
    comment = await comment_service.comment(context.uow, comment_id, language)
    if comment is None:
        return
    text = context.renderer.render("moderation_decided", language, comment=comment)
    await context.uow.end_reads()
    try:
        await context.bot.edit_message_text(
            text,
            chat_id=chat_id,
            message_id=message_id,
            parse_mode=ParseMode.HTML,
            link_preview_options=NO_PREVIEW,
        )
    except (BadRequest, Forbidden) as exc:
        log.info("moderation message not updated: %s", exc.message)


async def _tell_author(
    context: BotContext, telegram_id: int, language: str, comment_id: int
) -> None:
    comment = await comment_service.comment(context.uow, comment_id, language)
    if comment is None or comment.status == "pending":
        return
    name = "comment_approved" if comment.status == "approved" else "comment_rejected"
    text = context.renderer.render(name, language, comment=comment)
    keyboard = [
        [
            button(
                context.renderer.label(language, "open_item"),
                cb.ITEM.build(iid=comment.item_id, origin="H"),
            )
        ]
    ]
    await context.uow.end_reads()
    try:
        await context.bot.send_message(
            telegram_id,
            text,
            parse_mode=ParseMode.HTML,
            link_preview_options=NO_PREVIEW,
            reply_markup=InlineKeyboardMarkup(keyboard),
        )
    except Forbidden:
        await resident_service.mark_blocked(context.uow, telegram_id)
    except TelegramError as exc:
        log.warning("telling the author about a decision failed: %s", exc)


async def decide_button(update: Update, context: BotContext, args: cb.Args) -> None:
    user = update.effective_user
    if user is None or not context.is_moderator:
        await answer(update, context, label(context, "not_allowed"), alert=True)
        return
    comment_id = args.number("cid")
    decision = await comment_service.decide(
        context.uow,
        comment_id,
        args.text("decision") == "a",
        user.id,
        actor(update).name,
        context.lang,
    )
    if decision is None:
        await answer(update, context, label(context, "stale_button"), alert=True)
        return
    if not decision.won:
        await answer(
            update,
            context,
            label(
                context,
                "already_decided",
                decision.comment.status,
                decision.comment.decided_by or "",
            ),
            alert=True,
        )
        query = update.callback_query
        if query is not None and query.message is not None:
            await _show_decided(
                context, query.message.chat.id, query.message.message_id, context.lang, comment_id
            )
        return
    await answer(update, context, label(context, "decided", decision.comment.status))
    targets = await _targets(context)
    for chat_id, message_id in await comment_service.moderation_messages(context.uow, comment_id):
        await _show_decided(
            context, chat_id, message_id, targets.get(chat_id, context.lang), comment_id
        )
    if not decision.author_blocked:  # never write to someone who blocked the bot
        await _tell_author(
            context, decision.author_telegram_id, decision.author_language, comment_id
        )


async def queue_command(update: Update, context: BotContext) -> None:
    user, chat = update.effective_user, update.effective_chat
    if user is None or chat is None:
        return
    if not context.is_moderator:
        await show(update, context, render(context, "not_allowed"))
        return
    language = context.lang if chat.type == chat.PRIVATE else DEFAULT_LANGUAGE
    total, pending = await comment_service.pending_queue(context.uow, language)
    await show(
        update, context, context.renderer.render("queue", language, total=total, shown=len(pending))
    )
    for comment in pending:
        try:
            await _send_for_review(context, chat.id, language, comment)
        except TelegramError as exc:
            log.warning("listing the queue failed: %s", exc)
            break


def register(app: Application) -> None:  # type: ignore[type-arg]
    app.add_handler(
        CommandHandler(
            "queue", queue_command, filters=filters.ChatType.PRIVATE | filters.ChatType.GROUPS
        )
    )
    app.add_handler(on_callback(cb.MODERATE, decide_button))
