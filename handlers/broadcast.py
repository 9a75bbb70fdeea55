"""Moderators: `/broadcast` (an announcement to many, now or at a set time) and `/digest
preview|send`. The draft (text, audience, time) lives in the conversation state, so a restart
between the steps loses nothing; every command, text and button checks on the server that
the sender is a moderator."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import replace
from typing import Any
from zoneinfo import ZoneInfo

from markupsafe import Markup
from telegram import Message, Update
from telegram.error import BadRequest
from telegram.ext import Application, CommandHandler, filters

from bot import callbacks as cb
from bot.context import BotContext
from bot.telegram_text import validate_html, visible_length
from domain import announcements
from domain import broadcasts as broadcast_service
from domain import comments as comment_service
from domain import items as item_service
from domain.announcements import (
    AWAITING_CHOICE,
    AWAITING_ITEM,
    AWAITING_TEXT,
    AWAITING_TIME,
    TEXT_LIMIT,
    Draft,
    new_draft_id,
    parse_local_time,
)
from domain.broadcasts import Audience, week_key
from domain.text import LANGUAGES, clean_user_text, pick
from handlers.common import Keyboard, actor, answer, button, label, on_callback, render, show
from storage.models import utcnow

#: Entities Telegram detects by itself: a message with only these is taken as typed HTML.
AUTO_ENTITIES = frozenset(
    {"mention", "hashtag", "cashtag", "bot_command", "url", "email", "phone_number"}
)
_ITEM_KEY = re.compile(r"^[A-Za-z0-9-]{1,32}$")


def audience_code(audience: Audience) -> str:
    """The audience as callback data (see cb.BROADCAST_AUDIENCE)."""
    if audience.type == "language":
        return f"L{audience.language}"
    if audience.type == "field":
        return f"F{audience.field_id}"
    if audience.type == "item":
        return f"I{audience.item_id}"
    return "all"


def parse_audience_code(code: str) -> Audience | None:
    if code == "all":
        return Audience("all")
    if code[:1] == "L" and code[1:] in LANGUAGES:
        return Audience("language", language=code[1:])
    if code[:1] == "F" and code[1:].isdigit():
        return Audience("field", field_id=int(code[1:]))
    if code[:1] == "I" and code[1:].isdigit():
        return Audience("item", item_id=int(code[1:]))
    return None


def announcement_html(message: Message) -> str:
    """What the moderator wrote, as Telegram HTML: their formatting if they used Telegram's
    (bold, links, …), else the text itself, read as HTML; cleaned like every typed text
    (no controls, bidi overrides or zero-width characters reach every resident)."""
    entities = message.entities or ()
    if any(e.type not in AUTO_ENTITIES for e in entities):
        return clean_user_text(message.text_html)
    return clean_user_text(message.text or "")


# --------------------------------------------------------------------------- helpers


def _is_admin(update: Update, context: BotContext) -> bool:
    return context.is_moderator


async def _refuse(update: Update, context: BotContext) -> None:
    if update.callback_query is not None:
        await answer(update, context, label(context, "not_allowed"), alert=True)
    else:
        await show(update, context, render(context, "not_allowed"))


async def _stale(update: Update, context: BotContext) -> None:
    await answer(update, context, label(context, "stale_button"), alert=True)


def _tz(context: BotContext) -> ZoneInfo:
    return context.services.settings.tz


def _cancel_row(context: BotContext) -> list[Any]:
    return [button(label(context, "cancel"), cb.CANCEL.build())]


async def _save(context: BotContext, awaiting: str, draft: Draft) -> None:
    await announcements.save_draft(context.uow, context.resident.id, awaiting, draft)


async def _stored(context: BotContext) -> tuple[str, Draft] | None:
    return await announcements.stored_draft(context.uow, context.resident.id)


async def _current(context: BotContext, args: cb.Args) -> tuple[str, Draft] | None:
    """The draft a button belongs to: None if it is not the one being written (any more)."""
    return await announcements.draft_for(context.uow, context.resident.id, args.number("draft"))


def _example_time(context: BotContext) -> dt.datetime:
    tomorrow = dt.datetime.now(_tz(context)) + dt.timedelta(days=1)
    return tomorrow.replace(hour=9, minute=30, second=0, microsecond=0)


async def _describe(context: BotContext, audience: Audience) -> dict[str, Any] | None:
    """What the summary says about the audience; None if its item or field is gone."""
    if audience.type == "item" and audience.item_id is not None:
        row = await context.uow.content.item(audience.item_id)
        if row is None:
            return None
        return {"kind": "item", "key": row.item.key, "title": pick(row.item.title, context.lang)}
    if audience.type == "field" and audience.field_id is not None:
        field = await item_service.action_field(context.uow, audience.field_id, context.lang)
        return {"kind": "field", "title": field.title} if field else None
    if audience.type == "language":
        return {"kind": "language", "language": audience.language}
    return {"kind": "all"}


# --------------------------------------------------------------------------- screens


async def _show_audiences(update: Update, context: BotContext, draft: Draft) -> None:
    data = cb.BROADCAST_AUDIENCE.build
    keyboard: Keyboard = [
        [button(label(context, "bc_everyone"), data(draft=draft.id, aud="all"))],
        [
            button(label(context, "bc_language", code), data(draft=draft.id, aud=f"L{code}"))
            for code in LANGUAGES
        ],
        [button(label(context, "bc_item"), data(draft=draft.id, aud="item"))],
        [button(label(context, "bc_fields"), data(draft=draft.id, aud="fields"))],
        _cancel_row(context),
    ]
    await show(update, context, render(context, "broadcast_audience"), keyboard)


async def _show_fields(update: Update, context: BotContext, draft: Draft) -> None:
    fields = await item_service.action_fields(context.uow, context.lang)
    keyboard: Keyboard = [
        [
            button(
                label(context, "bc_field", field.title),
                cb.BROADCAST_AUDIENCE.build(draft=draft.id, aud=f"F{field.id}"),
            )
        ]
        for field in fields
    ]
    keyboard.append(
        [
            button(
                label(context, "bc_change_audience"),
                cb.BROADCAST_AUDIENCE.build(draft=draft.id, aud="menu"),
            ),
            *_cancel_row(context),
        ]
    )
    await show(update, context, render(context, "broadcast_fields"), keyboard)


async def _show_item_prompt(update: Update, context: BotContext, draft: Draft) -> None:
    keyboard: Keyboard = [
        [
            button(
                label(context, "bc_change_audience"),
                cb.BROADCAST_AUDIENCE.build(draft=draft.id, aud="menu"),
            ),
            *_cancel_row(context),
        ]
    ]
    await show(update, context, render(context, "broadcast_item_prompt"), keyboard)


async def _show_summary(
    update: Update, context: BotContext, draft: Draft, *, new: bool = False
) -> bool:
    """Audience, number of recipients (and time) with Send now / Schedule. False if the
    audience's item or field no longer exists."""
    assert draft.audience is not None
    described = await _describe(context, draft.audience)
    if described is None:
        return False
    count = await broadcast_service.count_audience(context.uow, draft.audience)
    keyboard: Keyboard = []
    if draft.at is not None:
        keyboard.append(
            [
                button(
                    label(context, "bc_confirm_schedule", draft.at),
                    cb.BROADCAST_CONFIRM.build(draft=draft.id),
                )
            ]
        )
        keyboard.append(
            [button(label(context, "bc_change_time"), cb.BROADCAST_SCHEDULE.build(draft=draft.id))]
        )
    else:
        keyboard.append(
            [
                button(label(context, "bc_send_now"), cb.BROADCAST_SEND.build(draft=draft.id)),
                button(label(context, "bc_schedule"), cb.BROADCAST_SCHEDULE.build(draft=draft.id)),
            ]
        )
    keyboard.append(
        [
            button(
                label(context, "bc_change_audience"),
                cb.BROADCAST_AUDIENCE.build(draft=draft.id, aud="menu"),
            ),
            *_cancel_row(context),
        ]
    )
    text = render(
        context,
        "broadcast_summary",
        audience=described,
        count=count,
        at=draft.at,
        tz=context.services.settings.timezone,
    )
    await show(update, context, text, keyboard, new=new)
    return True


