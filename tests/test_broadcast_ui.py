"""The moderators' side of delivery, end to end through the fake Bot API: /broadcast (text with
HTML, audience, preview with the number of recipients, send now or schedule, cancel) and
/digest preview|send. The sender runs in the background; tests deliver with `drain()`."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, update

from bot import callbacks as cb
from bot.telegram_text import validate_html
from domain import items as item_service
from domain import residents as resident_service
from domain.announcements import Draft, parse_local_time
from handlers.broadcast import announcement_html, audience_code, parse_audience_code
from storage.models import AuditEntry, Broadcast, ConversationState, Resident, utcnow
from tests.conftest import make_settings
from tests.fake_telegram import ApiCall, FakeTelegram
from tests.harness import BotHarness, datas_of, sent, texts

JSON = dict[str, Any]
TZ = ZoneInfo("Europe/Berlin")
ADMIN = 900001
ANNA, BEN, CARL, DORA, EVA = 2001, 2002, 2003, 2004, 2005
MARKER = "Bürgerforum am Freitag"


pytestmark = pytest.mark.usefixtures("well_behaved")


# --------------------------------------------------------------------------- helpers


async def audit_entries(bot: BotHarness) -> list[AuditEntry]:
    async with bot.database.uow() as uow:
        return list(
            (await uow.session.execute(select(AuditEntry).order_by(AuditEntry.id))).scalars()
        )


async def start(bot: BotHarness, user_id: int, language: str = "de") -> JSON:
    user = bot.user(user_id, language)
    await bot.send(user, "/start")
    return user


async def town(bot: BotHarness) -> JSON:
    """The moderator (German) and residents: Anna, Ben (German), Carl (English), Dora
    (German, blocked the bot). Returns the moderator."""
    admin = await start(bot, ADMIN)
    await start(bot, ANNA)
    await start(bot, BEN)
    await start(bot, CARL, "en")
    await start(bot, DORA)
    async with bot.database.uow() as uow:
        await resident_service.mark_blocked(uow, DORA)
    return admin


async def follow(bot: BotHarness, telegram_id: int, key: str) -> None:
    async with bot.database.uow() as uow:
        resident = await uow.residents.by_telegram_id(telegram_id)
        row = await uow.content.item_by_key(key)
        assert resident is not None and row is not None
        await item_service.set_follow(uow, resident.id, row.item.id, True)


def replies(calls: list[ApiCall]) -> list[ApiCall]:
    """The messages an update answered with, without the sender's progress message, which
    the sender (a task of its own) may post while the update is still being handled."""
    return [c for c in sent(calls) if "Versand läuft" not in (c.visible_text or "")]


async def drain(bot: BotHarness) -> None:
    await bot.app.bot_data["services"].delivery.sender.drain()


def deliveries(bot: BotHarness, since: int, marker: str = MARKER) -> Counter[int]:
    """Chat id → how many messages containing `marker` went there (from call `since` on)."""
    return Counter(
        int(c.params["chat_id"])
        for c in bot.fake.calls[since:]
        if c.method == "sendMessage" and c.ok and marker in (c.visible_text or "")
    )


async def broadcasts(bot: BotHarness) -> list[Broadcast]:
    async with bot.database.uow() as uow:
        rows = await uow.session.execute(
            select(Broadcast).where(Broadcast.kind == "announcement").order_by(Broadcast.id)
        )
        return list(rows.scalars())


async def awaiting(bot: BotHarness, telegram_id: int) -> tuple[str | None, JSON | None]:
    async with bot.database.uow() as uow:
        resident = await uow.residents.by_telegram_id(telegram_id)
        assert resident is not None
        state = await uow.session.get(ConversationState, resident.id)
        return (state.awaiting, state.payload) if state else (None, None)


async def compose(bot: BotHarness, admin: JSON, text: str, **kwargs: Any) -> list[ApiCall]:
    await bot.send(admin, "/broadcast")
    return await bot.send(admin, text, **kwargs)


def summary(bot: BotHarness) -> str:
    """The moderator's newest message from the bot's dialogue – not a delivered announcement
    or a progress message, which the sender may write at any moment."""
    for message in reversed(bot.fake.messages(ADMIN)):
        text = str(message.get("text", ""))
        if not text.startswith(("📣 Neues", "📣 News", "📤 Versand", "✅ Versand", "📤 Sending")):
            return text
    raise AssertionError("no message")


def button_data(bot: BotHarness, prefix: str) -> tuple[str, int]:
    """The callback data starting with `prefix` on the moderator's newest message with one,
    and that message's id."""
    for message in reversed(bot.fake.messages(ADMIN)):
        for data in datas_of(message):
            if data.startswith(prefix):
                return data, int(message["message_id"])
    raise AssertionError(f"no button {prefix}")


