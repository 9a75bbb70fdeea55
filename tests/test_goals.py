"""Goals end to end through the fake Bot API (on SQLite, and on PostgreSQL when
TEST_DATABASE_URL is set): the goals menu by action field with progress bars, the goal card,
follow, "I want to help" (with and without a note, withdraw, banned residents refused), the
moderators' /progress (followers of the goal and of its items told once each) and /helpers
(a CSV for the InnoLab team), and the goals in the weekly digest. Plus the domain without
Telegram."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from babel.dates import format_date
from sqlalchemy import func, select, update

from bot import callbacks as cb
from bot.rendering import Renderer
from domain import digest as digest_service
from domain import goals as goal_service
from domain.goals import HelpProblem, ProgressProblem
from domain.staff import Actor
from storage.models import (
    AuditEntry,
    Follow,
    Goal,
    GoalFollow,
    GoalItem,
    GoalUpdate,
    HelpOffer,
    Milestone,
    NotificationEvent,
    Partner,
    utcnow,
)
from storage.uow import Database
from tests.conftest import TZ, make_settings
from tests.fake_telegram import ApiCall, FakeTelegram
from tests.harness import BotHarness, buttons_of, sent, texts

pytestmark = pytest.mark.usefixtures("well_behaved")

ADMIN = 900001
ANNA, BEN, CEM, DORA, EMIL = 7101, 7102, 7103, 7104, 7105
JSON = dict[str, Any]
NOTE = "Erste Qualifizierungsrunde gestartet"


@pytest.fixture
def bot_settings() -> dict[str, Any]:
    return {"notify_delay_seconds": 0, "quiet_hours": ""}


@pytest.fixture
async def bot(
    fake: FakeTelegram, db_url: str, bot_settings: dict[str, Any]
) -> AsyncIterator[BotHarness]:
    """The bot on each database (SQLite; PostgreSQL when TEST_DATABASE_URL is set)."""
    async with BotHarness.running(fake, make_settings(fake, db_url, **bot_settings)) as h:
        yield h


# --------------------------------------------------------------------------- test data


async def make_goal(
    database: Database,
    key: str,
    field: str,
    items: Sequence[str],
    title: dict[str, str],
    *,
    progress: int = 0,
    status: str = "planned",
    description: dict[str, str] | None = None,
    partners: Sequence[tuple[str, dict[str, str] | None, str | None]] = (),
    milestones: Sequence[tuple[dict[str, str], dt.date | None, bool]] = (),
    created_at: dt.datetime | None = None,
) -> int:
    async with database.uow() as uow:
        fields = {f.key: f.id for f in await uow.content.action_fields()}
        item_ids = []
        for item_key in items:
            row = await uow.content.item_by_key(item_key)
            assert row is not None
            item_ids.append(row.item.id)
        async with uow.write():
            goal = Goal(
                key=key,
                title=title,
                description=description or {"de": "Beschreibung", "en": "Description"},
                action_field_id=fields[field],
                status=status,
                progress=progress,
                created_at=created_at or utcnow(),
            )
            uow.session.add(goal)
            await uow.session.flush()
            uow.session.add_all([GoalItem(goal_id=goal.id, item_id=i) for i in item_ids])
            uow.session.add_all(
                [
                    Partner(goal_id=goal.id, position=n, name=name, description=text, url=url)
                    for n, (name, text, url) in enumerate(partners)
                ]
            )
            uow.session.add_all(
                [
                    Milestone(goal_id=goal.id, position=n, title=text, due_on=due, done=done)
                    for n, (text, due, done) in enumerate(milestones)
                ]
            )
            return goal.id


GREEN = {"de": "Green-Tech-Qualifizierung", "en": "Green-tech training"}
CARE = {"de": "Pflege im Quartier stärken", "en": "Stronger care nearby"}
HWK = "Handwerkskammer Dortmund"
TRICKY_PARTNER = "Agentur <Arbeit> & Co"
CONCEPT_DUE = dt.date(2024, 6, 28)
ROUND_DUE = dt.date(2025, 3, 31)


async def two_goals(database: Database) -> tuple[int, int]:
    """Z-1 (Fachkräfte: TD-01, TD-04; 40 %, two partners, two milestones) and Z-2 (Pflege:
    TD-02, TD-03; planned, nothing else)."""
    z1 = await make_goal(
        database,
        "Z-1",
        "fachkraefte",
        ["TD-01", "TD-04"],
        GREEN,
        progress=40,
        status="active",
        description={"de": "Ausbilden für Klimaberufe.", "en": "Training for climate jobs."},
        partners=[
            (HWK, {"de": "Berät Betriebe", "en": "Advises companies"}, "https://example.org/hwk"),
            (TRICKY_PARTNER, None, "javascript:alert(1)"),
        ],
        milestones=[
            ({"de": "Konzept", "en": "Concept"}, CONCEPT_DUE, True),
            ({"de": "Erste Runde", "en": "First round"}, ROUND_DUE, False),
        ],
    )
    z2 = await make_goal(database, "Z-2", "pflege", ["TD-02", "TD-03"], CARE)
    return z1, z2


async def start(bot: BotHarness, user_id: int, language: str = "de", **kwargs: Any) -> JSON:
    user = bot.user(user_id, language, **kwargs)
    await bot.send(user, "/start")
    return user


async def resident_id(database: Database, telegram_id: int) -> int:
    async with database.uow() as uow:
        resident = await uow.residents.by_telegram_id(telegram_id)
        assert resident is not None
        return resident.id


async def deliver(bot: BotHarness) -> None:
    await bot.app.bot_data["services"].delivery.sender.drain()


async def count(database: Database, model: Any, *where: Any) -> int:
    async with database.uow() as uow:
        stmt = select(func.count()).select_from(model)
        if where:
            stmt = stmt.where(*where)
        return int((await uow.session.execute(stmt)).scalar_one())


async def goal_row(database: Database, key: str) -> Goal:
    async with database.uow() as uow:
        goal = await uow.goals.by_key(key)
        assert goal is not None
        return goal


def answers(calls: list[ApiCall]) -> list[str]:
    return [str(c.params.get("text") or "") for c in calls if c.method == "answerCallbackQuery"]


def parse_csv(data: bytes) -> list[dict[str, str]]:
    assert data.startswith(b"\xef\xbb\xbf"), "UTF-8 with BOM, for Excel"
    return list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline=""), delimiter=";"))


# --------------------------------------------------------------------------- the menu


async def test_goals_menu_groups_goals_by_field_with_progress_bars(bot: BotHarness) -> None:
    await two_goals(bot.database)
    user = await start(bot, ANNA)
    calls = await bot.tap(user, "🎯 Ziele")
    [screen] = texts(calls)
    assert screen.index("🗂 Fachkräfte sichern") < screen.index("Z-1 Green-Tech-Qualifizierung")
    assert screen.index("Z-1") < screen.index("🗂 Pflege wertschätzen") < screen.index("Z-2")
    assert "▰▰▰▰▱▱▱▱▱▱ 40 % · läuft" in screen
    assert "▱▱▱▱▱▱▱▱▱▱ 0 % · geplant" in screen
    assert buttons_of(bot.screen(ANNA)) == [
        "🎯 Z-1 · 40 % · Green-Tech-Qualifizierung",
        "🎯 Z-2 · 0 % · Pflege im Quartier stärken",
        "🏠 Menü",
    ]
    # /goals shows the same, as a new message, in English for English speakers.
    [reply] = sent(await bot.send(await start(bot, BEN, "en"), "/goals"))
    assert "🗂 Securing skilled workers" in (reply.visible_text or "")
    assert "▰▰▰▰▱▱▱▱▱▱ 40% · under way" in (reply.visible_text or "")


async def test_goals_menu_pages_in_natural_key_order(bot: BotHarness) -> None:
    for n in range(1, 11):
        await make_goal(
            bot.database, f"Z-{n}", "fachkraefte", ["TD-01"], {"de": f"Ziel {n}"}, progress=n * 10
        )
    user = await start(bot, ANNA)
    await bot.send(user, "/goals")
    first = buttons_of(bot.screen(ANNA))
    assert first[:8] == [f"🎯 Z-{n} · {n * 10} % · Ziel {n}" for n in range(1, 9)]
    assert "1/2" in first
    await bot.tap(user, "›")
    second = buttons_of(bot.screen(ANNA))
    assert second[:2] == ["🎯 Z-9 · 90 % · Ziel 9", "🎯 Z-10 · 100 % · Ziel 10"]
    assert "▰▰▰▰▰▰▰▰▰▰ 100 %" in bot.screen(ANNA)["text"]


async def test_no_goals_yet(bot: BotHarness) -> None:
    [reply] = sent(await bot.send(await start(bot, ANNA), "/goals"))
    assert "Noch gibt es keine Ziele" in (reply.visible_text or "")


# --------------------------------------------------------------------------- the card


async def test_goal_card_shows_items_partners_milestones_and_latest_updates(
    bot: BotHarness,
) -> None:
    await two_goals(bot.database)
    admin = await start(bot, ADMIN)
    for percent in (45, 50, 55, 60):
        await bot.send(admin, f"/progress Z-1 {percent} Schritt {percent}")
    user = await start(bot, BEN, "en")
    await bot.send(user, "/goals")
    calls = await bot.tap(user, "Z-1")
    assert [c.method for c in calls if c.method.startswith(("send", "edit"))] == ["editMessageText"]
    card = bot.screen(BEN)
    text = card["text"]
    assert "🎯 Z-1 · Green-tech training" in text
    assert "Securing skilled workers · Status: under way" in text
    assert "▰▰▰▰▰▰▱▱▱▱ 60%" in text
    assert "Training for climate jobs." in text
    assert "TD-01 Training centre for green-tech jobs · open" in text
    assert "TD-04 Great street of apprenticeships · open" in text
    assert f"{HWK} – Advises companies" in text
    assert TRICKY_PARTNER in text, "escaped, shown as it is"
    links = [e["url"] for e in card.get("entities", []) if e["type"] == "text_link"]
    assert links == ["https://example.org/hwk"], "only web links become links"
    concept = format_date(CONCEPT_DUE, "d MMM y", locale="en_GB")
    first_round = format_date(ROUND_DUE, "d MMM y", locale="en_GB")
    assert f"✅ Concept · by {concept}" in text
    assert f"⬜ First round · by {first_round}" in text
    # The latest three updates, newest first.
    assert text.index("60% – Schritt 60") < text.index("55% – Schritt 55")
    assert "50% – Schritt 50" in text and "Schritt 45" not in text
    assert buttons_of(card) == [
        "📌 TD-01 · Training centre for green-tech jobs",
        "📌 TD-04 · Great street of apprenticeships",
        "🔔 Follow",
        "🙋 I want to help",
        "‹ Back",
        "🏠 Menu",
    ]
    # An item opened from the card goes back to the card.
    await bot.tap(user, "TD-01")
    assert "TD-01 · Training centre for green-tech jobs" in bot.screen(BEN)["text"]
    await bot.tap(user, "Back")
    assert "🎯 Z-1 · Green-tech training" in bot.screen(BEN)["text"]
    await bot.tap(user, "Back")
    assert "🗂 Securing skilled workers" in bot.screen(BEN)["text"]


async def test_item_card_links_to_its_goal_and_back(bot: BotHarness) -> None:
    await two_goals(bot.database)
    user = await start(bot, ANNA)
    await bot.send(user, "/start item_TD-04")
    item_card = bot.screen(ANNA)
    assert "🎯 Teil des Ziels: Z-1 Green-Tech-Qualifizierung" in item_card["text"]
    assert "🎯 Z-1 · Green-Tech-Qualifizierung" in buttons_of(item_card)
    await bot.tap(user, "🎯 Z-1")
    assert "▰▰▰▰▱▱▱▱▱▱ 40 %" in bot.screen(ANNA)["text"]
    await bot.tap(user, "Zurück")
    assert "TD-04 · Große Straße der Ausbildung" in bot.screen(ANNA)["text"]


async def test_deep_link_opens_a_goal(bot: BotHarness) -> None:
    await two_goals(bot.database)
    user = await start(bot, ANNA)
    [reply] = sent(await bot.send(user, "/start goal_Z-2"))
    assert "🎯 Z-2 · Pflege im Quartier stärken" in (reply.visible_text or "")
    [reply] = sent(await bot.send(user, "/start goal_Z-99"))
    assert "Z-99" not in (reply.visible_text or "") and "🎯 Z-" not in (reply.visible_text or "")


async def test_follow_and_unfollow_a_goal(bot: BotHarness) -> None:
    z1, _ = await two_goals(bot.database)
    user = await start(bot, BEN, "en")
    await bot.send(user, "/start goal_Z-1")
    follow_data = cb.GOAL_FOLLOW.build(gid=z1, on=1, via="H")
    calls = await bot.tap(user, "Follow")
    assert answers(calls) == ["You now follow this goal."]
    assert "🔔 You follow this goal." in bot.screen(BEN)["text"]
    assert "🔕 Unfollow" in buttons_of(bot.screen(BEN))
    # A replayed "Follow" press keeps following (buttons set a state, never toggle).
    await bot.press(user, follow_data)
    me = await resident_id(bot.database, BEN)
    assert await count(bot.database, GoalFollow, GoalFollow.resident_id == me) == 1
    calls = await bot.tap(user, "Unfollow")
    assert answers(calls) == ["You no longer follow this goal."]
    assert "You follow this goal" not in bot.screen(BEN)["text"]
    assert await count(bot.database, GoalFollow) == 0


# --------------------------------------------------------------------------- I want to help


async def test_offer_help_with_a_note_then_change_it(bot: BotHarness) -> None:
    await two_goals(bot.database)
    user = await start(bot, ANNA)
    me = await resident_id(bot.database, ANNA)
    async with bot.database.uow() as uow:
        resident = await uow.residents.get(me)
        assert resident is not None
        pseudonym = resident.pseudonym
    await bot.send(user, "/start goal_Z-1")
    await bot.tap(user, "Ich will helfen")
    prompt = bot.screen(ANNA)["text"]
    assert "Du willst bei Z-1 helfen" in prompt
    assert f"„Anwohner*in {pseudonym}“" in prompt
    assert "Team des InnoLabs" in prompt and "Notiz" in prompt
    assert buttons_of(bot.screen(ANNA)) == ["📤 Ohne Notiz senden", "✖️ Abbrechen"]

    [reply] = sent(await bot.send(user, "Ich bin Elektrikerin und kann \u200bmitmachen."))
    text = reply.visible_text or ""
    assert "Danke!" in text and "ist angekommen" in text
    assert "📝 Ich bin Elektrikerin und kann mitmachen." in text
    assert "Du folgst dem Ziel jetzt" in text
    async with bot.database.uow() as uow:
        [offer] = (await uow.session.execute(select(HelpOffer))).scalars().all()
        assert offer.note == "Ich bin Elektrikerin und kann mitmachen."
        assert await uow.goals.is_following(me, offer.goal_id)

    await bot.tap(user, "Zum Ziel")
    card = bot.screen(ANNA)
    assert "🙋 Du hast deine Hilfe angeboten: „Ich bin Elektrikerin" in card["text"]
    assert "✏️ Notiz ändern" in buttons_of(card) and "↩️ Angebot zurückziehen" in buttons_of(card)

    await bot.tap(user, "Notiz ändern")
    [reply] = sent(await bot.send(user, "Lieber samstags."))
    assert "ist aktualisiert" in (reply.visible_text or "")
    async with bot.database.uow() as uow:
        [offer] = (await uow.session.execute(select(HelpOffer))).scalars().all()
        assert offer.note == "Lieber samstags.", "one offer per resident and goal"
    # The next text is no note any more.
    [hint] = sent(await bot.send(user, "Noch etwas"))
    assert "Noch etwas" not in (hint.visible_text or "")
    assert await count(bot.database, HelpOffer) == 1


async def test_offer_help_without_a_note_and_withdraw(bot: BotHarness) -> None:
    await two_goals(bot.database)
    user = await start(bot, BEN, "en")
    await bot.send(user, "/start goal_Z-2")
    await bot.tap(user, "I want to help")
    calls = await bot.tap(user, "Send without a note")
    assert answers(calls) == ["Thank you for offering your help!"]
    assert "has been sent" in bot.screen(BEN)["text"]
    async with bot.database.uow() as uow:
        [offer] = (await uow.session.execute(select(HelpOffer))).scalars().all()
        assert offer.note is None
        state = await uow.conversations.get(offer.resident_id)
        assert state is not None and state.awaiting is None, "no longer waiting for a note"
    await bot.tap(user, "To the goal")
    assert "🙋 You offered to help." in bot.screen(BEN)["text"]
    calls = await bot.tap(user, "Withdraw my offer")
    assert answers(calls) == ["Your offer is withdrawn."]
    assert "offered to help" not in bot.screen(BEN)["text"]
    assert "🙋 I want to help" in buttons_of(bot.screen(BEN))
    assert await count(bot.database, HelpOffer) == 0


async def test_cancelling_the_note_offers_nothing(bot: BotHarness) -> None:
    await two_goals(bot.database)
    user = await start(bot, BEN, "en")
    await bot.send(user, "/start goal_Z-2")
    await bot.tap(user, "I want to help")
    await bot.tap(user, "Cancel")
    assert "🎯 Z-2 · Stronger care nearby" in bot.screen(BEN)["text"]
    [hint] = sent(await bot.send(user, "I could help on Saturdays"))
    assert "Thank you" not in (hint.visible_text or "")
    assert await count(bot.database, HelpOffer) == 0


async def test_a_too_long_note_is_refused_and_the_bot_keeps_waiting(bot: BotHarness) -> None:
    await two_goals(bot.database)
    user = await start(bot, ANNA)
    await bot.send(user, "/start goal_Z-1")
    await bot.tap(user, "Ich will helfen")
    [reply] = sent(await bot.send(user, "x" * 501))
    assert "501 Zeichen" in (reply.visible_text or "") and "500" in (reply.visible_text or "")
    assert reply.button_texts() == ["📤 Ohne Notiz senden", "✖️ Abbrechen"]
    assert await count(bot.database, HelpOffer) == 0
    sticker = {
        "file_id": "CAACAgIAAxkBAAIBsticker",
        "file_unique_id": "AgADsticker",
        "type": "regular",
        "width": 512,
        "height": 512,
        "is_animated": False,
        "is_video": False,
    }
    sticker_update = bot.fake.message_update(user, None, extra={"sticker": sticker})
    [reply] = sent(await bot.feed(sticker_update))
    assert "Textnachricht" in (reply.visible_text or "")
    await bot.send(user, "y" * 500)
    async with bot.database.uow() as uow:
        [offer] = (await uow.session.execute(select(HelpOffer))).scalars().all()
        assert offer.note == "y" * 500


async def test_a_banned_resident_cannot_offer_help(bot: BotHarness) -> None:
    z1, _ = await two_goals(bot.database)
    user = await start(bot, ANNA)
    me = await resident_id(bot.database, ANNA)
    async with bot.database.uow() as uow, uow.write():
        await uow.moderation.ban(me)
    await bot.send(user, "/start goal_Z-1")
    calls = await bot.tap(user, "Ich will helfen")
    [alert] = [c for c in calls if c.method == "answerCallbackQuery"]
    assert alert.params.get("show_alert") is True and "gesperrt" in alert.params["text"]
    assert "Du bist gesperrt" in bot.screen(ANNA)["text"]
    # Not even with a forged "send without a note" press.
    await bot.press(user, cb.GOAL_HELP_SEND.build(gid=z1, via="H"))
    assert await count(bot.database, HelpOffer) == 0


# --------------------------------------------------------------------------- /progress


async def test_progress_reaches_followers_of_the_goal_and_of_its_items_once_each(
    bot: BotHarness,
) -> None:
    """Anna follows the goal, Ben one of its items, Cem the goal and both items, Dora
    another goal's item, Emil nothing."""
    z1, _ = await two_goals(bot.database)
    admin = await start(bot, ADMIN, username="anna_mod")
    anna = await start(bot, ANNA, "en")
    ben = await start(bot, BEN)
    cem = await start(bot, CEM)
    dora = await start(bot, DORA)
    await start(bot, EMIL)
    await bot.send(anna, "/start goal_Z-1")
    await bot.tap(anna, "Follow")
    for user, keys in ((ben, ["TD-01"]), (cem, ["TD-01", "TD-04"]), (dora, ["TD-02"])):
        for key in keys:
            await bot.send(user, f"/start item_{key}")
            await bot.tap(user, "Folgen")
    await bot.send(cem, "/start goal_Z-1")
    await bot.tap(cem, "Folgen")

    [reply] = sent(await bot.send(admin, f"/progress Z-1 60 {NOTE}"))
    text = reply.visible_text or ""
    assert "Z-1 · Green-Tech-Qualifizierung: 40 % → 60 %" in text
    assert "▰▰▰▰▰▰▱▱▱▱" in text and f"📝 {NOTE}" in text
    assert "3 Personen werden benachrichtigt" in text

    since = len(bot.fake.calls)
    await deliver(bot)
    told: dict[int, list[str]] = {}
    for call in bot.fake.calls[since:]:
        if call.method == "sendMessage":
            told.setdefault(int(call.chat_id or 0), []).append(call.visible_text or "")
    assert sorted(told) == [ANNA, BEN, CEM]
    for chat, messages in told.items():
        [message] = messages
        assert message.count("Z-1") == 1, chat
        assert f"60 % – {NOTE}" in message
    assert "📈 Progress: 60 % – " + NOTE in told[ANNA][0]
    assert "📈 Fortschritt: 60 % – " + NOTE in told[CEM][0]

    goal = await goal_row(bot.database, "Z-1")
    assert (goal.progress, goal.status) == (60, "active")
    async with bot.database.uow() as uow:
        [entry] = (await uow.session.execute(select(GoalUpdate))).scalars().all()
        assert (entry.goal_id, entry.progress, entry.note) == (z1, 60, NOTE)
        assert entry.actor_telegram_id == ADMIN
        [audit] = (
            (await uow.session.execute(select(AuditEntry).where(AuditEntry.action == "progress")))
            .scalars()
            .all()
        )
        assert (audit.target, audit.actor_name, audit.details["to"]) == ("Z-1", "@anna_mod", 60)
    await bot.send(anna, "/start goal_Z-1")
    assert f"60% – {NOTE}" in bot.screen(ANNA)["text"]