async def _ask_again(update: Update, context: BotContext, template: str, **values: Any) -> None:
    """A refused answer: say why; the bot keeps waiting for a better one."""
    await show(update, context, render(context, template, **values), [_cancel_row(context)])


# --------------------------------------------------------------------------- /broadcast


async def broadcast_command(update: Update, context: BotContext) -> None:
    if not _is_admin(update, context):
        await _refuse(update, context)
        return
    await _save(context, AWAITING_TEXT, Draft(new_draft_id()))
    await show(
        update,
        context,
        render(context, "broadcast_prompt", limit=TEXT_LIMIT),
        [_cancel_row(context)],
        new=True,
    )


async def receive_text(update: Update, context: BotContext) -> None:
    """A text while a draft is being written: the announcement, an item key or a time."""
    message = update.effective_message
    if message is None or message.text is None:
        return
    if not _is_admin(update, context):  # no longer a moderator
        await comment_service.cancel(context.uow, context.resident.id)
        await _refuse(update, context)
        return
    stored = await _stored(context)
    if stored is not None and stored[0] == AWAITING_ITEM and stored[1].html:
        await _receive_item_key(update, context, stored[1], message.text)
    elif stored is not None and stored[0] == AWAITING_TIME and stored[1].audience is not None:
        await _receive_time(update, context, stored[1], message.text)
    else:
        await _receive_announcement(update, context, message)


