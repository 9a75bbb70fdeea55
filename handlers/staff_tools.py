"""The moderators' reporting and role tools: /mod (admins manage roles), /audit (the latest
moderator actions), /stats (numbers with a chart) and /export (open data as files)."""

from __future__ import annotations

import asyncio
import logging
import re

from telegram import InputMediaDocument, Update
from telegram.constants import ParseMode
from telegram.error import Forbidden, TelegramError
from telegram.ext import Application, CommandHandler, TypeHandler, filters

from bot import charts
from bot.context import BotContext
from bot.processor import current_scope
from domain import export as export_service
from domain import residents as resident_service
from domain import staff as staff_service
from domain import stats as stats_service
from domain.staff import RoleChange, StaffMember
from handlers.common import NO_PREVIEW, actor, label, render, show
from storage.models import utcnow

log = logging.getLogger(__name__)

PRIVATE = filters.ChatType.PRIVATE
AUDIT_SHOWN = 20
#: Telegram user ids are positive and have at most 52 bits.
USER_ID = re.compile(r"^[0-9]{1,16}$")
USER_ID_MAX = 2**52


async def _refuse(update: Update, context: BotContext) -> None:
    await show(update, context, render(context, "not_allowed"))


def _user_id(text: str) -> int | None:
    if not USER_ID.match(text):
        return None
    value = int(text)
    return value if 0 < value < USER_ID_MAX else None


# --------------------------------------------------------------------------- /mod


async def _set_menu(context: BotContext, telegram_id: int, role: str | None) -> None:
    from bot.app import set_staff_menu  # bot.app imports the handlers

    await set_staff_menu(context.bot, context.renderer, telegram_id, role)


async def _tell(context: BotContext, member: StaffMember, role: str | None) -> bool:
    """Tell someone who started the bot about their new role (in their language)."""
    if not member.reachable:
        return False
    language = member.language or context.lang
    if role is None:
        text = context.renderer.render("mod_revoked", language)
    else:
        text = context.renderer.render("mod_granted", language, role=role)
    try:
        await context.bot.send_message(
            member.telegram_id, text, parse_mode=ParseMode.HTML, link_preview_options=NO_PREVIEW
        )
    except Forbidden:
        await resident_service.mark_blocked(context.uow, member.telegram_id)
        return False
    except TelegramError as exc:
        log.warning("telling a new moderator failed: %s", exc)
        return False
    return True


async def mod_command(update: Update, context: BotContext) -> None:
    if not context.is_admin:
        if context.is_moderator:
            await show(update, context, render(context, "mod_admins_only"))
        else:
            await _refuse(update, context)
        return
    admin_ids = context.services.settings.admin_ids
    args = list(context.args or [])
    if not args:
        members = await staff_service.staff_members(context.uow, admin_ids)
        await show(update, context, render(context, "mod_list", members=members))
        return
    verb = args[0].lower()
    as_admin = len(args) == 3 and verb == "add" and args[2].lower() == "admin"
    if verb not in ("add", "remove") or len(args) != (3 if as_admin else 2):
        await show(update, context, render(context, "mod_usage", problem=None, value=""))
        return
    telegram_id = _user_id(args[1])
    if telegram_id is None:
        await show(update, context, render(context, "mod_usage", problem="bad_id", value=args[1]))
        return
    role: str | None = staff_service.ADMIN if as_admin else staff_service.MODERATOR
    if verb == "remove":
        role = None
    result = await staff_service.set_role(context.uow, actor(update), telegram_id, role, admin_ids)
    member = await staff_service.member(context.uow, telegram_id, admin_ids)
    told = False
    if result in (RoleChange.GRANTED, RoleChange.REVOKED):
        await context.uow.end_reads()
        await _set_menu(context, telegram_id, role)
        told = await _tell(context, member, role)
    await show(
        update, context, render(context, "mod_changed", result=result, member=member, told=told)
    )


async def menu_for_new_staff(update: Update, context: BotContext) -> None:
    """Someone made a moderator before they ever wrote to the bot gets their command menu
    on first contact (Telegram refuses a menu for a chat that does not exist yet)."""
    scope = current_scope.get()
    if scope is None or scope.resident is None or not scope.resident.is_new:
        return
    if context.is_moderator:
        await context.uow.end_reads()
        await _set_menu(context, scope.resident.telegram_id, context.role)


# --------------------------------------------------------------------------- /audit


async def audit_command(update: Update, context: BotContext) -> None:
    if not context.is_moderator:
        await _refuse(update, context)
        return
    entries = await staff_service.latest_actions(context.uow, AUDIT_SHOWN)
    await show(update, context, render(context, "audit", entries=entries))


# --------------------------------------------------------------------------- /stats


async def stats_command(update: Update, context: BotContext) -> None:
    chat = update.effective_chat
    if chat is None or not context.is_moderator:
        await _refuse(update, context)
        return
    stats = await stats_service.collect(context.uow, utcnow(), context.services.settings.tz)
    await show(update, context, render(context, "stats", stats=stats))
    lang = context.lang
    picture = await asyncio.to_thread(
        charts.stats_chart,
        fields=[f.title_in(lang) for f in stats.fields],
        field_series=[
            (label(context, "stats_supports"), [f.supports for f in stats.fields]),
            (label(context, "stats_comments"), [f.comments for f in stats.fields]),
            (label(context, "stats_follows"), [f.follows for f in stats.fields]),
        ],
        weeks=[label(context, "stats_week", w.number) for w in stats.weeks],
        week_series=[
            (label(context, "stats_supports"), [w.supports for w in stats.weeks]),
            (label(context, "stats_comments"), [w.comments for w in stats.weeks]),
        ],
        titles=(label(context, "stats_chart_fields"), label(context, "stats_chart_weeks")),
    )
    await context.bot.send_photo(
        chat.id, picture, caption=label(context, "stats_chart_caption", stats.as_of)
    )


# --------------------------------------------------------------------------- /export


async def export_command(update: Update, context: BotContext) -> None:
    chat = update.effective_chat
    if chat is None or not context.is_moderator:
        await _refuse(update, context)
        return
    now = utcnow()
    data, files = await export_service.export_files(context.uow, context.services.settings.tz, now)
    items, goals, comments = data.counts()
    await show(
        update,
        context,
        render(context, "export_ready", at=now, items=items, goals=goals, comments=comments),
    )
    await context.bot.send_media_group(
        chat.id,
        [InputMediaDocument(content, filename=name) for name, content in files.items()],
    )


def register(app: Application) -> None:  # type: ignore[type-arg]
    app.add_handler(CommandHandler("mod", mod_command, filters=PRIVATE))
    app.add_handler(CommandHandler("audit", audit_command, filters=PRIVATE))
    app.add_handler(CommandHandler("stats", stats_command, filters=PRIVATE))
    app.add_handler(CommandHandler("export", export_command, filters=PRIVATE))
    # After everything else has handled the update (group 0).
    app.add_handler(TypeHandler(Update, menu_for_new_staff), group=1)