async def test_progress_to_100_reaches_the_goal(bot: BotHarness) -> None:
    await two_goals(bot.database)
    admin = await start(bot, ADMIN)
    [reply] = sent(await bot.send(admin, "/progress Z-2 100%"))
    text = reply.visible_text or ""
    assert "0 % → 100 %" in text and "Status: geplant → erreicht" in text
    assert "0 Personen werden benachrichtigt" in text
    goal = await goal_row(bot.database, "Z-2")
    assert (goal.progress, goal.status) == (100, "done")


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("/progress", "/progress Z-3 40"),
        ("/progress Z-1", "/progress Z-3 40"),
        ("/progress Z-1 viel", "/progress Z-3 40"),
        ("/progress Z-1 -5", "/progress Z-3 40"),
        ("/progress Z-1 ٤٠", "/progress Z-3 40"),
        ("/progress Z-1 150 zu viel", "eine ganze Zahl von 0 bis 100"),
        ("/progress Z-99 50", "Ein Ziel Z-99 gibt es nicht"),
        ("/progress Z-1 40", "steht schon bei 40 %"),
        ("/progress Z-1 50 " + "x" * 1001, "Die Notiz ist zu lang"),
    ],
)
async def test_bad_progress_commands_change_nothing(
    bot: BotHarness, command: str, expected: str
) -> None:
    await two_goals(bot.database)
    admin = await start(bot, ADMIN)
    [reply] = sent(await bot.send(admin, command))
    assert expected in (reply.visible_text or "")
    assert "/progress Z-3 40" in (reply.visible_text or ""), "how it is done right"
    assert (await goal_row(bot.database, "Z-1")).progress == 40
    assert await count(bot.database, GoalUpdate) == 0
    assert await count(bot.database, AuditEntry) == 0
    assert await count(bot.database, NotificationEvent) == 0