def answers(calls: list[ApiCall]) -> list[str]:
    return [str(c.params.get("text") or "") for c in calls if c.method == "answerCallbackQuery"]


# --------------------------------------------------------------------------- audiences


async def test_everyone_gets_it_once_blocked_residents_excluded(bot: BotHarness) -> None:
    admin = await town(bot)
    calls = await compose(bot, admin, f"<b>{MARKER}</b> um 18 Uhr im Rathaus.")
    preview, menu = sent(calls)
    assert preview.params["parse_mode"] == "HTML"
    assert preview.text is not None and f"<b>{MARKER}</b>" in preview.text
    assert "Neues vom InnoLab" in (preview.visible_text or "")
    assert "Wer soll sie bekommen?" in (menu.visible_text or "")
    await bot.tap(admin, "Alle")
    assert "Empfänger*innen: 4" in summary(bot), "moderator, Anna, Ben, Carl – not Dora"
    assert await broadcasts(bot) == [], "nothing is queued before the moderator confirms"
    since = len(bot.fake.calls)
    calls = await bot.tap(admin, "Jetzt senden")
    assert "ist unterwegs an 4 Empfänger*innen" in summary(bot)
    await drain(bot)
    assert deliveries(bot, since) == {ADMIN: 1, ANNA: 1, BEN: 1, CARL: 1}
    english = [c for c in bot.fake.calls[since:] if c.method == "sendMessage" and c.chat_id == CARL]
    assert "News from the InnoLab" in (english[0].visible_text or "")
    [row] = await broadcasts(bot)
    assert (row.state, row.total, row.sent, row.requested_by) == ("done", 4, 4, ADMIN)
    [entry] = await audit_entries(bot)
    assert (entry.action, entry.target, entry.actor_telegram_id) == (
        "broadcast",
        f"#{row.id}",
        ADMIN,
    )
    assert entry.details == {"audience": {"type": "all"}, "at": None, "recipients": 4}


async def test_one_language(bot: BotHarness) -> None:
    admin = await town(bot)
    await compose(bot, admin, MARKER)
    await bot.tap(admin, "Deutsch")
    assert "auf Deutsch nutzen" in summary(bot)
    assert "Empfänger*innen: 3" in summary(bot)
    await bot.tap(admin, "Empfänger*innen ändern")
    await bot.tap(admin, "English")
    assert "Empfänger*innen: 1" in summary(bot)
    since = len(bot.fake.calls)
    await bot.tap(admin, "Jetzt senden")
    await drain(bot)
    assert deliveries(bot, since) == {CARL: 1}


async def test_followers_of_one_item(bot: BotHarness) -> None:
    admin = await town(bot)
    for resident in (ANNA, CARL, DORA):
        await follow(bot, resident, "TD-02")
    await follow(bot, BEN, "TD-03")
    await compose(bot, admin, MARKER)
    await bot.tap(admin, "Wer einem Punkt folgt")
    [unknown] = sent(await bot.send(admin, "TD-99"))
    assert "TD-99" in (unknown.visible_text or "") and "gibt es nicht" in (
        unknown.visible_text or ""
    )
    [shown] = sent(await bot.send(admin, "td-02"))
    assert "alle, die TD-02 folgen" in (shown.visible_text or "")
    assert "Empfänger*innen: 2" in summary(bot)
    since = len(bot.fake.calls)
    await bot.tap(admin, "Jetzt senden")
    await drain(bot)
    assert deliveries(bot, since) == {ANNA: 1, CARL: 1}


