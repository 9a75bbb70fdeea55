"""Moderators: `/goal new` (title, description, action field, items, preview, Create) and
`/goal Z-3` (the goal's card with edit buttons). Every command, text and button checks on the
server that the sender is a moderator; the logic is in domain.goal_admin."""

from __future__ import annotations

from typing import Any

from telegram import Update
from telegram.ext import Application, CommandHandler, filters

from bot import callbacks as cb
from bot.context import BotContext
from domain import goal_admin as service
from domain import items as item_service
from domain.goal_admin import AdminCard, Edit, GoalProblem, Step
from handlers.common import (
    Keyboard,
    actor,
    answer,
    button,
    label,
    menu_keyboard,
    on_callback,
    render,
    show,
)
from storage.models import GOAL_STATUSES

_STEP_NAMES = {
    service.AWAITING_TITLE: "title",
    service.AWAITING_DESCRIPTION: "description",
    service.AWAITING_FIELD: "field",
    service.AWAITING_ITEMS: "items",
    service.AWAITING_CONFIRM: "confirm",
}
_STEP_LIMITS = {"title": service.TITLE_MAX, "description": service.DESCRIPTION_MAX}
_EDIT_NAMES = {
    service.EDIT_TITLE: "title",
    service.EDIT_DESCRIPTION: "description",
    service.EDIT_ITEMS: "items",
    service.EDIT_PARTNER_ADD: "partner",
    service.EDIT_MILESTONE_ADD: "milestone",
}
_EDIT_LIMITS = {
    service.EDIT_TITLE: service.TITLE_MAX,
    service.EDIT_DESCRIPTION: service.DESCRIPTION_MAX,
}


async def _refuse(update: Update, context: BotContext) -> None:
    """Exactly like /status: nothing changes, no conversation state is set."""
    if update.callback_query is not None:
        await answer(update, context, label(context, "not_allowed"), alert=True)
    else:
        await show(update, context, render(context, "not_allowed"))


async def _stale(update: Update, context: BotContext) -> None:
    await answer(update, context, label(context, "stale_button"), alert=True)


def _cancel_row(context: BotContext) -> list[Any]:
    return [button(label(context, "cancel"), cb.CANCEL.build())]


def _back_row(context: BotContext, goal_id: int) -> list[Any]:
    return [button(label(context, "ga_back"), cb.GOAL_ADMIN.build(gid=goal_id))]


# --------------------------------------------------------------------------- /goal new


async def _show_step(update: Update, context: BotContext, step: Step, *, new: bool) -> None:
    draft = step.draft
    assert draft is not None and step.step is not None
    name = _STEP_NAMES[step.step]
    if name in ("title", "description", "items"):
        text = render(
            context,
            "goal_admin_prompt",
            step=name,
            draft=draft,
            limit=_STEP_LIMITS.get(name, service.ITEMS_MAX),
        )
        await show(update, context, text, [_cancel_row(context)], new=new)
        return
    if name == "field":
        fields = await item_service.action_fields(context.uow, context.lang)
        keyboard: Keyboard = [
            [
                button(
                    label(context, "ga_field_choice", f.title, False),
                    cb.GOAL_ADMIN_FIELD.build(draft=draft.id, fid=f.id),
                )
            ]
            for f in fields
        ]
        text = render(context, "goal_admin_prompt", step=name, draft=draft, limit=0)
        await show(update, context, text, [*keyboard, _cancel_row(context)], new=new)
        return
    preview = await service.preview(context.uow, draft, context.lang)
    keyboard = [
        [button(label(context, "ga_create"), cb.GOAL_ADMIN_CREATE.build(draft=draft.id))],
        _cancel_row(context),
    ]
    text = render(context, "goal_admin_preview", draft=draft, preview=preview)
    await show(update, context, text, keyboard, new=new)


async def _problem(
    update: Update,
    context: BotContext,
    problem: GoalProblem,
    step: str,
    *,
    length: int = 0,
    limit: int = 0,
    unknown: tuple[str, ...] = (),
    keyboard: Keyboard | None = None,
) -> None:
    """A refused answer: say why; the bot keeps waiting for a better one."""
    text = _problem_text(context, problem, step, length=length, limit=limit, unknown=unknown)
    await show(update, context, text, keyboard or [_cancel_row(context)])


def _problem_text(
    context: BotContext,
    problem: GoalProblem,
    step: str = "",
    *,
    length: int = 0,
    limit: int = 0,
    unknown: tuple[str, ...] = (),
    key: str = "",
) -> str:
    return render(
        context,
        "goal_admin_problem",
        problem=problem.value,
        step=step,
        length=length,
        limit=limit,
        unknown=unknown,
        key=key,
    )


