"""Writing comments (a short conversation kept in the database) and reading approved ones."""

from __future__ import annotations

from telegram import Update
from telegram.ext import Application, CommandHandler, filters

from bot import callbacks as cb
from bot.context import BotContext
from domain import comments as comment_service
from domain import items as item_service
from domain.comments import CommentProblem, ReportResult
from handlers import moderation
from handlers.common import (
    Keyboard,
    answer,
    button,
    label,
    menu_keyboard,
    on_callback,
    pager,
    render,
    show,
    show_notice,
)
from handlers.items import show_item
from handlers.proposals import show_banned
from storage.models import COMMENT_MAX


async def comment_button(update: Update, context: BotContext, args: cb.Args) -> None:
    item_id, origin = args.number("iid"), args.text("origin")
    card = await item_service.item_card(context.uow, context.resident.id, item_id, context.lang)
    started = (
        await comment_service.start_comment(context.uow, context.resident.id, item_id, origin)
        if card is not None
        else None
    )
    if started is not None and started.problem is CommentProblem.BANNED:
        await answer(update, context, label(context, "banned_short"), alert=True)
        await show_banned(update, context)
        return
    if card is None or not started:
        await show_notice(update, context, "item_not_found")
        return
    await show(
        update,
        context,
        render(context, "comment_prompt", item=card, limit=COMMENT_MAX),
        [[button(label(context, "cancel"), cb.CANCEL.build())]],
    )


async def receive_text(update: Update, context: BotContext, text: str) -> None:
    """The text a resident sent while the bot waited for their comment."""
    outcome = await comment_service.submit_comment(context.uow, context.resident.id, text)
    if outcome.problem is CommentProblem.BANNED:
        await show_banned(update, context)
        return
    if outcome.problem is CommentProblem.EMPTY:
        await show(update, context, render(context, "comment_not_text"))
        return
    if outcome.problem is CommentProblem.TOO_LONG:
        await show(
            update,
            context,
            render(context, "comment_too_long", length=outcome.length, limit=COMMENT_MAX),
        )
        return
    if outcome.problem is not None or outcome.item_id is None or outcome.comment_id is None:
        await show_notice(update, context, "item_not_found")
        return
    card = await item_service.item_card(
        context.uow, context.resident.id, outcome.item_id, context.lang
    )
    assert card is not None
    origin = outcome.origin or "H"
    keyboard: Keyboard = [
        [
            button(label(context, "unfollow"), cb.FOLLOW.build(iid=card.id, on=0, origin=origin)),
            button(label(context, "back_to_item"), cb.ITEM.build(iid=card.id, origin=origin)),
        ],
    ]
    await show(
        update,
        context,
        render(context, "comment_saved", item=card, followed=outcome.followed),
        keyboard,
    )
    await moderation.notify_moderators(context, outcome.comment_id)


async def receive_non_text(update: Update, context: BotContext) -> None:
    await show(
        update,
        context,
        render(context, "comment_not_text"),
        [[button(label(context, "cancel"), cb.CANCEL.build())]],
    )


async def cancel(update: Update, context: BotContext) -> None:
    pending = await comment_service.awaiting(context.uow, context.resident.id)
    cancelled = await comment_service.cancel(context.uow, context.resident.id)
    if cancelled and pending is not None and pending[0] == comment_service.AWAITING_COMMENT:
        item_id = pending[1].get("item_id")
        origin = str(pending[1].get("origin") or "H")
        if isinstance(item_id, int) and update.callback_query is not None:
            await show_item(update, context, item_id, origin)
            return
    await show(
        update,
        context,
        render(context, "cancelled", cancelled=cancelled),
        menu_keyboard(context),
    )


async def cancel_button(update: Update, context: BotContext, args: cb.Args) -> None:
    await cancel(update, context)


async def comments_button(update: Update, context: BotContext, args: cb.Args) -> None:
    await show_comments(
        update, context, args.number("iid"), args.number("page"), args.text("origin")
    )


async def show_comments(
    update: Update, context: BotContext, item_id: int, page: int, origin: str
) -> None:
    """An item's approved comments, a page at a time, with a report button for each
    comment (but one's own)."""
    card = await item_service.item_card(context.uow, context.resident.id, item_id, context.lang)
    if card is None:
        await show_notice(update, context, "item_not_found")
        return
    result = await comment_service.approved_comments(context.uow, item_id, context.lang, page)
    keyboard: Keyboard = []
    reports = [
        button(
            label(context, "report", n),
            cb.REPORT.build(cid=c.id, page=result.page, origin=origin),
        )
        for n, c in enumerate(result.entries, start=1)
        if c.author_id != context.resident.id
    ]
    if reports:
        keyboard.append(reports)
    nav = pager(context, result, lambda p: cb.COMMENTS.build(iid=item_id, page=p, origin=origin))
    if nav:
        keyboard.append(nav)
    keyboard.append(
        [
            button(label(context, "comment"), cb.COMMENT.build(iid=item_id, origin=origin)),
            button(label(context, "back_to_item"), cb.ITEM.build(iid=item_id, origin=origin)),
        ]
    )
    text = render(context, "comments_list", item=card, page=result, reportable=bool(reports))
    await show(update, context, text, keyboard)


async def report_button(update: Update, context: BotContext, args: cb.Args) -> None:
    """Report a comment: a short thank-you; at the threshold it is hidden and goes to the
    moderators. Reporting twice changes nothing."""
    comment_id = args.number("cid")
    comment = await comment_service.comment(context.uow, comment_id, context.lang)
    if comment is None:
        await answer(update, context, label(context, "stale_button"), alert=True)
        return
    result = await comment_service.report(
        context.uow,
        context.resident.id,
        comment_id,
        context.services.settings.report_threshold,
    )
    notes = {
        ReportResult.COUNTED: "report_thanks",
        ReportResult.HIDDEN: "report_thanks",
        ReportResult.AGAIN: "report_again",
        ReportResult.OWN: "report_own",
        ReportResult.GONE: "report_gone",
        ReportResult.BANNED: "banned_short",
    }
    await answer(
        update,
        context,
        label(context, notes[result]),
        alert=result in (ReportResult.OWN, ReportResult.BANNED),
    )
    await show_comments(update, context, comment.item_id, args.number("page"), args.text("origin"))
    if result is ReportResult.HIDDEN:
        await moderation.notify_moderators_of_report(context, comment_id)


def register(app: Application) -> None:  # type: ignore[type-arg]
    app.add_handler(CommandHandler("cancel", cancel, filters=filters.ChatType.PRIVATE))
    app.add_handler(on_callback(cb.COMMENT, comment_button))
    app.add_handler(on_callback(cb.CANCEL, cancel_button))
    app.add_handler(on_callback(cb.COMMENTS, comments_button))
    app.add_handler(on_callback(cb.REPORT, report_button))