async def test_residents_cannot_record_progress_or_see_helpers(bot: BotHarness) -> None:
    await two_goals(bot.database)
    user = await start(bot, ANNA)
    await bot.send(user, "/start goal_Z-1")
    await bot.tap(user, "Ich will helfen")
    await bot.send(user, "Ich helfe gern")
    for command in ("/progress Z-1 90 Fertig bald", "/helpers Z-1"):
        calls = await bot.send(user, command)
        assert texts(calls) == ["🛡 Diesen Befehl können nur Moderator*innen verwenden."]
        assert sent(calls, "sendDocument") == []
    assert (await goal_row(bot.database, "Z-1")).progress == 40
    assert await count(bot.database, GoalUpdate) == 0
    assert await count(bot.database, AuditEntry) == 0


# --------------------------------------------------------------------------- /helpers


async def test_helpers_lists_offers_and_sends_a_csv(bot: BotHarness) -> None:
    z1, _ = await two_goals(bot.database)
    admin = await start(bot, ADMIN)
    anna = await start(bot, ANNA)
    ben = await start(bot, BEN, "en")
    ben_id = await resident_id(bot.database, BEN)
    async with bot.database.uow() as uow, uow.write():
        await uow.residents.set_display_name(ben_id, "Ben B.")
    await bot.press(anna, cb.GOAL_HELP.build(gid=z1, via="H"))
    await bot.send(anna, "=Tabellen; Zahlen\nund Excel")
    await bot.press(ben, cb.GOAL_HELP.build(gid=z1, via="H"))
    await bot.tap(ben, "Send without a note")

    calls = await bot.send(admin, "/helpers z-1")
    [summary] = sent(calls)
    text = summary.visible_text or ""
    assert "Z-1 · Green-Tech-Qualifizierung" in text
    assert "2 Personen wollen helfen" in text
    assert "Ben B." in text and "=Tabellen; Zahlen" in text
    assert "nicht zur Veröffentlichung" in text
    [document] = sent(calls, "sendDocument")
    [upload] = document.files.values()
    assert upload.filename == "helpers-Z-1.csv"
    assert upload.data.count(b"\r\n") == 3 and upload.data.split(b"\r\n")[0].count(b";") == 5
    rows = parse_csv(upload.data)
    async with bot.database.uow() as uow:
        anna_row = await uow.residents.by_telegram_id(ANNA)
        assert anna_row is not None
    assert [(r["display_name"], r["telegram_id"], r["language"], r["note"]) for r in rows] == [
        ("", str(ANNA), "de", "'=Tabellen; Zahlen\nund Excel"),
        ("Ben B.", str(BEN), "en", ""),
    ]
    assert rows[0]["pseudonym"] == str(anna_row.pseudonym)
    assert rows[0]["date"].startswith(dt.datetime.now(TZ).date().isoformat())
    async with bot.database.uow() as uow:
        actions = (await uow.session.execute(select(AuditEntry.action))).scalars().all()
        assert actions == ["helpers"], "looking at personal data is audited"