async def _creation_text(update: Update, context: BotContext, text: str) -> None:
    step = await service.receive_text(context.uow, context.resident.id, text)
    if step.problem is GoalProblem.NOT_AWAITED or step.step is None:
        await show(update, context, render(context, "text_hint"), menu_keyboard(context))
        return
    if step.problem is not None:
        name = _STEP_NAMES[step.step]
        await _problem(
            update,
            context,
            step.problem,
            name,
            length=step.length,
            limit=_STEP_LIMITS.get(name, service.ITEMS_MAX),
            unknown=step.unknown,
        )
        return
    await _show_step(update, context, step, new=True)


async def field_button(update: Update, context: BotContext, args: cb.Args) -> None:
    if not context.is_moderator:
        await _refuse(update, context)
        return
    step = await service.choose_field(
        context.uow, context.resident.id, args.number("draft"), args.number("fid")
    )
    if step.problem is GoalProblem.NOT_AWAITED or step.step is None:
        await _stale(update, context)
        return
    if step.problem is GoalProblem.UNKNOWN_FIELD:
        await answer(update, context, label(context, "stale_button"))
    await _show_step(update, context, step, new=False)


async def create_button(update: Update, context: BotContext, args: cb.Args) -> None:
    """Create the previewed goal — once, however often the button is pressed."""
    if not context.is_moderator:
        await _refuse(update, context)
        return
    created = await service.create(
        context.uow, context.resident.id, args.number("draft"), actor(update), context.lang
    )
    if created.problem is GoalProblem.NOT_AWAITED:
        await _stale(update, context)
        return
    if created.goal_id is None:
        assert created.problem is not None
        await _problem(
            update,
            context,
            created.problem,
            "confirm",
            unknown=created.unknown,
            keyboard=menu_keyboard(context),
        )
        return
    await answer(update, context, label(context, "ga_created", created.key))
    await _show_card(update, context, created.goal_id, created=created)


# --------------------------------------------------------------------------- the card


def _card_keyboard(context: BotContext, card: AdminCard) -> Keyboard:
    edit = cb.GOAL_EDIT.build
    keyboard: Keyboard = [
        [
            button(label(context, "ga_title"), edit(gid=card.id, what=service.EDIT_TITLE)),
            button(
                label(context, "ga_description"), edit(gid=card.id, what=service.EDIT_DESCRIPTION)
            ),
        ],
        [
            button(label(context, "ga_field"), edit(gid=card.id, what=service.EDIT_FIELD)),
            button(label(context, "ga_items"), edit(gid=card.id, what=service.EDIT_ITEMS)),
        ],
        [button(label(context, "ga_status"), edit(gid=card.id, what=service.EDIT_STATUS))],
    ]
    partners = [
        button(label(context, "ga_partner_add"), edit(gid=card.id, what=service.EDIT_PARTNER_ADD))
    ]
    if card.partners:
        partners.append(
            button(
                label(context, "ga_partner_remove"),
                edit(gid=card.id, what=service.EDIT_PARTNER_REMOVE),
            )
        )
    milestones = [
        button(
            label(context, "ga_milestone_add"), edit(gid=card.id, what=service.EDIT_MILESTONE_ADD)
        )
    ]
    if card.milestones:
        milestones.append(
            button(label(context, "ga_milestones"), edit(gid=card.id, what=service.EDIT_MILESTONES))
        )
    keyboard += [partners, milestones, menu_keyboard(context)[0]]
    return keyboard


async def _show_card(
    update: Update,
    context: BotContext,
    goal: int | str,
    *,
    new: bool = False,
    edit: Edit | None = None,
    created: service.Created | None = None,
) -> bool:
    """The moderator's card of the goal; False if there is no such goal."""
    card = await service.card(context.uow, goal, context.lang)
    if card is None:
        return False
    text = render(context, "goal_admin_card", goal=card, edit=edit, created=created)
    await show(update, context, text, _card_keyboard(context, card), new=new)
    return True


async def goal_command(update: Update, context: BotContext) -> None:
    if not context.is_moderator:
        await _refuse(update, context)
        return
    args = list(context.args or [])
    if len(args) == 1 and args[0].lower() == "new":
        step = await service.start_new(context.uow, context.resident.id)
        await _show_step(update, context, step, new=True)
        return
    if len(args) == 1 and service.GOAL_KEY.match(args[0]):
        if not await _show_card(update, context, args[0], new=True):
            text = _problem_text(context, GoalProblem.UNKNOWN_GOAL, key=args[0])
            await show(update, context, text, new=True)
        return
    await show(update, context, render(context, "goal_admin_usage"), new=True)


