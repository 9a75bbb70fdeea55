"""Goals: the goals menu by action field, the goal card, follow, "I want to help" (with an
optional note), and the moderators' `/progress Z-3 40 note` and `/helpers Z-3`."""

from __future__ import annotations

import re

from telegram import Update
from telegram.ext import Application, CommandHandler, filters

from bot import callbacks as cb
from bot.context import BotContext
from domain import goals as goal_service
from domain.goals import GoalCard, HelpProblem, HelpResult
from handlers.common import (
    Keyboard,
    actor,
    answer,
    button,
    label,
    on_callback,
    pager,
    render,
    show,
    show_notice,
)
from handlers.proposals import show_banned
from storage.models import NOTE_MAX

PRIVATE = filters.ChatType.PRIVATE
#: `/progress Z-3 40` or `40%`: ASCII digits only.
_PERCENT = re.compile(r"^(\d{1,3})%?$", re.ASCII)
#: Helpers listed in the /helpers message (all of them are in the CSV file).
HELPERS_SHOWN = 15


def back_data(via: str) -> str:
    """Where "Back" on a goal card goes: the goals menu page, the item card, or the menu."""
    if via.startswith("P"):
        return cb.GOALS.build(page=int(via[1:]))
    if via.startswith("I"):
        return cb.ITEM.build(iid=int(via[1:]), origin="H")
    return cb.MENU.build()


# --------------------------------------------------------------------------- the menu


async def show_goals(update: Update, context: BotContext, page: int, *, new: bool = False) -> None:
    overview = await goal_service.goals_by_field(context.uow, context.lang, page)
    current = overview.page.page
    keyboard: Keyboard = [
        [
            button(
                label(context, "goal_list_button", g.key, g.title, g.progress),
                cb.GOAL.build(gid=g.id, via=f"P{current}"),
            )
        ]
        for g in overview.page.entries
    ]
    nav = pager(context, overview.page, lambda p: cb.GOALS.build(page=p))
    if nav:
        keyboard.append(nav)
    keyboard.append([button(label(context, "main_menu"), cb.MENU.build())])
    await show(update, context, render(context, "goals_list", overview=overview), keyboard, new=new)


async def goals_command(update: Update, context: BotContext) -> None:
    await show_goals(update, context, 0, new=True)


async def goals_button(update: Update, context: BotContext, args: cb.Args) -> None:
    await show_goals(update, context, args.number("page"))


# --------------------------------------------------------------------------- the card


def card_keyboard(context: BotContext, card: GoalCard, via: str) -> Keyboard:
    gid = card.id
    keyboard: Keyboard = [
        [
            button(
                label(context, "item_button", i.key, i.title),
                cb.ITEM.build(iid=i.id, origin=f"G{gid}"),
            )
        ]
        for i in card.items
    ]
    follow = (
        button(label(context, "unfollow"), cb.GOAL_FOLLOW.build(gid=gid, on=0, via=via))
        if card.following
        else button(label(context, "follow"), cb.GOAL_FOLLOW.build(gid=gid, on=1, via=via))
    )
    if card.helping:
        keyboard.append([follow])
        keyboard.append(
            [
                button(label(context, "help_change"), cb.GOAL_HELP.build(gid=gid, via=via)),
                button(
                    label(context, "help_withdraw"), cb.GOAL_HELP_WITHDRAW.build(gid=gid, via=via)
                ),
            ]
        )
    else:
        keyboard.append(
            [follow, button(label(context, "help_offer"), cb.GOAL_HELP.build(gid=gid, via=via))]
        )
    keyboard.append(
        [
            button(label(context, "back"), back_data(via)),
            button(label(context, "main_menu"), cb.MENU.build()),
        ]
    )
    return keyboard