async def test_helpers_usage_and_empty(bot: BotHarness) -> None:
    await two_goals(bot.database)
    admin = await start(bot, ADMIN, "en")
    [usage] = sent(await bot.send(admin, "/helpers"))
    assert "/helpers Z-3" in (usage.visible_text or "")
    [unknown] = sent(await bot.send(admin, "/helpers Z-9"))
    assert "There is no goal Z-9" in (unknown.visible_text or "")
    calls = await bot.send(admin, "/helpers Z-2")
    assert "Nobody has offered to help yet." in texts(calls)[0]
    assert sent(calls, "sendDocument") == []


# --------------------------------------------------------------------------- the digest


async def test_digest_tells_about_goals_formed_and_progressed(bot: BotHarness) -> None:
    long_ago = utcnow() - dt.timedelta(days=30)
    await make_goal(bot.database, "Z-1", "fachkraefte", ["TD-01"], GREEN, created_at=long_ago)
    await make_goal(bot.database, "Z-2", "pflege", ["TD-02"], CARE)
    await make_goal(bot.database, "Z-3", "pflege", ["TD-03"], {"de": "Still"}, created_at=long_ago)
    admin = await start(bot, ADMIN)
    await bot.send(admin, f"/progress Z-1 30 {NOTE} " + "und noch viel mehr " * 10)
    calls = await bot.send(admin, "/digest preview")
    [digest] = [c.visible_text or "" for c in calls if "Wochenrückblick" in (c.visible_text or "")]
    section = digest[digest.index("🎯 Ziele") :]
    assert section.index("Z-2 Pflege im Quartier stärken · 🆕 neues Ziel") < section.index("Z-1")
    assert f"▰▰▰▱▱▱▱▱▱▱ 30 % – {NOTE} und noch viel mehr" in section
    assert "…" in section, "a long note is shortened"
    assert "▱▱▱▱▱▱▱▱▱▱ 0 %" in section
    assert "Z-3" not in digest, "nothing happened to Z-3"
    assert "Alle Ziele: /goals" in section