async def card_button(update: Update, context: BotContext, args: cb.Args) -> None:
    if not context.is_moderator:
        await _refuse(update, context)
        return
    if not await _show_card(update, context, args.number("gid")):
        await _stale(update, context)


async def _edited(update: Update, context: BotContext, edit: Edit) -> None:
    """After a button edit: a short answer, and back to the card (this message)."""
    if edit.problem in (GoalProblem.UNKNOWN_GOAL, GoalProblem.UNKNOWN_FIELD, GoalProblem.GONE):
        await _stale(update, context)
        if edit.problem is GoalProblem.UNKNOWN_GOAL:
            return
    elif edit.problem is not None:
        await answer(update, context, label(context, "ga_problem", edit.problem.value))
    else:
        await answer(update, context, label(context, "ga_saved", edit.changed))
    await _show_card(update, context, edit.goal_id, edit=edit if edit.changed else None)


# --------------------------------------------------------------------------- edit buttons


async def edit_button(update: Update, context: BotContext, args: cb.Args) -> None:
    """An edit button on the card: ask for the text, or show the choices."""
    if not context.is_moderator:
        await _refuse(update, context)
        return
    goal_id, what = args.number("gid"), args.text("what")
    if what in service.TEXT_EDITS:
        started = await service.start_edit(context.uow, context.resident.id, goal_id, what)
        if started.problem is GoalProblem.UNKNOWN_GOAL:
            await _stale(update, context)
            return
        if started.problem is not None:
            await answer(
                update, context, label(context, "ga_problem", started.problem.value), alert=True
            )
            return
        await _show_edit_prompt(update, context, goal_id, what)
        return
    card = await service.card(context.uow, goal_id, context.lang)
    if card is None:
        await _stale(update, context)
        return
    if what == service.EDIT_FIELD:
        await _show_fields(update, context, card)
    elif what == service.EDIT_STATUS:
        await _show_statuses(update, context, card)
    elif what == service.EDIT_PARTNER_REMOVE:
        await _show_partners(update, context, card)
    else:
        await _show_milestones(update, context, card)


async def _show_edit_prompt(update: Update, context: BotContext, goal_id: int, what: str) -> None:
    card = await service.card(context.uow, goal_id, context.lang)
    if card is None:
        await _stale(update, context)
        return
    text = render(
        context,
        "goal_admin_edit",
        goal=card,
        what=_EDIT_NAMES[what],
        limit=_EDIT_LIMITS.get(what, 0),
    )
    await show(update, context, text, [_back_row(context, goal_id)])


async def _show_choices(
    update: Update, context: BotContext, card: AdminCard, what: str, rows: Keyboard
) -> None:
    text = render(context, "goal_admin_choose", goal=card, what=what)
    await show(update, context, text, [*rows, _back_row(context, card.id)])


async def _show_fields(update: Update, context: BotContext, card: AdminCard) -> None:
    fields = await item_service.action_fields(context.uow, context.lang)
    rows: Keyboard = [
        [
            button(
                label(context, "ga_field_choice", f.title, f.id == card.field_id),
                cb.GOAL_EDIT_FIELD.build(gid=card.id, fid=f.id),
            )
        ]
        for f in fields
    ]
    await _show_choices(update, context, card, "field", rows)


async def _show_statuses(update: Update, context: BotContext, card: AdminCard) -> None:
    rows: Keyboard = [
        [
            button(
                label(context, "ga_status_choice", status, status == card.status),
                cb.GOAL_EDIT_STATUS.build(gid=card.id, status=status),
            )
        ]
        for status in GOAL_STATUSES
    ]
    await _show_choices(update, context, card, "status", rows)


async def _show_partners(update: Update, context: BotContext, card: AdminCard) -> None:
    rows: Keyboard = [
        [
            button(
                label(context, "ga_partner_choice", p.name),
                cb.GOAL_EDIT_PARTNER.build(gid=card.id, pid=p.id),
            )
        ]
        for p in card.partners
    ]
    await _show_choices(update, context, card, "partner", rows)


async def _show_milestones(update: Update, context: BotContext, card: AdminCard) -> None:
    rows: Keyboard = [
        [
            button(
                label(context, "ga_milestone_choice", m.title, m.done),
                cb.GOAL_EDIT_MILESTONE.build(gid=card.id, mid=m.id, on=0 if m.done else 1),
            ),
            button(
                label(context, "ga_milestone_remove"),
                cb.GOAL_EDIT_MILESTONE_REMOVE.build(gid=card.id, mid=m.id),
            ),
        ]
        for m in card.milestones
    ]
    await _show_choices(update, context, card, "milestones", rows)