async def test_followers_of_an_action_field(bot: BotHarness) -> None:
    admin = await town(bot)
    await follow(bot, ANNA, "TD-02")  # pflege
    await follow(bot, ANNA, "TD-03")  # pflege as well: still one message
    await follow(bot, BEN, "TD-05")  # pflege
    await follow(bot, CARL, "TD-01")  # fachkraefte
    await follow(bot, DORA, "TD-03")  # blocked
    await compose(bot, admin, MARKER)
    await bot.tap(admin, "Wer einem Handlungsfeld folgt")
    await bot.tap(admin, "Pflege wertschätzen")
    assert "Pflege wertschätzen" in summary(bot)
    assert "Empfänger*innen: 2" in summary(bot)
    since = len(bot.fake.calls)
    await bot.tap(admin, "Jetzt senden")
    await drain(bot)
    assert deliveries(bot, since) == {ANNA: 1, BEN: 1}


async def test_progress_message_ends_with_the_final_summary(bot: BotHarness) -> None:
    admin = await town(bot)
    bot.fake.block(BEN)  # Telegram answers 403: Ben is skipped from now on
    await compose(bot, admin, MARKER)
    await bot.tap(admin, "Deutsch")
    await bot.tap(admin, "Jetzt senden")
    await drain(bot)
    progress = [m for m in bot.fake.messages(ADMIN) if "Ankündigung #" in m.get("text", "")]
    final = progress[-1]["text"]
    assert "Versand abgeschlossen" in final
    assert "Gesendet: 2 von 3" in final
    assert "übersprungen: 1" in final or "Fehlgeschlagen: 1" in final


# --------------------------------------------------------------------------- the text


async def test_telegram_formatting_arrives_as_html(bot: BotHarness) -> None:
    admin = await town(bot)
    text = f"Wichtig: {MARKER}, Details auf https://www.dortmund.de"
    bold = [
        {"type": "bold", "offset": 0, "length": 7},
        {"type": "url", "offset": text.index("https"), "length": len("https://www.dortmund.de")},
    ]
    [preview, _] = sent(await compose(bot, admin, text, entities=bold))
    assert preview.text is not None and "<b>Wichtig</b>: " in preview.text
    await bot.tap(admin, "English")
    since = len(bot.fake.calls)
    await bot.tap(admin, "Jetzt senden")
    await drain(bot)
    [message] = [
        c for c in bot.fake.calls[since:] if c.method == "sendMessage" and c.chat_id == CARL
    ]
    assert message.text is not None and "<b>Wichtig</b>: " in message.text
    assert message.params["parse_mode"] == "HTML"


async def test_typed_html_is_kept(bot: BotHarness) -> None:
    admin = await town(bot)
    typed = f'<b>{MARKER}</b> &amp; <i>mehr</i> – <a href="https://www.dortmund.de">Infos</a>'
    await compose(bot, admin, typed)
    await bot.tap(admin, "English")
    since = len(bot.fake.calls)
    await bot.tap(admin, "Jetzt senden")
    await drain(bot)
    [message] = [
        c for c in bot.fake.calls[since:] if c.method == "sendMessage" and c.chat_id == CARL
    ]
    assert message.text is not None and typed in message.text
    assert f"{MARKER} & mehr – Infos" in (message.visible_text or "")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (f"<b>{MARKER}", "<b> wird nicht geschlossen"),
        (f"<div>{MARKER}</div>", "<div> wird nicht unterstützt"),
        (f"{MARKER} Q&A", "„&“ beginnt kein gültiges Zeichen"),
        (f"{MARKER} 3 < 4", "„<“ beginnt kein Tag"),
        (f'<a href="javascript:alert(1)">{MARKER}</a>', "https://, http:// oder tg://"),
    ],
)
async def test_invalid_html_is_refused_with_a_reason(
    bot: BotHarness, text: str, reason: str
) -> None:
    admin = await town(bot)
    [refusal] = sent(await compose(bot, admin, text))
    assert reason in (refusal.visible_text or "")
    assert "gespeichert wurde nichts" in (refusal.visible_text or "")
    assert (await awaiting(bot, ADMIN))[0] == "broadcast_text", "the prompt stays"
    # The corrected text goes through.
    [preview, _] = sent(await bot.send(admin, f"<b>{MARKER}</b>"))
    assert "Neues vom InnoLab" in (preview.visible_text or "")
    assert await broadcasts(bot) == []