async def show_goal(
    update: Update, context: BotContext, goal_id: int, via: str, *, new: bool = False
) -> bool:
    card = await goal_service.goal_card(context.uow, goal_id, context.lang, context.resident.id)
    if card is None:
        await show_notice(update, context, "goal_not_found", new=new)
        return False
    await show(
        update,
        context,
        render(context, "goal_card", goal=card),
        card_keyboard(context, card, via),
        new=new,
    )
    return True


async def open_goal_key(update: Update, context: BotContext, key: str) -> bool:
    """Open the goal a `/start goal_Z-3` link points at (as a new message). False if
    there is no such goal."""
    goal_id = await goal_service.goal_id_for_key(context.uow, key)
    if goal_id is None:
        return False
    return await show_goal(update, context, goal_id, "H", new=True)


async def goal_button(update: Update, context: BotContext, args: cb.Args) -> None:
    await show_goal(update, context, args.number("gid"), args.text("via"))


async def _gone(update: Update, context: BotContext) -> None:
    await answer(update, context, label(context, "goal_gone"), alert=True)
    await show_goals(update, context, 0)


async def follow_button(update: Update, context: BotContext, args: cb.Args) -> None:
    on = args.flag("on")
    changed = await goal_service.follow(context.uow, context.resident.id, args.number("gid"), on)
    if changed is None:
        await _gone(update, context)
        return
    await answer(update, context, label(context, "goal_following" if on else "goal_unfollowed"))
    await show_goal(update, context, args.number("gid"), args.text("via"))


# --------------------------------------------------------------------------- I want to help


def prompt_keyboard(context: BotContext, goal_id: int, via: str) -> Keyboard:
    send = cb.GOAL_HELP_SEND.build(gid=goal_id, via=via)
    return [
        [button(label(context, "help_without_note"), send)],
        [button(label(context, "cancel"), cb.GOAL.build(gid=goal_id, via=via))],
    ]


async def help_button(update: Update, context: BotContext, args: cb.Args) -> None:
    goal_id, via = args.number("gid"), args.text("via")
    started = await goal_service.start_help(context.uow, context.resident.id, goal_id, via)
    if started.problem is HelpProblem.BANNED:
        await answer(update, context, label(context, "banned_short"), alert=True)
        await show_banned(update, context)
        return
    card = await goal_service.goal_card(context.uow, goal_id, context.lang, context.resident.id)
    if started.problem is not None or card is None:
        await _gone(update, context)
        return
    await show(
        update,
        context,
        render(
            context,
            "help_prompt",
            goal=card,
            me=context.resident.author,
            limit=goal_service.HELP_NOTE_MAX,
        ),
        prompt_keyboard(context, goal_id, via),
    )


async def _show_offer_result(
    update: Update, context: BotContext, result: HelpResult, via: str
) -> None:
    if result.problem is HelpProblem.BANNED:
        await answer(update, context, label(context, "banned_short"), alert=True)
        await show_banned(update, context)
        return
    card = (
        await goal_service.goal_card(context.uow, result.goal_id, context.lang, context.resident.id)
        if result.goal_id is not None
        else None
    )
    if result.problem is not None or card is None:
        if update.callback_query is not None:
            await _gone(update, context)
        else:
            await show_notice(update, context, "goal_not_found")
        return
    await answer(update, context, label(context, "help_thanks"))
    await show(
        update,
        context,
        render(context, "help_saved", goal=card, result=result),
        [
            [
                button(label(context, "back_to_goal"), cb.GOAL.build(gid=card.id, via=via)),
                button(label(context, "main_menu"), cb.MENU.build()),
            ]
        ],
    )


async def help_send_button(update: Update, context: BotContext, args: cb.Args) -> None:
    """Send the offer without a note."""
    result = await goal_service.offer_help(
        context.uow, context.resident.id, args.number("gid"), None
    )
    await _show_offer_result(update, context, result, args.text("via"))


