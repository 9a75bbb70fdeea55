"""Moderation: new comments and residents' proposals go to the staff (or the moderators'
group) with Approve / Reject / Ban, comments hidden after reports with Restore / Remove /
Ban. The first decision wins, every copy shows who decided, and the author is told. Reject
asks for an optional reason first. /queue lists everything waiting; /unban lifts a ban.
Every command and button checks on the server that the sender is a moderator."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from telegram import InlineKeyboardMarkup, Message, Update
from telegram.constants import ParseMode
from telegram.error import BadRequest, Forbidden, TelegramError
from telegram.ext import Application, CommandHandler, filters

from bot import callbacks as cb
from bot.context import BotContext
from domain import comments as comment_service
from domain import moderation as moderation_service
from domain import proposals as proposal_service
from domain import residents as resident_service
from domain import staff as staff_service
from domain.comments import Decision, ReviewView
from domain.moderation import ReasonProblem, Rejection
from domain.proposals import ProposalDecision, ProposalView
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

_USER_ID_MAX = 2**63 - 1


# --------------------------------------------------------------------------- keyboards


def decision_keyboard(context: BotContext, language: str, comment_id: int) -> Keyboard:
    """A pending comment: Approve / Reject / Ban."""
    return _three(context, language, cb.MODERATE, "cid", comment_id, ("approve", "reject"))


def proposal_keyboard(context: BotContext, language: str, proposal_id: int) -> Keyboard:
    return _three(
        context, language, cb.MODERATE_PROPOSAL, "pid", proposal_id, ("approve", "reject")
    )


def reported_keyboard(context: BotContext, language: str, comment_id: int) -> Keyboard:
    """A comment hidden after reports: Restore / Remove / Ban."""
    return _three(context, language, cb.MODERATE_REPORTED, "cid", comment_id, ("restore", "remove"))


def _three(
    context: BotContext,
    language: str,
    route: cb.Route,
    field: str,
    subject_id: int,
    names: tuple[str, str],
) -> Keyboard:
    labels = context.renderer
    return [
        [
            button(
                labels.label(language, names[0]), route.build(decision="a", **{field: subject_id})
            ),
            button(
                labels.label(language, names[1]), route.build(decision="r", **{field: subject_id})
            ),
            button(labels.label(language, "ban"), route.build(decision="b", **{field: subject_id})),
        ]
    ]


# --------------------------------------------------------------------------- sending for review


async def _targets(context: BotContext) -> dict[int, str]:
    """Chat id → language for everyone who reviews comments and proposals."""
    settings = context.services.settings
    if settings.moderation_chat_id is not None:
        return {settings.moderation_chat_id: DEFAULT_LANGUAGE}
    members = sorted(await staff_service.staff(context.uow, settings.admin_ids))
    languages = await resident_service.languages_of(context.uow, members)
    return {member: languages.get(member, DEFAULT_LANGUAGE) for member in members}


async def _send(context: BotContext, chat_id: int, text: str, keyboard: Keyboard) -> Message:
    await context.uow.end_reads()
    return await context.bot.send_message(
        chat_id,
        text,
        parse_mode=ParseMode.HTML,
        link_preview_options=NO_PREVIEW,
        reply_markup=InlineKeyboardMarkup(keyboard),
    )


async def _send_for_review(
    context: BotContext, chat_id: int, language: str, comment: CommentView
) -> None:
    text = context.renderer.render("moderation_comment", language, comment=comment)
    message = await _send(context, chat_id, text, decision_keyboard(context, language, comment.id))
    await comment_service.record_moderation_message(
        context.uow, comment.id, chat_id, message.message_id
    )


async def _send_proposal_for_review(
    context: BotContext, chat_id: int, language: str, proposal: ProposalView
) -> None:
    text = context.renderer.render("moderation_proposal", language, proposal=proposal)
    keyboard = proposal_keyboard(context, language, proposal.id)
    message = await _send(context, chat_id, text, keyboard)
    await proposal_service.record_moderation_message(
        context.uow, proposal.id, chat_id, message.message_id
    )


async def _send_report_for_review(
    context: BotContext, chat_id: int, language: str, review: ReviewView
) -> None:
    text = context.renderer.render("moderation_reported", language, review=review)
    keyboard = reported_keyboard(context, language, review.comment.id)
    message = await _send(context, chat_id, text, keyboard)
    await comment_service.record_moderation_message(
        context.uow, review.comment.id, chat_id, message.message_id
    )


async def _to_moderators(
    context: BotContext, send_one: Callable[[int, str], Awaitable[bool]]
) -> None:
    """Send to every reviewer. One who cannot be reached (never started the bot, blocked
    it) is skipped; what they missed stays in /queue."""
    for chat_id, language in (await _targets(context)).items():
        try:
            if not await send_one(chat_id, language):
                return
        except (Forbidden, BadRequest) as exc:
            log.warning("cannot reach a moderation chat: %s", exc.message)
        except TelegramError as exc:
            log.warning("sending for review failed: %s", exc)


async def notify_moderators(context: BotContext, comment_id: int) -> None:
    """A new pending comment, for review."""

    async def send_one(chat_id: int, language: str) -> bool:
        comment = await comment_service.comment(context.uow, comment_id, language)
        if comment is None:
            return False
        await _send_for_review(context, chat_id, language, comment)
        return True

    await _to_moderators(context, send_one)


async def notify_moderators_of_proposal(context: BotContext, proposal_id: int) -> None:
    async def send_one(chat_id: int, language: str) -> bool:
        proposal = await proposal_service.proposal(context.uow, proposal_id, language)
        if proposal is None:
            return False
        await _send_proposal_for_review(context, chat_id, language, proposal)
        return True

    await _to_moderators(context, send_one)


async def notify_moderators_of_report(context: BotContext, comment_id: int) -> None:
    """A comment hidden after reports: Restore / Remove / Ban."""

    async def send_one(chat_id: int, language: str) -> bool:
        review = await comment_service.review(context.uow, comment_id, language)
        if review is None or review.comment.status != "hidden":
            return False
        await _send_report_for_review(context, chat_id, language, review)
        return True

    await _to_moderators(context, send_one)


# --------------------------------------------------------------------------- showing decisions


async def _edit(context: BotContext, chat_id: int, message_id: int, text: str) -> None:
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


async def _comment_decided(
    context: BotContext, language: str, comment_id: int, reported: bool, reason: str | None
) -> str | None:
    review = await comment_service.review(context.uow, comment_id, language)
    if review is None or review.comment.status in ("pending", "hidden"):
        return None
    return context.renderer.render(
        "moderation_decided",
        language,
        comment=review.comment,
        reported=reported,
        reason=reason,
        banned=review.author_banned and review.comment.status == "rejected",
        author_telegram_id=review.author_telegram_id,
    )


async def _proposal_decided(context: BotContext, language: str, proposal_id: int) -> str | None:
    proposal = await proposal_service.proposal(context.uow, proposal_id, language)
    if proposal is None or proposal.status == "pending":
        return None
    return context.renderer.render(
        "moderation_proposal_decided",
        language,
        proposal=proposal,
        banned=proposal.author_banned and proposal.status == "rejected",
    )


async def _show_pressed_copy(
    update: Update, context: BotContext, kind: str, subject_id: int
) -> None:
    """After "already decided": the pressed review message shows the decision too."""
    query = update.callback_query
    if query is None or query.message is None:
        return
    if kind == "p":
        text = await _proposal_decided(context, context.lang, subject_id)
    else:
        text = await _comment_decided(context, context.lang, subject_id, kind == "h", None)
    if text is not None:
        await _edit(context, query.message.chat.id, query.message.message_id, text)


async def _tell(
    context: BotContext, telegram_id: int, text: str, keyboard: Keyboard | None = None
) -> None:
    """Tell an author about a decision (never someone who blocked the bot: checked by the
    caller)."""
    await context.uow.end_reads()
    try:
        await context.bot.send_message(
            telegram_id,
            text,
            parse_mode=ParseMode.HTML,
            link_preview_options=NO_PREVIEW,
            reply_markup=InlineKeyboardMarkup(keyboard) if keyboard else None,
        )
    except Forbidden:
        await resident_service.mark_blocked(context.uow, telegram_id)
    except TelegramError as exc:
        log.warning("telling the author about a decision failed: %s", exc)


def _item_button(context: BotContext, language: str, item_id: int) -> Keyboard:
    return [
        [
            button(
                context.renderer.label(language, "open_item"),
                cb.ITEM.build(iid=item_id, origin="H"),
            )
        ]
    ]


async def _publish_comment(context: BotContext, decision: Decision) -> None:
    """A won decision on a comment: every review copy shows it, the author is told."""
    comment_id = decision.comment.id
    targets = await _targets(context)
    for chat_id, message_id in await comment_service.moderation_messages(context.uow, comment_id):
        text = await _comment_decided(
            context,
            targets.get(chat_id, context.lang),
            comment_id,
            decision.reported,
            decision.reason,
        )
        if text is not None:
            await _edit(context, chat_id, message_id, text)
    if decision.author_blocked:  # never write to someone who blocked the bot
        return
    language = decision.author_language
    comment = await comment_service.comment(context.uow, comment_id, language)
    if comment is None:
        return
    if comment.status == "approved":
        if decision.reported:
            return  # restored: the author never learnt it was hidden
        text = context.renderer.render("comment_approved", language, comment=comment)
    else:
        text = context.renderer.render(
            "comment_rejected",
            language,
            comment=comment,
            reason=decision.reason,
            banned=decision.banned,
            removed=decision.reported,
        )
    await _tell(
        context,
        decision.author_telegram_id,
        text,
        _item_button(context, language, comment.item_id),
    )


async def _publish_proposal(context: BotContext, decision: ProposalDecision) -> None:
    proposal_id = decision.proposal.id
    targets = await _targets(context)
    for chat_id, message_id in await proposal_service.moderation_messages(context.uow, proposal_id):
        text = await _proposal_decided(context, targets.get(chat_id, context.lang), proposal_id)
        if text is not None:
            await _edit(context, chat_id, message_id, text)
    if decision.author_blocked:
        return
    language = decision.author_language
    proposal = await proposal_service.proposal(context.uow, proposal_id, language)
    if proposal is None:
        return
    if proposal.status == "approved" and proposal.item_id is not None:
        text = context.renderer.render("proposal_approved", language, proposal=proposal)
        keyboard: Keyboard | None = _item_button(context, language, proposal.item_id)
    else:
        text = context.renderer.render(
            "proposal_rejected", language, proposal=proposal, banned=decision.banned
        )
        keyboard = None
    await _tell(context, decision.author_telegram_id, text, keyboard)


def _decided_label(context: BotContext, status: str, *, banned: bool, reported: bool) -> str:
    if banned:
        return label(context, "banned_done")
    if reported:
        return label(context, "restored" if status == "approved" else "removed")
    return label(context, "decided", status)


async def _answer_lost(
    update: Update, context: BotContext, kind: str, subject_id: int, status: str, by: str | None
) -> None:
    await answer(update, context, label(context, "already_decided", status, by or ""), alert=True)
    await _show_pressed_copy(update, context, kind, subject_id)


# --------------------------------------------------------------------------- buttons


async def _refuse_button(update: Update, context: BotContext) -> bool:
    """True (and the press answered) unless a moderator pressed it."""
    if update.effective_user is None or not context.is_moderator:
        await answer(update, context, label(context, "not_allowed"), alert=True)
        return True
    return False


async def _protected(context: BotContext) -> frozenset[int]:
    """Staff members cannot be banned."""
    return frozenset(await staff_service.staff(context.uow, context.services.settings.admin_ids))


async def decide_button(update: Update, context: BotContext, args: cb.Args) -> None:
    """A pending comment: Approve / Reject (asks for a reason) / Ban."""
    if await _refuse_button(update, context):
        return
    comment_id, choice = args.number("cid"), args.text("decision")
    if choice == "r":
        await _ask_reason(update, context, "c", comment_id)
        return
    who = actor(update)
    decision = await comment_service.decide(
        context.uow,
        comment_id,
        choice == "a",
        who.telegram_id,
        who.name,
        context.lang,
        ban=choice == "b",
        protected=await _protected(context) if choice == "b" else (),
    )
    await _after_comment_button(update, context, decision, "c")


async def reported_button(update: Update, context: BotContext, args: cb.Args) -> None:
    """A comment hidden after reports: Restore / Remove (asks for a reason) / Ban."""
    if await _refuse_button(update, context):
        return
    comment_id, choice = args.number("cid"), args.text("decision")
    if choice == "r":
        await _ask_reason(update, context, "h", comment_id)
        return
    decision = await comment_service.decide_reported(
        context.uow,
        comment_id,
        choice == "a",
        actor(update),
        context.lang,
        ban=choice == "b",
        protected=await _protected(context) if choice == "b" else (),
    )
    await _after_comment_button(update, context, decision, "h")


async def _after_comment_button(
    update: Update, context: BotContext, decision: Decision | None, kind: str
) -> None:
    if decision is None:
        await answer(update, context, label(context, "stale_button"), alert=True)
        return
    if decision.refused:
        await answer(update, context, label(context, "cannot_ban_staff"), alert=True)
        return
    if not decision.won:
        await _answer_lost(
            update,
            context,
            kind,
            decision.comment.id,
            decision.comment.status,
            decision.comment.decided_by,
        )
        return
    await answer(
        update,
        context,
        _decided_label(
            context, decision.comment.status, banned=decision.banned, reported=decision.reported
        ),
    )
    await _publish_comment(context, decision)


async def proposal_button(update: Update, context: BotContext, args: cb.Args) -> None:
    """A pending proposal: Approve (a new item) / Reject (asks for a reason) / Ban."""
    if await _refuse_button(update, context):
        return
    proposal_id, choice = args.number("pid"), args.text("decision")
    if choice == "r":
        await _ask_reason(update, context, "p", proposal_id)
        return
    decision = await proposal_service.decide(
        context.uow,
        proposal_id,
        choice == "a",
        actor(update),
        context.lang,
        ban=choice == "b",
        protected=await _protected(context) if choice == "b" else (),
    )
    if decision is None:
        await answer(update, context, label(context, "stale_button"), alert=True)
        return
    if decision.refused:
        await answer(update, context, label(context, "cannot_ban_staff"), alert=True)
        return
    if not decision.won:
        await _answer_lost(
            update,
            context,
            "p",
            proposal_id,
            decision.proposal.status,
            decision.proposal.decided_by,
        )
        return
    status = decision.proposal.status
    await answer(
        update, context, _decided_label(context, status, banned=decision.banned, reported=False)
    )
    await _publish_proposal(context, decision)


# --------------------------------------------------------------------------- reject with a reason


async def _still_open(
    context: BotContext, kind: str, subject_id: int
) -> tuple[str, str | None] | None:
    """(status, decided by) of what a Reject button is about; None if it does not exist."""
    if kind == "p":
        proposal = await proposal_service.proposal(context.uow, subject_id, context.lang)
        return (proposal.status, proposal.decided_by) if proposal else None
    comment = await comment_service.comment(context.uow, subject_id, context.lang)
    return (comment.status, comment.decided_by) if comment else None


async def _ask_reason(update: Update, context: BotContext, kind: str, subject_id: int) -> None:
    """Reject pressed: nothing is decided yet; the moderator is asked (in their private
    chat) for an optional reason. The first decision still wins."""
    state = await _still_open(context, kind, subject_id)
    if state is None:
        await answer(update, context, label(context, "stale_button"), alert=True)
        return
    status, by = state
    if status != ("hidden" if kind == "h" else "pending"):
        await _answer_lost(update, context, kind, subject_id, status, by)
        return
    user = update.effective_user
    assert user is not None
    await moderation_service.ask_reason(context.uow, context.resident.id, kind, subject_id)
    keyboard: Keyboard = [
        [button(label(context, "without_reason"), cb.NO_REASON.build(kind=kind, oid=subject_id))],
        [button(label(context, "cancel"), cb.CANCEL.build())],
    ]
    text = render(
        context,
        "mod_reason_prompt",
        kind=kind,
        subject_id=subject_id,
        limit=moderation_service.REASON_MAX,
    )
    try:
        await _send(context, user.id, text, keyboard)
    except Forbidden:
        # They never started the bot in private (pressed in the group): no reason then.
        rejection = await moderation_service.reject(
            context.uow,
            context.resident.id,
            actor(update),
            context.lang,
            None,
            expected=(kind, subject_id),
        )
        await _after_rejection(update, context, rejection, reply=False)
        return
    await answer(update, context, label(context, "reason_asked"))


async def no_reason_button(update: Update, context: BotContext, args: cb.Args) -> None:
    if await _refuse_button(update, context):
        return
    rejection = await moderation_service.reject(
        context.uow,
        context.resident.id,
        actor(update),
        context.lang,
        None,
        expected=(args.text("kind"), args.number("oid")),
    )
    await _after_rejection(update, context, rejection)


async def receive_reason(update: Update, context: BotContext, text: str) -> None:
    """The reason a moderator typed after Reject."""
    if not context.is_moderator:  # no longer a moderator
        await comment_service.cancel(context.uow, context.resident.id)
        await show(update, context, render(context, "not_allowed"))
        return
    rejection = await moderation_service.reject(
        context.uow, context.resident.id, actor(update), context.lang, text
    )
    await _after_rejection(update, context, rejection)


async def receive_non_text(update: Update, context: BotContext) -> None:
    await _ask_again(update, context, "not_text")


async def _ask_again(update: Update, context: BotContext, problem: str, length: int = 0) -> None:
    awaited = await moderation_service.awaited_reason(context.uow, context.resident.id)
    keyboard: Keyboard = []
    if awaited is not None:
        kind, subject_id = awaited
        keyboard.append(
            [
                button(
                    label(context, "without_reason"), cb.NO_REASON.build(kind=kind, oid=subject_id)
                )
            ]
        )
    keyboard.append([button(label(context, "cancel"), cb.CANCEL.build())])
    text = render(
        context,
        "mod_reason_problem",
        problem=problem,
        length=length,
        limit=moderation_service.REASON_MAX,
    )
    await show(update, context, text, keyboard)


async def _after_rejection(
    update: Update, context: BotContext, rejection: Rejection, *, reply: bool = True
) -> None:
    if rejection.problem is ReasonProblem.TOO_LONG:
        await _ask_again(update, context, "too_long", rejection.length)
        return
    decision = rejection.comment or rejection.proposal
    if rejection.problem is not None or decision is None:
        await answer(update, context, label(context, "stale_button"), alert=True)
        return
    if isinstance(decision, ProposalDecision):
        status, by = decision.proposal.status, decision.proposal.decided_by
        reason = decision.proposal.reason
    else:
        status, by, reason = decision.comment.status, decision.comment.decided_by, decision.reason
    if decision.won:
        await answer(
            update,
            context,
            _decided_label(context, status, banned=False, reported=rejection.kind == "h"),
        )
        if isinstance(decision, ProposalDecision):
            await _publish_proposal(context, decision)
        else:
            await _publish_comment(context, decision)
    elif not reply:
        await _answer_lost(update, context, rejection.kind, rejection.subject_id, status, by)
        return
    if reply:
        text = render(
            context,
            "mod_rejected",
            won=decision.won,
            kind=rejection.kind,
            subject_id=rejection.subject_id,
            reason=reason,
            told=not decision.author_blocked,
            status=status,
            by=by,
        )
        await show(update, context, text)


# --------------------------------------------------------------------------- /queue, /unban


async def queue_command(update: Update, context: BotContext) -> None:
    user, chat = update.effective_user, update.effective_chat
    if user is None or chat is None:
        return
    if not context.is_moderator:
        await show(update, context, render(context, "not_allowed"))
        return
    language = context.lang if chat.type == chat.PRIVATE else DEFAULT_LANGUAGE
    total, pending = await comment_service.pending_queue(context.uow, language)
    proposals_total, proposals = await proposal_service.pending_queue(context.uow, language)
    reported_total, reported = await comment_service.reported_queue(context.uow, language)
    header = context.renderer.render(
        "queue",
        language,
        total=total,
        shown=len(pending),
        proposals=proposals_total,
        proposals_shown=len(proposals),
        reported=reported_total,
        reported_shown=len(reported),
    )
    await show(update, context, header)
    try:
        for comment in pending:
            await _send_for_review(context, chat.id, language, comment)
        for proposal in proposals:
            await _send_proposal_for_review(context, chat.id, language, proposal)
        for review in reported:
            await _send_report_for_review(context, chat.id, language, review)
    except TelegramError as exc:
        log.warning("listing the queue failed: %s", exc)


async def unban_command(update: Update, context: BotContext) -> None:
    if not context.is_moderator:
        await show(update, context, render(context, "not_allowed"))
        return
    args = context.args or []
    if len(args) != 1 or not args[0].isascii() or not args[0].isdigit():
        await show(update, context, render(context, "unban", result="usage", user_id=""))
        return
    telegram_id = int(args[0])
    if not 0 < telegram_id <= _USER_ID_MAX:
        await show(update, context, render(context, "unban", result="usage", user_id=""))
        return
    result = await moderation_service.unban(context.uow, actor(update), telegram_id)
    await show(update, context, render(context, "unban", result=result.value, user_id=telegram_id))


def register(app: Application) -> None:  # type: ignore[type-arg]
    app.add_handler(
        CommandHandler(
            "queue", queue_command, filters=filters.ChatType.PRIVATE | filters.ChatType.GROUPS
        )
    )
    app.add_handler(CommandHandler("unban", unban_command, filters=filters.ChatType.PRIVATE))
    app.add_handler(on_callback(cb.MODERATE, decide_button))
    app.add_handler(on_callback(cb.MODERATE_REPORTED, reported_button))
    app.add_handler(on_callback(cb.MODERATE_PROPOSAL, proposal_button))
    app.add_handler(on_callback(cb.NO_REASON, no_reason_button))