async def test_over_long_text_is_refused(bot: BotHarness) -> None:
    admin = await town(bot)
    [refusal] = sent(await compose(bot, admin, "<b>" + "x" * 3501 + "</b>"))
    assert "3.501 Zeichen" in (refusal.visible_text or "")
    assert "höchstens 3.500" in (refusal.visible_text or "")
    assert (await awaiting(bot, ADMIN))[0] == "broadcast_text"
    [_, menu] = sent(await bot.send(admin, "x" * 3500))
    assert "Wer soll sie bekommen?" in (menu.visible_text or "")
    assert await broadcasts(bot) == []


async def test_non_text_asks_again(bot: BotHarness) -> None:
    admin = await town(bot)
    await bot.send(admin, "/broadcast")
    sticker = {
        "sticker": {
            "file_id": "s1",
            "file_unique_id": "s1",
            "width": 1,
            "height": 1,
            "is_animated": False,
            "is_video": False,
            "type": "regular",
        }
    }
    [again] = sent(await bot.send(admin, None, extra=sticker))
    assert "als Text" in (again.visible_text or "")
    assert (await awaiting(bot, ADMIN))[0] == "broadcast_text"


# --------------------------------------------------------------------------- who may


async def test_non_admin_cannot_broadcast(bot: BotHarness) -> None:
    await town(bot)
    anna = bot.user(ANNA, "de")
    [refusal] = sent(await bot.send(anna, "/broadcast"))
    assert "nur Moderator*innen" in (refusal.visible_text or "")
    assert await awaiting(bot, ANNA) == (None, None)
    [hint] = sent(await bot.send(anna, MARKER))
    assert MARKER not in (hint.visible_text or "")
    assert await broadcasts(bot) == []


async def test_forged_buttons_from_a_non_admin_change_nothing(bot: BotHarness) -> None:
    admin = await town(bot)
    await compose(bot, admin, MARKER)
    await bot.tap(admin, "Alle")
    [send_data] = [d for d in datas_of(bot.screen(ADMIN)) if d.startswith("bcs:")]
    draft = cb.BROADCAST_SEND.parse(send_data)
    assert draft is not None
    anna = bot.user(ANNA, "de")
    await bot.send(anna, "/menu")
    forged = [
        send_data,
        cb.BROADCAST_AUDIENCE.build(draft=draft.number("draft"), aud="Lde"),
        cb.BROADCAST_SCHEDULE.build(draft=draft.number("draft")),
        cb.BROADCAST_CONFIRM.build(draft=draft.number("draft")),
    ]
    for data in forged:
        calls = await bot.press(anna, data)
        assert answers(calls) == ["Das dürfen nur Moderator*innen."]
    assert await broadcasts(bot) == []
    assert (await awaiting(bot, ADMIN))[0] == "broadcast_choice", "the moderator's draft is intact"
    # A scheduled one cannot be cancelled by a resident either.
    await bot.tap(admin, "Zeitpunkt wählen")
    later = dt.datetime.now(TZ) + dt.timedelta(days=2)
    await bot.send(admin, later.strftime("%d.%m.%Y %H:%M"))
    await bot.tap(admin, "Senden am")
    [row] = await broadcasts(bot)
    calls = await bot.press(anna, cb.BROADCAST_STOP.build(bid=row.id))
    assert answers(calls) == ["Das dürfen nur Moderator*innen."]
    [row] = await broadcasts(bot)
    assert row.state == "scheduled"


async def test_stale_draft_buttons_send_nothing(bot: BotHarness) -> None:
    admin = await town(bot)
    await compose(bot, admin, MARKER)
    await bot.tap(admin, "Alle")
    summary_message = bot.screen(ADMIN)
    [send_data] = [d for d in datas_of(summary_message) if d.startswith("bcs:")]
    await bot.tap(admin, "Jetzt senden")
    calls = await bot.press(admin, send_data, message_id=summary_message["message_id"])
    assert answers(calls) == [
        "Dieser Knopf ist nicht mehr aktuell. Bitte öffne das Menü neu: /menu"
    ]
    # A new draft: the old draft's buttons are out of date, too.
    await compose(bot, admin, "Zweiter Text")
    calls = await bot.press(admin, send_data, message_id=summary_message["message_id"])
    assert "nicht mehr aktuell" in answers(calls)[0]
    # Leaving the draft (another command) makes its buttons stale.
    await bot.tap(admin, "Alle")
    second, message_id = button_data(bot, "bcs:")
    await bot.send(admin, "/menu")
    calls = await bot.press(admin, second, message_id)
    assert "nicht mehr aktuell" in answers(calls)[0]
    assert len(await broadcasts(bot)) == 1