async def receive_help_note(update: Update, context: BotContext, text: str) -> None:
    """The text a resident sent while the bot waited for their "I want to help" note."""
    result = await goal_service.take_help_note(context.uow, context.resident.id, text)
    if result.problem in (HelpProblem.EMPTY, HelpProblem.TOO_LONG):
        waiting = await goal_service.awaited_help(context.uow, context.resident.id)
        template = "help_too_long" if result.problem is HelpProblem.TOO_LONG else "help_not_text"
        await show(
            update,
            context,
            render(context, template, length=result.length, limit=goal_service.HELP_NOTE_MAX),
            prompt_keyboard(context, *waiting) if waiting else None,
        )
        return
    await _show_offer_result(update, context, result, result.origin)


async def receive_non_text(update: Update, context: BotContext) -> None:
    """A photo, sticker, … while the bot waited for the note."""
    waiting = await goal_service.awaited_help(context.uow, context.resident.id)
    await show(
        update,
        context,
        render(context, "help_not_text"),
        prompt_keyboard(context, *waiting) if waiting else None,
    )


async def withdraw_button(update: Update, context: BotContext, args: cb.Args) -> None:
    withdrawn = await goal_service.withdraw_help(
        context.uow, context.resident.id, args.number("gid")
    )
    if withdrawn is None:
        await _gone(update, context)
        return
    await answer(update, context, label(context, "help_withdrawn"))
    await show_goal(update, context, args.number("gid"), args.text("via"))


# --------------------------------------------------------------------------- moderators


async def progress_command(update: Update, context: BotContext) -> None:
    if not context.is_moderator:
        await show(update, context, render(context, "not_allowed"))
        return
    args = list(context.args or [])
    match = _PERCENT.match(args[1]) if len(args) >= 2 else None
    if match is None:
        await show(update, context, render(context, "progress_usage", note_max=NOTE_MAX))
        return
    change = await goal_service.record_progress(
        context.uow,
        actor(update),
        args[0],
        int(match[1]),
        " ".join(args[2:]) or None,
        language=context.lang,
    )
    if change.problem is not None:
        await show(
            update,
            context,
            render(
                context,
                "progress_problem",
                change=change,
                problem=change.problem.value,
                note_max=NOTE_MAX,
            ),
        )
        return
    await show(update, context, render(context, "progress_recorded", change=change))


async def helpers_command(update: Update, context: BotContext) -> None:
    chat = update.effective_chat
    if chat is None or not context.is_moderator:
        await show(update, context, render(context, "not_allowed"))
        return
    args = list(context.args or [])
    if len(args) != 1:
        await show(update, context, render(context, "helpers_usage", key=None))
        return
    view = await goal_service.helpers(
        context.uow, args[0], language=context.lang, actor=actor(update)
    )
    if view is None:
        await show(update, context, render(context, "helpers_usage", key=args[0]))
        return
    await show(
        update,
        context,
        render(context, "helpers", view=view, shown=view.helpers[:HELPERS_SHOWN]),
    )
    if view.helpers:
        await context.bot.send_document(
            chat.id,
            goal_service.helpers_csv(view, context.services.settings.tz),
            filename=f"helpers-{view.key}.csv",
        )


def register(app: Application) -> None:  # type: ignore[type-arg]
    app.add_handler(CommandHandler("goals", goals_command, filters=PRIVATE))
    app.add_handler(CommandHandler("progress", progress_command, filters=PRIVATE))
    app.add_handler(CommandHandler("helpers", helpers_command, filters=PRIVATE))
    app.add_handler(on_callback(cb.GOALS, goals_button))
    app.add_handler(on_callback(cb.GOAL, goal_button))
    app.add_handler(on_callback(cb.GOAL_FOLLOW, follow_button))
    app.add_handler(on_callback(cb.GOAL_HELP, help_button))
    app.add_handler(on_callback(cb.GOAL_HELP_SEND, help_send_button))
    app.add_handler(on_callback(cb.GOAL_HELP_WITHDRAW, withdraw_button))
