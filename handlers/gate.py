"""Runs first for every update: decides whether the bot handles it at all, and loads (or
creates) the resident behind it."""

from __future__ import annotations

import dataclasses
import logging
import time

from telegram import ChatMemberUpdated, Update
from telegram.constants import ChatMemberStatus, ChatType
from telegram.ext import Application, ApplicationHandlerStop, TypeHandler

from bot import callbacks as cb
from bot.context import BotContext
from domain import abuse
from domain import comments as comment_service
from domain import goals as goal_service
from domain import proposals as proposal_service
from domain import residents as resident_service
from domain import staff as staff_service
from handlers.common import answer, label
from storage.models import utcnow

log = logging.getLogger(__name__)

#: Buttons that belong to the prompt the bot is waiting on (pressing them keeps it).
KEEPS_PROMPT = (
    cb.CANCEL,
    cb.NAME_CLEAR,
    cb.NOOP,
    cb.BROADCAST_AUDIENCE,
    cb.BROADCAST_SEND,
    cb.BROADCAST_SCHEDULE,
    cb.BROADCAST_CONFIRM,
    cb.BROADCAST_STOP,
    cb.PROPOSAL_FIELD,
    cb.PROPOSAL_SEND,
    cb.NO_REASON,
    cb.GOAL_ADMIN_FIELD,
    cb.GOAL_ADMIN_CREATE,
)


def _in_moderation_chat(update: Update, context: BotContext) -> bool:
    """In the moderators' group only moderation commands and buttons are handled."""
    chat = update.effective_chat
    if chat is None or chat.id != context.services.settings.moderation_chat_id:
        return False
    if update.callback_query is not None:
        data = update.callback_query.data
        return any(
            route.parse(data) is not None
            for route in (cb.MODERATE, cb.MODERATE_PROPOSAL, cb.MODERATE_REPORTED)
        )
    message = update.message
    if message is None or not message.text:
        return False
    command = message.text.split()[0].split("@")[0].lower()
    return command == "/queue"


async def _chat_member(update: ChatMemberUpdated, context: BotContext) -> None:
    """The resident blocked (kicked) or restarted the bot in their private chat."""
    if update.chat.type != ChatType.PRIVATE:
        return
    status = update.new_chat_member.status
    if status in (ChatMemberStatus.BANNED, ChatMemberStatus.LEFT):
        await resident_service.mark_blocked(context.uow, update.chat.id)


async def gate(update: Update, context: BotContext) -> None:
    if update.my_chat_member is not None:
        await _chat_member(update.my_chat_member, context)
        raise ApplicationHandlerStop
    user, chat = update.effective_user, update.effective_chat
    if (
        user is None
        or chat is None
        or user.is_bot
        or update.edited_message is not None
        or update.channel_post is not None
        or update.edited_channel_post is not None
        or (update.message is None and update.callback_query is None)
    ):
        raise ApplicationHandlerStop
    if chat.type != ChatType.PRIVATE and not _in_moderation_chat(update, context):
        if update.callback_query is not None:
            await update.callback_query.answer()
        raise ApplicationHandlerStop
    admin_ids = context.services.settings.admin_ids
    if chat.type != ChatType.PRIVATE:
        role = await staff_service.role_of(context.uow, user.id, admin_ids)
        if not staff_service.can_moderate(role):
            # A non-moderator in the moderators' group: refused by the handler, not stored.
            return
        context.scope.role = role
    context.resident = await resident_service.enter(
        context.uow, user.id, user.language_code, context.services.today(), admin_ids
    )
    if chat.type == ChatType.PRIVATE and not context.is_moderator:
        await _refuse_over_limit(update, context)
    await _leave_prompt_when_navigating(update, context)


#: Buttons that change something: counted against ACTIONS_PER_MINUTE.
ACTION_ROUTES = (
    cb.SUPPORT,
    cb.FOLLOW,
    cb.COMMENT,
    cb.REPORT,
    cb.PROPOSE,
    cb.PROPOSAL_SEND,
    cb.GOAL_FOLLOW,
    cb.GOAL_HELP,
    cb.GOAL_HELP_SEND,
    cb.GOAL_HELP_WITHDRAW,
)
#: Prompts whose answer (a text) is stored: the text counts as an action.
ACTION_PROMPTS = (
    comment_service.AWAITING_COMMENT,
    goal_service.AWAITING_HELP,
    proposal_service.AWAITING_TITLE,
    proposal_service.AWAITING_DESCRIPTION,
)


def _classify(update: Update, awaiting: str | None) -> tuple[bool, str | None]:
    """(counts as a state-changing action, "comment"/"proposal" for the hourly limits)."""
    query = update.callback_query
    if query is not None:
        if cb.COMMENT.parse(query.data) is not None:
            return True, "comment"
        if cb.PROPOSE.parse(query.data) or cb.PROPOSAL_SEND.parse(query.data):
            return True, "proposal"
        return any(route.parse(query.data) for route in ACTION_ROUTES), None
    text = update.message.text if update.message else None
    if text and text.startswith("/"):
        command = text.split()[0].split("@")[0].lower()
        return (True, "proposal") if command == "/propose" else (False, None)
    if awaiting == comment_service.AWAITING_COMMENT:
        return True, "comment"
    return awaiting in ACTION_PROMPTS, None


async def _refuse_over_limit(update: Update, context: BotContext) -> None:
    """Refuse (and stop) a state-changing action beyond the resident's limits; other
    updates, e.g. a burst of page turns, pass."""
    is_action, kind = _classify(update, context.resident.awaiting)
    if not is_action:
        return
    settings = context.services.settings
    refused: abuse.Limited | None = None
    if kind is not None:
        limits = abuse.HourlyLimits(settings.comments_per_hour, settings.proposals_per_hour)
        refused = await abuse.hourly_refusal(
            context.uow, context.resident.id, kind, utcnow(), limits
        )
    if refused is None:
        window = context.application.bot_data.get("action_window")
        if not isinstance(window, abuse.SlidingWindow):
            window = abuse.SlidingWindow(settings.actions_per_minute, 60.0)
            context.application.bot_data["action_window"] = window
        if not window.allow(context.resident.id, time.monotonic()):
            refused = abuse.Limited.ACTIONS
    if refused is None:
        return
    limit = {
        abuse.Limited.ACTIONS: settings.actions_per_minute,
        abuse.Limited.COMMENTS: settings.comments_per_hour,
        abuse.Limited.PROPOSALS: settings.proposals_per_hour,
    }[refused]
    notice = label(context, f"limit_{refused.value}", limit)
    await context.uow.end_reads()
    if update.callback_query is not None:
        await answer(update, context, notice, alert=True)
    elif update.effective_chat is not None:
        await context.bot.send_message(update.effective_chat.id, notice)
    raise ApplicationHandlerStop


async def _leave_prompt_when_navigating(update: Update, context: BotContext) -> None:
    """A command or a button elsewhere ends "waiting for your comment": the next text should
    not land on an item the resident has left."""
    resident = context.resident
    if resident.awaiting is None:
        return
    query = update.callback_query
    if query is not None:
        if any(route.parse(query.data) for route in KEEPS_PROMPT):
            return
    else:
        text = update.message.text if update.message else None
        if not text or not text.startswith("/") or text.split()[0].split("@")[0] == "/cancel":
            return
    await comment_service.cancel(context.uow, resident.id)
    context.resident = dataclasses.replace(resident, awaiting=None)


def register(app: Application) -> None:  # type: ignore[type-arg]
    app.add_handler(TypeHandler(Update, gate), group=-1)