# --------------------------------------------------------------------------- the domain


ACTOR = Actor(ADMIN, "@mod")


@pytest.fixture
async def goals_db(content: Database) -> AsyncIterator[tuple[Database, int, int]]:
    z1, z2 = await two_goals(content)
    yield content, z1, z2


async def new_resident(database: Database, telegram_id: int) -> int:
    async with database.uow() as uow, uow.write():
        resident, _ = await uow.residents.ensure(telegram_id, "de")
        return resident.id


def test_progress_bar() -> None:
    assert goal_service.progress_bar(40) == "▰▰▰▰▱▱▱▱▱▱"
    assert goal_service.progress_bar(0) == "▱" * 10
    assert goal_service.progress_bar(9) == "▱" * 10
    assert goal_service.progress_bar(99) == "▰" * 9 + "▱"
    assert goal_service.progress_bar(100) == "▰" * 10


def test_the_templates_draw_the_same_bar() -> None:
    renderer = Renderer(TZ)
    for language in ("de", "en"):
        for percent in range(101):
            filled = goal_service.filled_cells(percent)
            drawn = renderer.label(language, "progress_bar", filled, 10 - filled)
            assert drawn == goal_service.progress_bar(percent)


def test_status_after_progress() -> None:
    assert goal_service.status_after("planned", 0) == "planned"
    assert goal_service.status_after("planned", 10) == "active"
    assert goal_service.status_after("paused", 50) == "paused"
    assert goal_service.status_after("active", 100) == "done"
    assert goal_service.status_after("done", 90) == "active"


