"""Residents propose their own to:DO items: `/propose` or the button in the to:DO items
menu, then title, description, action field and a preview with Send / Cancel. The draft
lives in the conversation state; moderators review the sent proposal."""

from __future__ import annotations

from telegram import Update
from telegram.ext import Application, CommandHandler, filters

from bot import callbacks as cb
from bot.context import BotContext
from domain import items as item_service
from domain import proposals as proposal_service
from domain.proposals import ProposalProblem, Step
from handlers import moderation
from handlers.common import (
    Keyboard,
    answer,
    button,
    label,
    menu_keyboard,
    on_callback,
    render,
    show,
)

_STEP_NAMES = {
    proposal_service.AWAITING_TITLE: "title",
    proposal_service.AWAITING_DESCRIPTION: "description",
    proposal_service.AWAITING_FIELD: "field",
    proposal_service.AWAITING_CONFIRM: "confirm",
}
_LIMITS = {
    "title": proposal_service.TITLE_MAX,
    "description": proposal_service.DESCRIPTION_MAX,
}


async def show_banned(update: Update, context: BotContext, *, new: bool = False) -> None:
    """A banned resident tried to support, comment, report or propose."""
    text = render(context, "banned", contact=context.services.settings.privacy_contact)
    await show(update, context, text, menu_keyboard(context), new=new)


async def _show_step(update: Update, context: BotContext, step: Step, *, new: bool) -> None:
    draft = step.draft
    assert draft is not None and step.step is not None
    name = _STEP_NAMES[step.step]
    cancel: Keyboard = [[button(label(context, "cancel"), cb.CANCEL.build())]]
    if name in ("title", "description"):
        text = render(context, "proposal_prompt", step=name, draft=draft, limit=_LIMITS[name])
        await show(update, context, text, cancel, new=new)
        return
    if name == "field":
        fields = await item_service.action_fields(context.uow, context.lang)
        keyboard: Keyboard = [
            [
                button(
                    label(context, "proposal_field", f.title),
                    cb.PROPOSAL_FIELD.build(draft=draft.id, fid=f.id),
                )
            ]
            for f in fields
        ]
        text = render(context, "proposal_prompt", step=name, draft=draft, limit=0)
        await show(update, context, text, keyboard + cancel, new=new)
        return
    field_title = await proposal_service.draft_field_title(context.uow, draft, context.lang)
    keyboard = [
        [button(label(context, "proposal_send"), cb.PROPOSAL_SEND.build(draft=draft.id))],
        *cancel,
    ]
    text = render(context, "proposal_preview", draft=draft, field_title=field_title)
    await show(update, context, text, keyboard, new=new)


async def _start(update: Update, context: BotContext, *, new: bool) -> None:
    step = await proposal_service.start(context.uow, context.resident.id)
    if step.problem is ProposalProblem.BANNED:
        await show_banned(update, context, new=new)
        return
    await _show_step(update, context, step, new=new)


async def propose_command(update: Update, context: BotContext) -> None:
    await _start(update, context, new=True)


async def propose_button(update: Update, context: BotContext, args: cb.Args) -> None:
    await _start(update, context, new=False)


async def _problem(
    update: Update, context: BotContext, problem: str, step: str, length: int = 0
) -> None:
    """A refused answer: say why; the bot keeps waiting for a better one."""
    text = render(
        context,
        "proposal_problem",
        problem=problem,
        step=step,
        length=length,
        limit=_LIMITS.get(step, 0),
    )
    await show(update, context, text, [[button(label(context, "cancel"), cb.CANCEL.build())]])


async def receive_text(update: Update, context: BotContext, text: str) -> None:
    """The title or the description the bot waits for."""
    step = await proposal_service.receive_text(context.uow, context.resident.id, text)
    if step.problem is ProposalProblem.NOT_AWAITED or step.step is None:
        await show(update, context, render(context, "text_hint"), menu_keyboard(context))
        return
    if step.problem is not None:
        await _problem(update, context, step.problem.value, _STEP_NAMES[step.step], step.length)
        return
    await _show_step(update, context, step, new=True)


async def receive_non_text(update: Update, context: BotContext) -> None:
    name = _STEP_NAMES.get(context.resident.awaiting or "", "title")
    problem = "buttons" if name in ("field", "confirm") else "not_text"
    await _problem(update, context, problem, name)


async def field_button(update: Update, context: BotContext, args: cb.Args) -> None:
    step = await proposal_service.choose_field(
        context.uow, context.resident.id, args.number("draft"), args.number("fid")
    )
    if step.problem is ProposalProblem.NOT_AWAITED or step.step is None:
        await answer(update, context, label(context, "stale_button"), alert=True)
        return
    if step.problem is ProposalProblem.UNKNOWN_FIELD:
        await answer(update, context, label(context, "stale_button"))
    await _show_step(update, context, step, new=False)


async def send_button(update: Update, context: BotContext, args: cb.Args) -> None:
    """Send the previewed proposal — once, however often the button is pressed."""
    sent = await proposal_service.send(context.uow, context.resident.id, args.number("draft"))
    if sent.problem is ProposalProblem.BANNED:
        await show_banned(update, context)
        return
    if sent.proposal_id is None:
        await answer(update, context, label(context, "stale_button"), alert=True)
        if sent.problem is ProposalProblem.UNKNOWN_FIELD:
            await show(update, context, render(context, "cancelled", cancelled=True))
        return
    proposal = await proposal_service.proposal(context.uow, sent.proposal_id, context.lang)
    assert proposal is not None
    await show(
        update,
        context,
        render(context, "proposal_sent", title=proposal.title),
        menu_keyboard(context),
    )
    await moderation.notify_moderators_of_proposal(context, sent.proposal_id)


def register(app: Application) -> None:  # type: ignore[type-arg]
    app.add_handler(CommandHandler("propose", propose_command, filters=filters.ChatType.PRIVATE))
    app.add_handler(on_callback(cb.PROPOSE, propose_button))
    app.add_handler(on_callback(cb.PROPOSAL_FIELD, field_button))
    app.add_handler(on_callback(cb.PROPOSAL_SEND, send_button))