async def _receive_announcement(update: Update, context: BotContext, message: Message) -> None:
    text = announcement_html(message)
    if not text:
        await _ask_again(update, context, "broadcast_not_text", step="text")
        return
    problem = validate_html(text)
    if problem is not None:
        code, _, detail = problem.partition(":")
        await _ask_again(update, context, "broadcast_invalid_html", code=code, detail=detail)
        return
    length = visible_length(text)
    if length > TEXT_LIMIT:
        await _ask_again(update, context, "broadcast_too_long", length=length, limit=TEXT_LIMIT)
        return
    # The preview: exactly the message residents get.
    try:
        await show(update, context, render(context, "announcement", html=Markup(text)), new=True)
    except BadRequest as exc:  # Telegram saw something our check did not
        await _ask_again(
            update, context, "broadcast_invalid_html", code="telegram", detail=exc.message
        )
        return
    draft = Draft(new_draft_id(), html=text)
    await _save(context, AWAITING_CHOICE, draft)
    await _show_audiences(update, context, draft)


async def _receive_item_key(update: Update, context: BotContext, draft: Draft, text: str) -> None:
    key = text.strip()
    item_id = None
    if _ITEM_KEY.match(key):
        item_id = await item_service.item_id_for_key(context.uow, key)
        if item_id is None and key.upper() != key:
            item_id = await item_service.item_id_for_key(context.uow, key.upper())
    if item_id is None:
        await show(
            update,
            context,
            render(context, "broadcast_item_unknown", key=key[:40]),
            [
                [
                    button(
                        label(context, "bc_change_audience"),
                        cb.BROADCAST_AUDIENCE.build(draft=draft.id, aud="menu"),
                    ),
                    *_cancel_row(context),
                ]
            ],
        )
        return
    draft = replace(draft, audience=Audience("item", item_id=item_id), at=None)
    await _save(context, AWAITING_CHOICE, draft)
    await _show_summary(update, context, draft, new=True)


async def _receive_time(update: Update, context: BotContext, draft: Draft, text: str) -> None:
    at = parse_local_time(text, _tz(context))
    if at is None or at <= utcnow():
        await _ask_again(
            update,
            context,
            "broadcast_time_invalid",
            problem="format" if at is None else "past",
            example=_example_time(context),
            tz=context.services.settings.timezone,
        )
        return
    draft = replace(draft, at=at)
    await _save(context, AWAITING_CHOICE, draft)
    if not await _show_summary(update, context, draft, new=True):
        await comment_service.cancel(context.uow, context.resident.id)
        await show(update, context, render(context, "cancelled", cancelled=True))


async def receive_non_text(update: Update, context: BotContext) -> None:
    """A sticker, photo, … while a draft is being written."""
    if not _is_admin(update, context):
        await comment_service.cancel(context.uow, context.resident.id)
        await _refuse(update, context)
        return
    steps = {AWAITING_ITEM: "item", AWAITING_TIME: "time", AWAITING_CHOICE: "choice"}
    await _ask_again(
        update,
        context,
        "broadcast_not_text",
        step=steps.get(context.resident.awaiting or "", "text"),
        example=_example_time(context),
    )


async def audience_button(update: Update, context: BotContext, args: cb.Args) -> None:
    if not _is_admin(update, context):
        await _refuse(update, context)
        return
    current = await _current(context, args)
    if current is None:
        await _stale(update, context)
        return
    draft, code = current[1], args.text("aud")
    if code == "menu":
        await _save(context, AWAITING_CHOICE, draft)
        await _show_audiences(update, context, draft)
    elif code == "fields":
        await _save(context, AWAITING_CHOICE, draft)
        await _show_fields(update, context, draft)
    elif code == "item":
        await _save(context, AWAITING_ITEM, draft)
        await _show_item_prompt(update, context, draft)
    else:
        audience = parse_audience_code(code)
        if audience is None or await _describe(context, audience) is None:
            await _stale(update, context)
            return
        if audience != draft.audience:
            draft = replace(draft, audience=audience, at=None)
        await _save(context, AWAITING_CHOICE, draft)
        await _show_summary(update, context, draft)


async def schedule_button(update: Update, context: BotContext, args: cb.Args) -> None:
    if not _is_admin(update, context):
        await _refuse(update, context)
        return
    current = await _current(context, args)
    audience = current[1].audience if current is not None else None
    if current is None or audience is None:
        await _stale(update, context)
        return
    draft = current[1]
    await _save(context, AWAITING_TIME, draft)
    back = cb.BROADCAST_AUDIENCE.build(draft=draft.id, aud=audience_code(audience))
    await show(
        update,
        context,
        render(
            context,
            "broadcast_time_prompt",
            example=_example_time(context),
            tz=context.services.settings.timezone,
        ),
        [[button(label(context, "back"), back), *_cancel_row(context)]],
    )