async def test_goals_by_field_and_card(goals_db: tuple[Database, int, int]) -> None:
    database, z1, z2 = goals_db
    me = await new_resident(database, ANNA)
    async with database.uow() as uow:
        overview = await goal_service.goals_by_field(uow, "en")
        assert [(g.title, [x.key for x in g.goals]) for g in overview.groups] == [
            ("Securing skilled workers", ["Z-1"]),
            ("Valuing care work", ["Z-2"]),
        ]
        card = await goal_service.goal_card(uow, "z-1", "en", me)
        assert card is not None and card.id == z1
        assert [i.key for i in card.items] == ["TD-01", "TD-04"]
        assert [(p.name, p.url) for p in card.partners] == [
            (HWK, "https://example.org/hwk"),
            (TRICKY_PARTNER, None),
        ]
        assert [(m.title, m.done) for m in card.milestones] == [
            ("Concept", True),
            ("First round", False),
        ]
        assert (card.filled, card.empty, card.following, card.helping) == (4, 6, False, False)
        assert await goal_service.goal_card(uow, 999, "en", me) is None
        assert await goal_service.goal_id_for_key(uow, "Z-2") == z2


async def test_follow_sets_the_state(goals_db: tuple[Database, int, int]) -> None:
    database, z1, _ = goals_db
    me = await new_resident(database, ANNA)
    async with database.uow() as uow:
        assert await goal_service.follow(uow, me, z1, True) is True
        assert await goal_service.follow(uow, me, z1, True) is False
        assert await goal_service.follow(uow, me, z1, False) is True
        assert await goal_service.follow(uow, me, z1, False) is False
        assert await goal_service.follow(uow, me, 999, True) is None