async def test_cancel_drops_the_draft(bot: BotHarness) -> None:
    admin = await town(bot)
    await compose(bot, admin, MARKER)
    await bot.tap(admin, "Alle")
    [send_data] = [d for d in datas_of(bot.screen(ADMIN)) if d.startswith("bcs:")]
    await bot.tap(admin, "Abbrechen")
    assert "Abgebrochen" in summary(bot)
    calls = await bot.press(admin, send_data)
    assert "nicht mehr aktuell" in answers(calls)[0]
    assert await broadcasts(bot) == []


# --------------------------------------------------------------------------- scheduling


async def test_scheduled_broadcast_waits_until_due(bot: BotHarness) -> None:
    admin = await town(bot)
    await compose(bot, admin, MARKER)
    await bot.tap(admin, "Deutsch")
    await bot.tap(admin, "Zeitpunkt wählen")
    [bad] = sent(await bot.send(admin, "morgen früh"))
    assert "verstehe ich nicht" in (bad.visible_text or "")
    [past] = sent(await bot.send(admin, "01.01.2020 10:00"))
    assert "schon vorbei" in (past.visible_text or "")
    later = (dt.datetime.now(TZ) + dt.timedelta(days=2)).replace(
        hour=10, minute=15, second=0, microsecond=0
    )
    [confirm] = sent(await bot.send(admin, later.strftime("%Y-%m-%d %H:%M")))
    assert "10:15 Uhr" in (confirm.visible_text or "")
    assert "Empfänger*innen: 3" in (confirm.visible_text or "")
    await bot.tap(admin, "Senden am")
    assert "ist geplant" in summary(bot)
    [row] = await broadcasts(bot)
    assert row.state == "scheduled" and row.scheduled_for == later
    assert row.progress_chat_id == ADMIN

    since = len(bot.fake.calls)
    await drain(bot)
    assert deliveries(bot, since) == {}, "not before it is due"

    async with bot.database.uow() as uow, uow.write():
        await uow.session.execute(
            update(Broadcast)
            .where(Broadcast.id == row.id)
            .values(scheduled_for=utcnow() - dt.timedelta(minutes=1))
        )
    await drain(bot)
    assert deliveries(bot, since) == {ADMIN: 1, ANNA: 1, BEN: 1}
    # Too late to cancel now.
    calls = await bot.tap(admin, "Ankündigung abbrechen")
    assert answers(calls) == ["Zu spät: Sie ist schon verschickt."]


async def test_cancel_a_scheduled_broadcast(bot: BotHarness) -> None:
    admin = await town(bot)
    await compose(bot, admin, MARKER)
    await bot.tap(admin, "Alle")
    await bot.tap(admin, "Zeitpunkt wählen")
    later = dt.datetime.now(TZ) + dt.timedelta(hours=3)
    await bot.send(admin, later.strftime("%d.%m.%Y %H:%M"))
    await bot.tap(admin, "Senden am")
    calls = await bot.tap(admin, "Ankündigung abbrechen")
    assert answers(calls) == ["Ankündigung abgebrochen."]
    assert "ist abgebrochen" in summary(bot)
    [row] = await broadcasts(bot)
    assert row.state == "cancelled"
    assert [e.action for e in await audit_entries(bot)] == ["broadcast", "broadcast_stop"]
    async with bot.database.uow() as uow, uow.write():
        await uow.session.execute(
            update(Broadcast)
            .where(Broadcast.id == row.id)
            .values(scheduled_for=utcnow() - dt.timedelta(minutes=1))
        )
    since = len(bot.fake.calls)
    await drain(bot)
    assert deliveries(bot, since) == {}
    calls = await bot.press(admin, cb.BROADCAST_STOP.build(bid=row.id))
    assert answers(calls) == ["Sie wurde schon abgebrochen."]