async def _queue(
    update: Update, context: BotContext, args: cb.Args, *, scheduled: bool
) -> announcements.Queued | None:
    user, chat = update.effective_user, update.effective_chat
    assert user is not None and chat is not None
    return await announcements.queue_draft(
        context.uow,
        context.resident.id,
        args.number("draft"),
        requested_by=user.id,
        progress_chat_id=chat.id,
        scheduled=scheduled,
        actor=actor(update),
    )


async def send_button(update: Update, context: BotContext, args: cb.Args) -> None:
    if not _is_admin(update, context):
        await _refuse(update, context)
        return
    queued = await _queue(update, context, args, scheduled=False)
    if queued is None:
        await _stale(update, context)
        return
    broadcast_id, count, _ = queued
    if context.services.delivery is not None:
        context.services.delivery.wake()
    await show(update, context, render(context, "broadcast_queued", id=broadcast_id, count=count))


async def confirm_button(update: Update, context: BotContext, args: cb.Args) -> None:
    if not _is_admin(update, context):
        await _refuse(update, context)
        return
    current = await _current(context, args)
    if current is not None and current[1].at is not None and current[1].at <= utcnow():
        # The time passed while the moderator looked at the summary: ask for a new one.
        await _save(context, AWAITING_TIME, current[1])
        await show(
            update,
            context,
            render(
                context,
                "broadcast_time_invalid",
                problem="past",
                example=_example_time(context),
                tz=context.services.settings.timezone,
            ),
            [_cancel_row(context)],
        )
        return
    queued = await _queue(update, context, args, scheduled=True)
    if queued is None:
        await _stale(update, context)
        return
    broadcast_id, count, draft = queued
    await show(
        update,
        context,
        render(
            context,
            "broadcast_scheduled",
            id=broadcast_id,
            count=count,
            at=draft.at,
            tz=context.services.settings.timezone,
        ),
        [[button(label(context, "bc_stop"), cb.BROADCAST_STOP.build(bid=broadcast_id))]],
    )


async def stop_button(update: Update, context: BotContext, args: cb.Args) -> None:
    """Cancel a queued or scheduled announcement."""
    if not _is_admin(update, context):
        await _refuse(update, context)
        return
    broadcast_id = args.number("bid")
    found = await context.uow.outbox.get(broadcast_id)
    if found is None or found.kind != "announcement":
        await _stale(update, context)
        return
    if not await broadcast_service.cancel(context.uow, broadcast_id, actor(update)):
        await answer(update, context, label(context, "bc_not_stopped", found.state), alert=True)
        await show(
            update,
            context,
            render(context, "broadcast_stopped", id=broadcast_id, state=found.state),
        )
        return
    await answer(update, context, label(context, "bc_stopped"))
    await show(
        update, context, render(context, "broadcast_stopped", id=broadcast_id, state="cancelled")
    )


# --------------------------------------------------------------------------- /digest


async def digest_command(update: Update, context: BotContext) -> None:
    user, chat = update.effective_user, update.effective_chat
    if user is None or chat is None:
        return
    if not _is_admin(update, context):
        await _refuse(update, context)
        return
    words = [word.lower() for word in context.args or []]
    delivery = context.services.delivery
    if delivery is None or words not in (["preview"], ["send"], ["send", "force"]):
        await show(update, context, render(context, "digest_usage"))
        return
    now = utcnow()
    await context.uow.end_reads()
    if words == ["preview"]:
        if not await delivery.preview(chat.id, context.lang, context.resident.id, now):
            await show(update, context, render(context, "digest_nothing"))
        return
    period_key = week_key(now, context.services.settings.tz)
    if words == ["send", "force"]:
        period_key = f"{period_key}:force:{now:%Y%m%dT%H%M%S%f}"
    created = await delivery.create_digest(
        period_key, now, requested_by=user.id, progress_chat_id=chat.id, actor=actor(update)
    )
    if created is None:
        await show(update, context, render(context, "digest_exists"))
        return
    await show(
        update,
        context,
        render(context, "digest_send", id=created.broadcast_id, empty=created.data.is_empty),
    )


def register(app: Application) -> None:  # type: ignore[type-arg]
    private = filters.ChatType.PRIVATE
    app.add_handler(CommandHandler("broadcast", broadcast_command, filters=private))
    app.add_handler(CommandHandler("digest", digest_command, filters=private))
    app.add_handler(on_callback(cb.BROADCAST_AUDIENCE, audience_button))
    app.add_handler(on_callback(cb.BROADCAST_SEND, send_button))
    app.add_handler(on_callback(cb.BROADCAST_SCHEDULE, schedule_button))
    app.add_handler(on_callback(cb.BROADCAST_CONFIRM, confirm_button))
    app.add_handler(on_callback(cb.BROADCAST_STOP, stop_button))