async def test_help_offers(goals_db: tuple[Database, int, int]) -> None:
    database, z1, _ = goals_db
    me, banned = await new_resident(database, ANNA), await new_resident(database, BEN)
    async with database.uow() as uow:
        async with uow.write():
            await uow.moderation.ban(banned)
        first = await goal_service.offer_help(uow, me, z1, "  Gern\u202e! ")
        assert (first.ok, first.new, first.followed, first.note) == (True, True, True, "Gern!")
        too_long = await goal_service.offer_help(uow, me, z1, "x" * 501)
        assert (too_long.problem, too_long.length) == (HelpProblem.TOO_LONG, 501)
        again = await goal_service.offer_help(uow, me, z1, None)
        assert (again.new, again.followed, again.note) == (False, False, None)
        refused = await goal_service.offer_help(uow, banned, z1, "Ich auch")
        assert refused.problem is HelpProblem.BANNED
        assert (await goal_service.offer_help(uow, me, 999, None)).problem is (
            HelpProblem.UNKNOWN_GOAL
        )
        assert (await goal_service.start_help(uow, banned, z1, "H")).problem is (HelpProblem.BANNED)
        view = await goal_service.helpers(uow, "Z-1")
        assert view is not None
        assert [(h.telegram_id, h.note) for h in view.helpers] == [(ANNA, None)]
        assert await goal_service.withdraw_help(uow, me, z1) is True
        assert await goal_service.withdraw_help(uow, me, z1) is False
        assert await goal_service.helpers(uow, "Z-404") is None


async def test_the_awaited_note(goals_db: tuple[Database, int, int]) -> None:
    database, _, z2 = goals_db
    me = await new_resident(database, ANNA)
    async with database.uow() as uow:
        assert (await goal_service.take_help_note(uow, me, "Hallo")).problem is (
            HelpProblem.NOT_AWAITED
        )
        assert (await goal_service.start_help(uow, me, z2, "P0")).ok
        assert await goal_service.awaited_help(uow, me) == (z2, "P0")
        empty = await goal_service.take_help_note(uow, me, " \u200b ")
        assert empty.problem is HelpProblem.EMPTY
        taken = await goal_service.take_help_note(uow, me, "Montags")
        assert (taken.ok, taken.goal_id, taken.origin, taken.note) == (True, z2, "P0", "Montags")
        assert await goal_service.awaited_help(uow, me) is None