async def test_draft_survives_restarts(fake: FakeTelegram, sqlite_url: str) -> None:
    settings = make_settings(fake, sqlite_url)
    async with BotHarness.running(fake, settings) as bot:
        admin = await town(bot)
        await compose(bot, admin, f"<i>{MARKER}</i>")
    async with BotHarness.running(fake, settings, with_content=False) as bot:
        await bot.tap(admin, "Deutsch")
        assert "Empfänger*innen: 3" in summary(bot)
    async with BotHarness.running(fake, settings, with_content=False) as bot:
        since = len(bot.fake.calls)
        await bot.tap(admin, "Jetzt senden")
        await drain(bot)
        assert deliveries(bot, since) == {ADMIN: 1, ANNA: 1, BEN: 1}
        [message] = [
            c for c in bot.fake.calls[since:] if c.method == "sendMessage" and c.chat_id == ANNA
        ]
        assert message.text is not None and f"<i>{MARKER}</i>" in message.text


async def test_time_prompt_survives_a_restart(fake: FakeTelegram, sqlite_url: str) -> None:
    settings = make_settings(fake, sqlite_url)
    async with BotHarness.running(fake, settings) as bot:
        admin = await town(bot)
        await compose(bot, admin, MARKER)
        await bot.tap(admin, "English")
        await bot.tap(admin, "Zeitpunkt wählen")
    async with BotHarness.running(fake, settings, with_content=False) as bot:
        later = dt.datetime.now(TZ) + dt.timedelta(days=1)
        [confirm] = sent(await bot.send(admin, later.strftime("%Y-%m-%d %H:%M")))
        assert "Empfänger*innen: 1" in (confirm.visible_text or "")
        await bot.tap(admin, "Senden am")
        [row] = await broadcasts(bot)
        assert row.state == "scheduled"


# --------------------------------------------------------------------------- /digest


async def activity(bot: BotHarness) -> None:
    """Something for the digest: Anna and Carl support items."""
    for user_id, language, key, button in (
        (ANNA, "de", "TD-01", "Unterstützen"),
        (CARL, "en", "TD-02", "Support"),
    ):
        user = bot.user(user_id, language)
        await bot.send(user, f"/start item_{key}")
        await bot.tap(user, button)


def digest_chats(calls: list[ApiCall]) -> set[int]:
    """Chats that got a digest (as a photo with caption, or as a message)."""
    return {
        int(c.params["chat_id"])
        for c in calls
        if c.method in ("sendMessage", "sendPhoto")
        and c.ok
        and any(h in (c.visible_text or "") for h in ("Dein Wochenrückblick", "Your weekly digest"))
    }


async def test_digest_usage_and_nothing_to_preview(fake: FakeTelegram, sqlite_url: str) -> None:
    settings = make_settings(fake, sqlite_url)
    async with BotHarness.running(fake, settings, with_content=False) as bot:
        admin = await start(bot, ADMIN)
        [usage] = sent(await bot.send(admin, "/digest"))
        assert "/digest preview" in (usage.visible_text or "")
        [usage] = sent(await bot.send(admin, "/digest launch"))
        assert "/digest send force" in (usage.visible_text or "")
        [nothing] = sent(await bot.send(admin, "/digest preview"))
        assert "noch nichts passiert" in (nothing.visible_text or "")
        [reply] = sent(await bot.send(admin, "/digest send"))
        assert "nichts zu senden" in (reply.visible_text or "")


async def test_digest_preview_goes_to_the_moderator_only(bot: BotHarness) -> None:
    admin = await town(bot)
    await activity(bot)
    calls = await bot.send(admin, "/digest preview")
    targets = {c.chat_id for c in calls if c.method in ("sendMessage", "sendPhoto")}
    assert targets == {ADMIN}
    assert any("Dein Wochenrückblick" in (c.visible_text or "") for c in calls)
    async with bot.database.uow() as uow:
        rows = await uow.session.execute(select(Broadcast))
        assert list(rows.scalars()) == [], "a preview stores nothing"