async def field_edit_button(update: Update, context: BotContext, args: cb.Args) -> None:
    if not context.is_moderator:
        await _refuse(update, context)
        return
    edit = await service.set_field(
        context.uow, actor(update), args.number("gid"), args.number("fid")
    )
    await _edited(update, context, edit)


async def status_button(update: Update, context: BotContext, args: cb.Args) -> None:
    if not context.is_moderator:
        await _refuse(update, context)
        return
    edit = await service.set_status(
        context.uow, actor(update), args.number("gid"), args.text("status")
    )
    await _edited(update, context, edit)


async def partner_remove_button(update: Update, context: BotContext, args: cb.Args) -> None:
    if not context.is_moderator:
        await _refuse(update, context)
        return
    edit = await service.remove_partner(
        context.uow, actor(update), args.number("gid"), args.number("pid")
    )
    await _edited(update, context, edit)


async def milestone_button(update: Update, context: BotContext, args: cb.Args) -> None:
    if not context.is_moderator:
        await _refuse(update, context)
        return
    edit = await service.set_milestone_done(
        context.uow, actor(update), args.number("gid"), args.number("mid"), args.flag("on")
    )
    await _edited(update, context, edit)


async def milestone_remove_button(update: Update, context: BotContext, args: cb.Args) -> None:
    if not context.is_moderator:
        await _refuse(update, context)
        return
    edit = await service.remove_milestone(
        context.uow, actor(update), args.number("gid"), args.number("mid")
    )
    await _edited(update, context, edit)


# --------------------------------------------------------------------------- texts


async def receive_text(update: Update, context: BotContext, text: str) -> None:
    """A text while a goal is being created or edited."""
    if not context.is_moderator:  # no longer a moderator
        await service.cancel_waiting(context.uow, context.resident.id)
        await _refuse(update, context)
        return
    if context.resident.awaiting != service.AWAITING_EDIT:
        await _creation_text(update, context, text)
        return
    edit = await service.receive_edit(
        context.uow, context.resident.id, actor(update), context.lang, text
    )
    if edit.problem is GoalProblem.NOT_AWAITED:
        await show(update, context, render(context, "text_hint"), menu_keyboard(context))
        return
    if edit.problem is GoalProblem.UNKNOWN_GOAL:
        await show(update, context, _problem_text(context, edit.problem), menu_keyboard(context))
        return
    if edit.problem is not None:
        await _problem(
            update,
            context,
            edit.problem,
            _EDIT_NAMES.get(edit.what, ""),
            length=edit.length,
            limit=edit.limit,
            unknown=edit.unknown,
            keyboard=[_back_row(context, edit.goal_id)],
        )
        return
    await _show_card(update, context, edit.goal_id, new=True, edit=edit)


async def receive_non_text(update: Update, context: BotContext) -> None:
    if not context.is_moderator:
        await service.cancel_waiting(context.uow, context.resident.id)
        await _refuse(update, context)
        return
    awaiting = context.resident.awaiting or ""
    if awaiting == service.AWAITING_EDIT:
        awaited = await service.awaited_edit(context.uow, context.resident.id)
        keyboard = [_back_row(context, awaited[0])] if awaited else [_cancel_row(context)]
        step = _EDIT_NAMES.get(awaited[1], "") if awaited else ""
        await _problem(update, context, GoalProblem.EMPTY, step, keyboard=keyboard)
        return
    name = _STEP_NAMES.get(awaiting, "title")
    problem = GoalProblem.BUTTONS if name in ("field", "confirm") else GoalProblem.EMPTY
    await _problem(update, context, problem, name)


def register(app: Application) -> None:  # type: ignore[type-arg]
    app.add_handler(CommandHandler("goal", goal_command, filters=filters.ChatType.PRIVATE))
    app.add_handler(on_callback(cb.GOAL_ADMIN, card_button))
    app.add_handler(on_callback(cb.GOAL_ADMIN_FIELD, field_button))
    app.add_handler(on_callback(cb.GOAL_ADMIN_CREATE, create_button))
    app.add_handler(on_callback(cb.GOAL_EDIT, edit_button))
    app.add_handler(on_callback(cb.GOAL_EDIT_FIELD, field_edit_button))
    app.add_handler(on_callback(cb.GOAL_EDIT_STATUS, status_button))
    app.add_handler(on_callback(cb.GOAL_EDIT_PARTNER, partner_remove_button))
    app.add_handler(on_callback(cb.GOAL_EDIT_MILESTONE, milestone_button))
    app.add_handler(on_callback(cb.GOAL_EDIT_MILESTONE_REMOVE, milestone_remove_button))