async def test_helpers_csv_is_for_excel(goals_db: tuple[Database, int, int]) -> None:
    database, z1, _ = goals_db
    me = await new_resident(database, ANNA)
    async with database.uow() as uow:
        await goal_service.offer_help(uow, me, z1, '+49 "quoted"; line\nbreak')
        view = await goal_service.helpers(uow, "Z-1", actor=ACTOR)
        assert view is not None
        data = goal_service.helpers_csv(view, TZ)
        assert data.startswith(b"\xef\xbb\xbf") and data.endswith(b"\r\n")
        [row] = parse_csv(data)
        assert list(row) == list(goal_service.HELPER_COLUMNS)
        assert row["note"] == '\'+49 "quoted"; line\nbreak'
        entries = (await uow.session.execute(select(AuditEntry))).scalars().all()
        assert [(e.action, e.target, e.details) for e in entries] == [
            ("helpers", "Z-1", {"count": 1})
        ]


async def test_record_progress(goals_db: tuple[Database, int, int]) -> None:
    database, z1, z2 = goals_db
    goal_follower, item_follower, both = [await new_resident(database, n) for n in (1, 2, 3)]
    async with database.uow() as uow:
        async with uow.write():
            for resident in (goal_follower, both):
                await uow.goals.follow(resident, z1)
            td01 = await uow.content.item_by_key("TD-01")
            td04 = await uow.content.item_by_key("TD-04")
            assert td01 is not None and td04 is not None
            uow.session.add_all(
                [
                    Follow(resident_id=item_follower, item_id=td04.item.id),
                    Follow(resident_id=both, item_id=td01.item.id),
                    Follow(resident_id=both, item_id=td04.item.id),
                ]
            )
        change = await goal_service.record_progress(uow, ACTOR, "Z-1", 70, f"  {NOTE} ")
        assert (change.previous, change.progress, change.note) == (40, 70, NOTE)
        assert (change.status, change.status_changed, change.notified) == ("active", False, 3)
        events = (
            await uow.session.execute(
                select(NotificationEvent.resident_id, NotificationEvent.goal_id).order_by(
                    NotificationEvent.resident_id
                )
            )
        ).all()
        assert [tuple(e) for e in events] == [(goal_follower, z1), (item_follower, z1), (both, z1)]
        assert (await goal_service.record_progress(uow, ACTOR, "Z-1", 70)).problem is (
            ProgressProblem.UNCHANGED
        )
        for bad in (-1, 101):
            assert (await goal_service.record_progress(uow, ACTOR, "Z-1", bad)).problem is (
                ProgressProblem.BAD_PERCENT
            )
        too_long = await goal_service.record_progress(uow, ACTOR, "Z-1", 80, "x" * 1001)
        assert too_long.problem is ProgressProblem.NOTE_TOO_LONG
        unknown = await goal_service.record_progress(uow, ACTOR, "Z-9", 80)
        assert unknown.problem is ProgressProblem.UNKNOWN_GOAL
        reached = await goal_service.record_progress(uow, ACTOR, "Z-2", 100, None)
        assert (reached.previous_status, reached.status, reached.notified) == (
            "planned",
            "done",
            0,
        )
        goal = await uow.goals.get(z1)
        assert goal is not None
        await uow.session.refresh(goal)
        assert goal.progress == 70
        updates = (await uow.session.execute(select(GoalUpdate))).scalars().all()
        assert [(u.goal_id, u.progress, u.status) for u in updates] == [
            (z1, 70, None),
            (z2, 100, "done"),
        ]
        audit = (await uow.session.execute(select(AuditEntry.action, AuditEntry.target))).all()
        assert [tuple(a) for a in audit] == [("progress", "Z-1"), ("progress", "Z-2")]


async def test_digest_goal_news(goals_db: tuple[Database, int, int]) -> None:
    database, z1, z2 = goals_db
    now = utcnow()
    async with database.uow() as uow:
        async with uow.write():
            await uow.session.execute(
                update(Goal).where(Goal.id == z1).values(created_at=now - dt.timedelta(days=30))
            )
        await goal_service.record_progress(uow, ACTOR, "Z-1", 50, "Halbzeit")
        await goal_service.record_progress(uow, ACTOR, "Z-1", 55)
        data = await digest_service.collect(uow, now - dt.timedelta(days=7), utcnow())
    assert [(g.key, g.progress, g.note, g.formed) for g in data.goals] == [
        ("Z-2", 0, None, True),
        ("Z-1", 55, "Halbzeit", False),
    ]
    assert not data.is_empty and data.has_news_for_all
    assert digest_service.DigestData.from_json(data.to_json()) == data
    view = digest_service.personal(data, set(), "en")
    assert view is not None
    assert [(g.key, g.title, g.filled) for g in view.goals] == [
        ("Z-2", "Stronger care nearby", 0),
        ("Z-1", "Green-tech training", 5),
    ]
    text = Renderer(TZ).render("digest", "en", digest=view)
    assert "🎯 <b>Goals</b>" in text and "▰▰▰▰▰▱▱▱▱▱ 55% – Halbzeit" in text
    # A digest stored before goals were in it still reads.
    old = data.to_json()
    del old["goals"]
    assert digest_service.DigestData.from_json(old).goals == []
    assert z2