async def test_digest_send_once_a_week_unless_forced(bot: BotHarness) -> None:
    admin = await town(bot)
    await activity(bot)
    since = len(bot.fake.calls)
    [queued] = replies(await bot.send(admin, "/digest send"))
    assert "ist unterwegs" in (queued.visible_text or "")
    await drain(bot)
    assert digest_chats(bot.fake.calls[since:]) == {ADMIN, ANNA, BEN, CARL}, "not Dora"
    progress = [m for m in bot.fake.messages(ADMIN) if "Wochenrückblick #" in m.get("text", "")]
    assert "Versand abgeschlossen" in progress[-1]["text"]

    [refused] = sent(await bot.send(admin, "/digest send"))
    assert "/digest send force" in (refused.visible_text or "")

    ben = bot.user(BEN, "de")  # news since the first digest
    await bot.send(ben, "/start item_TD-04")
    await bot.tap(ben, "Unterstützen")
    since = len(bot.fake.calls)
    [forced] = replies(await bot.send(admin, "/digest send force"))
    assert "ist unterwegs" in (forced.visible_text or "")
    await drain(bot)
    assert digest_chats(bot.fake.calls[since:]) == {ADMIN, ANNA, BEN, CARL}
    async with bot.database.uow() as uow:
        rows = list((await uow.session.execute(select(Broadcast))).scalars())
    assert [r.kind for r in rows] == ["digest", "digest"]
    assert all(r.requested_by == ADMIN and r.progress_chat_id == ADMIN for r in rows)
    assert [e.action for e in await audit_entries(bot)] == ["digest_send", "digest_send"]


async def test_non_admin_digest_is_refused(bot: BotHarness) -> None:
    await town(bot)
    await activity(bot)
    anna = bot.user(ANNA, "de")
    for command in ("/digest preview", "/digest send", "/digest"):
        calls = await bot.send(anna, command)
        assert texts(calls) == ["🛡 Diesen Befehl können nur Moderator*innen verwenden."]
    async with bot.database.uow() as uow:
        assert list((await uow.session.execute(select(Broadcast))).scalars()) == []


async def test_english_moderator_sees_english(bot: BotHarness) -> None:
    admin = bot.user(ADMIN, "en")
    await bot.send(admin, "/start")
    await start(bot, ANNA)
    [prompt] = sent(await bot.send(admin, "/broadcast"))
    assert "New announcement" in (prompt.visible_text or "")
    [preview, menu] = sent(await bot.send(admin, MARKER))
    assert "News from the InnoLab" in (preview.visible_text or "")
    assert menu.button_texts()[:3] == ["👥 Everyone", "🗣 Deutsch", "🗣 English"]
    await bot.tap(admin, "Everyone")
    assert "Recipients: 2" in summary(bot)


# --------------------------------------------------------------------------- units


@pytest.mark.parametrize(
    "text",
    [
        "plain text",
        "<b>bold</b> <strong>s</strong> <i>i</i> <em>e</em> <u>u</u> <ins>n</ins>",
        "<s>s</s> <strike>s</strike> <del>d</del>",
        '<span class="tg-spoiler">x</span> <tg-spoiler>y</tg-spoiler>',
        '<a href="https://example.org/?a=1&amp;b=2">link</a> <a href="tg://user?id=1">me</a>',
        "<a href='http://example.org'>single quotes</a>",
        "<code>x &lt; y</code> <pre>block</pre>",
        '<pre><code class="language-python">print(1)</code></pre>',
        "<blockquote>q</blockquote> <blockquote expandable>long</blockquote>",
        '<tg-emoji emoji-id="5368324170671202286">👍</tg-emoji>',
        "<b>bold <i>both</i> <u>under <s>all</s></u></b>",
        "&lt; &gt; &amp; &quot; &#39; &#x1F600; a > b",
        "<B>upper case</B>",
        "<b><blockquote>quote in bold</blockquote></b>",
        "",
    ],
)
def test_validate_html_accepts_telegram_html(text: str) -> None:
    assert validate_html(text) is None


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("<b>open", "not_closed:b"),
        ("<b><i>crossed</b></i>", "not_closed:i"),
        ("close</b>", "unexpected_end:b"),
        ("<div>x</div>", "unsupported_tag:div"),
        ("<br>", "unsupported_tag:br"),
        ("<script>x</script>", "unsupported_tag:script"),
        ("Q&A", "bad_entity"),
        ("&nbsp;", "bad_entity:&nbsp;"),
        ("&#0;", "bad_entity"),
        ("3 < 4", "stray_lt"),
        ("<3", "stray_lt"),
        ("<b", "unfinished_tag:b"),
        ('<a href="x>y</a>', "unfinished_tag:a"),
        ("<a>no href</a>", "bad_link"),
        ('<a href="javascript:alert(1)">x</a>', "bad_link"),
        ('<a href="ftp://x">x</a>', "bad_link"),
        ("<span>x</span>", "bad_span"),
        ('<span class="other">x</span>', "bad_span"),
        ("<tg-emoji>x</tg-emoji>", "bad_emoji"),
        ("<code><b>x</b></code>", "bad_nesting:b"),
        ("<pre><i>x</i></pre>", "bad_nesting:i"),
        ('<a href="https://a"><a href="https://b">x</a></a>', "bad_nesting:a"),
        ("<blockquote><blockquote>x</blockquote></blockquote>", "bad_nesting:blockquote"),
    ],
)
def test_validate_html_refuses_with_a_reason(text: str, reason: str) -> None:
    assert validate_html(text) == reason


def test_validate_html_agrees_with_the_fake_telegram_parser() -> None:
    from tests.fake_telegram import HtmlParseError, parse_html

    samples = [
        "<b>x</b>",
        "<b>x",
        "a & b",
        "a &amp; b",
        "<i>x</b>",
        "<u><s>x</s></u>",
        "<foo>",
        '<a href="https://x">y</a>',
    ]
    for sample in samples:
        try:
            parse_html(sample)
            telegram_ok = True
        except HtmlParseError:
            telegram_ok = False
        assert (validate_html(sample) is None) == telegram_ok, sample


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-05-18 09:30", dt.datetime(2026, 5, 18, 9, 30, tzinfo=TZ)),
        ("18.05.2026 09:30", dt.datetime(2026, 5, 18, 9, 30, tzinfo=TZ)),
        ("  18.05.2026   9:05 ", dt.datetime(2026, 5, 18, 9, 5, tzinfo=TZ)),
        ("2026-05-18T09:30", dt.datetime(2026, 5, 18, 9, 30, tzinfo=TZ)),
        ("18.05.2026", None),
        ("2026-02-30 10:00", None),
        ("tomorrow 10:00", None),
        ("25:00 2026-05-18", None),
    ],
)
def test_parse_local_time(text: str, expected: dt.datetime | None) -> None:
    assert parse_local_time(text, TZ) == expected


def test_audience_codes_round_trip_and_fit_callback_data() -> None:
    for code in ("all", "Lde", "Len", "F12", "I999999999"):
        audience = parse_audience_code(code)
        assert audience is not None and audience_code(audience) == code
        assert cb.BROADCAST_AUDIENCE.parse(cb.BROADCAST_AUDIENCE.build(draft=1, aud=code))
    assert parse_audience_code("Lxx") is None
    assert parse_audience_code("Fx") is None


def test_draft_round_trip() -> None:
    at = dt.datetime(2026, 5, 18, 9, 30, tzinfo=TZ)
    draft = Draft(7, "<b>x</b>", parse_audience_code("F3"), at)
    assert Draft.from_json(draft.to_json()) == draft
    assert Draft.from_json({"html": "x"}) is None
    assert Draft.from_json(None) is None


def test_announcement_html_uses_formatting_only_when_there_is_some() -> None:
    from telegram import Chat, Message, MessageEntity

    chat = Chat(1, Chat.PRIVATE)
    when = dt.datetime.now(dt.UTC)
    typed = Message(
        1,
        when,
        chat,
        text="<b>x</b> https://a.de",
        entities=[MessageEntity(MessageEntity.URL, 9, 12)],
    )
    assert announcement_html(typed) == "<b>x</b> https://a.de"
    formatted = Message(2, when, chat, text="x < y", entities=[MessageEntity("bold", 0, 1)])
    assert announcement_html(formatted) == "<b>x</b> &lt; y"


async def test_blocked_resident_is_not_counted(bot: BotHarness) -> None:
    admin = await town(bot)
    async with bot.database.uow() as uow:
        blocked = await uow.session.execute(
            select(Resident.telegram_id).where(Resident.blocked_at.is_not(None))
        )
        assert list(blocked.scalars()) == [DORA]
    await compose(bot, admin, MARKER)
    await bot.tap(admin, "Alle")
    assert "Empfänger*innen: 4" in summary(bot)
