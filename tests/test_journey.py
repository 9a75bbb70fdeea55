"""The resident journey, end to end through the fake Bot API server: start, browse,
search, support twice, comment, approval, read the comment, follow, deep links."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from bot import callbacks as cb
from tests.fake_telegram import FakeTelegram
from tests.harness import BotHarness, buttons_of, datas_of, sent, texts, urls_of

ADMIN = 900001
RESIDENT = 4242


async def start(bot: BotHarness, user_id: int, language: str | None = "de") -> dict:
    user = bot.user(user_id, language)
    await bot.send(user, "/start")
    return user


async def item_id(bot: BotHarness, key: str) -> int:
    async with bot.database.uow() as uow:
        row = await uow.content.item_by_key(key)
        assert row is not None
        return row.item.id


async def test_start_greets_in_german_with_privacy_notice_and_menu(bot: BotHarness) -> None:
    calls = await bot.send(bot.user(RESIDENT, "de"), "/start")
    [reply] = sent(calls)
    assert "Willkommen" in reply.visible_text
    assert "/privacy" in reply.visible_text
    assert reply.button_texts() == [
        "🎤 Sessions",
        "📋 to:DO-Punkte",
        "🎯 Ziele",
        "⭐ Meine Punkte",
        "⚙️ Einstellungen",
    ]
    # Coming back is a different greeting, not a second welcome.
    [again] = sent(await bot.send(bot.user(RESIDENT, "de"), "/start"))
    assert "wieder da" in again.visible_text


@pytest.mark.parametrize("code", ["en", "tr", "uk", None])
async def test_every_other_language_code_gets_english(bot: BotHarness, code: str | None) -> None:
    [reply] = sent(await bot.send(bot.user(RESIDENT, code), "/start"))
    assert "Welcome" in reply.visible_text
    assert "📋 to:DO items" in reply.button_texts()


async def test_privacy_says_what_is_stored(bot: BotHarness) -> None:
    user = await start(bot, RESIDENT)
    [reply] = sent(await bot.send(user, "/privacy"))
    assert "Telegram-ID" in reply.visible_text
    assert "Stadt Dortmund" in reply.visible_text


async def test_sessions_are_listed_by_day_and_the_card_links_recordings(bot: BotHarness) -> None:
    user = await start(bot, RESIDENT)
    calls = await bot.tap(user, "Sessions")
    [edit] = [c for c in calls if c.method == "editMessageText"]
    assert "Montag, 10. Juni" in edit.visible_text
    assert "Dienstag, 11. Juni" in edit.visible_text
    assert edit.button_texts()[0] == "Mo. 10:00 · Auftakt: Arbeit der Zukunft"

    await bot.tap(user, "Auftakt")
    card = bot.screen(RESIDENT)
    text = card["text"]
    assert "Dr. Ayşe Demir – Arbeitsmarktforscherin" in text
    assert "Fachkräfte fehlen überall." in text
    # The highlight with a time links to that moment of the (YouTube) recording.
    links = [e["url"] for e in card.get("entities", []) if e["type"] == "text_link"]
    assert links == ["https://www.youtube.com/watch?v=abc123&t=750"]
    assert urls_of(card) == {"▶️ Livestream (1:30:00)": "https://www.youtube.com/watch?v=abc123"}
    # Buttons to the items that came out of the session, and back to the list.
    assert "📌 TD-01 · Qualifizierungszentrum für Green-Tech-Berufe" in buttons_of(card)
    await bot.tap(user, "TD-01")
    assert bot.screen(RESIDENT)["text"].startswith("📌 TD-01")
    await bot.tap(user, "Zurück")
    assert bot.screen(RESIDENT)["text"].startswith("🎤 Auftakt")
    await bot.tap(user, "Zurück")
    assert "Sessions der Eventwoche" in bot.screen(RESIDENT)["text"]
    assert bot.fake.unanswered_callbacks() == []


async def test_items_by_field_sorted_and_paginated(bot: BotHarness) -> None:
    user = await start(bot, RESIDENT)
    await bot.tap(user, "to:DO-Punkte")
    assert buttons_of(bot.screen(RESIDENT))[:3] == [
        "Alle Punkte (5)",
        "Fachkräfte sichern (2)",
        "Pflege wertschätzen (3)",
    ]
    await bot.tap(user, "Pflege wertschätzen")
    screen = bot.screen(RESIDENT)
    assert "Pflege wertschätzen" in screen["text"]
    keys = re.findall(r"TD-\d+", " ".join(buttons_of(screen)))
    assert sorted(keys) == ["TD-02", "TD-03", "TD-05"]

    # Support TD-05 so that "most supported" puts it first, then "newest" shows file order.
    td05 = await item_id(bot, "TD-05")
    await bot.press(user, cb.SUPPORT.build(iid=td05, on=1, origin="H"))
    await bot.tap(user, "Menü")
    await bot.tap(user, "to:DO-Punkte")
    await bot.tap(user, "Pflege wertschätzen")
    assert re.findall(r"TD-\d+", " ".join(buttons_of(bot.screen(RESIDENT))))[0] == "TD-05"
    await bot.tap(user, "Neueste")
    keys = re.findall(r"TD-\d+", " ".join(buttons_of(bot.screen(RESIDENT))))
    assert keys == ["TD-05", "TD-03", "TD-02"]
    assert "• 🆕 Neueste" in buttons_of(bot.screen(RESIDENT))


async def test_long_lists_paginate(fake: FakeTelegram, sqlite_url: str) -> None:
    from tests.conftest import make_settings

    async with BotHarness.running(fake, make_settings(fake, sqlite_url), with_content=False) as bot:
        from bot.cli import sample_data_path
        from domain.importer import import_content, load_file
        from tests.conftest import TZ

        async with bot.database.uow() as uow:
            await import_content(uow, load_file(sample_data_path()), TZ)
        user = await start(bot, RESIDENT)
        await bot.tap(user, "to:DO-Punkte")
        await bot.tap(user, "Alle Punkte (78)")
        screen = bot.screen(RESIDENT)
        assert "1/10" in buttons_of(screen)
        assert len(re.findall(r"TD-\d+ ·", " ".join(buttons_of(screen)))) == 8
        await bot.tap(user, "›")
        assert "2/10" in buttons_of(bot.screen(RESIDENT))
        await bot.tap(user, "Menü")
        await bot.tap(user, "Sessions")
        assert "1/4" in buttons_of(bot.screen(RESIDENT))
        assert "(26)" in bot.screen(RESIDENT)["text"]


async def test_support_twice_keeps_one_support_and_updates_the_card(bot: BotHarness) -> None:
    user = await start(bot, RESIDENT)
    td01 = await item_id(bot, "TD-01")
    await bot.send(user, "/search Qualifizierungszentrum")
    await bot.tap(user, "TD-01")
    card = bot.screen(RESIDENT)
    assert "👍 0 Unterstützer*innen" in card["text"]
    press = cb.SUPPORT.build(iid=td01, on=1, origin="Q0")
    assert press in datas_of(card)

    calls = await bot.press(user, press)
    [answer] = [c for c in calls if c.method == "answerCallbackQuery"]
    assert "folgst dem Punkt" in answer.params["text"]
    card = bot.screen(RESIDENT)
    assert "👍 1 Unterstützer*in " in card["text"]
    assert "↩️ Unterstützung zurückziehen" in buttons_of(card)
    assert "🔕 Nicht mehr folgen" in buttons_of(card)

    # A double tap (the old button pressed again) or a replayed update keeps one support.
    await bot.press(user, press)
    assert "👍 1 Unterstützer*in " in bot.screen(RESIDENT)["text"]
    async with bot.database.uow() as uow:
        assert await uow.engagement.support_count(td01) == 1

    await bot.tap(user, "zurückziehen")
    card = bot.screen(RESIDENT)
    assert "👍 0 Unterstützer*innen" in card["text"]
    assert "👍 Unterstützen" in buttons_of(card)
    assert "🔕 Nicht mehr folgen" in buttons_of(card), "withdrawing keeps the follow"
    await bot.tap(user, "Zurück")
    assert "Suche nach „Qualifizierungszentrum“" in bot.screen(RESIDENT)["text"]
    assert bot.fake.unanswered_callbacks() == []


async def test_search_by_command_and_by_button(bot: BotHarness) -> None:
    user = await start(bot, RESIDENT)
    [reply] = sent(await bot.send(user, "/search STRASSE"))
    assert "1 Treffer" in reply.visible_text
    assert "TD-04" in reply.visible_text

    await bot.send(user, "/menu")
    await bot.tap(user, "to:DO-Punkte")
    await bot.tap(user, "Suchen")
    assert "Wonach suchst du?" in bot.screen(RESIDENT)["text"]
    [reply] = sent(await bot.send(user, "pflege"))
    assert re.findall(r"TD-\d+", reply.visible_text) == ["TD-02", "TD-03"]
    # The prompt is used up: the next text is not a search any more.
    [hint] = sent(await bot.send(user, "pflege"))
    assert "/search" in hint.visible_text

    english = await start(bot, RESIDENT + 1, "en")
    [reply] = sent(await bot.send(english, "/search training"))
    assert "TD-01" in reply.visible_text
    [reply] = sent(await bot.send(english, "/search Qualifizierungszentrum"))
    assert "TD-01" in reply.visible_text, "English residents also find German words"


async def test_comment_review_and_reading(bot: BotHarness) -> None:
    admin = await start(bot, ADMIN)
    user = await start(bot, RESIDENT)
    td02 = await item_id(bot, "TD-02")
    await bot.send(user, "/start item_TD-02")
    await bot.tap(user, "Kommentieren")
    assert "Dein Kommentar zu TD-02" in bot.screen(RESIDENT)["text"]

    calls = await bot.send(user, "Pflegekräfte brauchen <mehr> Zeit & Geld!")
    [thanks] = sent(calls, "sendMessage")[:1]
    assert "wartet auf die Freigabe" in thanks.visible_text
    assert "Du folgst dem Punkt jetzt" in thanks.visible_text
    assert "🔕 Nicht mehr folgen" in thanks.button_texts()
    [review] = [c for c in sent(calls) if c.chat_id == ADMIN]
    assert "Pflegekräfte brauchen <mehr> Zeit & Geld!" in review.visible_text
    assert review.button_texts() == ["✅ Freigeben", "🚫 Ablehnen", "⛔ Sperren"]

    # Not visible before approval.
    await bot.tap(user, "Zum Punkt")
    assert "💬 Kommentare (0)" in buttons_of(bot.screen(RESIDENT))

    calls = await bot.tap(admin, "Freigeben")
    [decided] = [c for c in calls if c.method == "editMessageText" and c.chat_id == ADMIN]
    assert "Freigegeben" in decided.visible_text
    [told] = [c for c in sent(calls) if c.chat_id == RESIDENT]
    assert "jetzt für alle sichtbar" in told.visible_text

    await bot.press(user, cb.ITEM.build(iid=td02, origin="H"))
    await bot.tap(user, "Kommentare (1)")
    screen = bot.screen(RESIDENT)["text"]
    assert "Pflegekräfte brauchen <mehr> Zeit & Geld!" in screen
    assert re.search(r"Anwohner\*in \d{4}", screen)
    assert bot.fake.unanswered_callbacks() == []


async def test_display_name_shows_on_comments(bot: BotHarness) -> None:
    admin = await start(bot, ADMIN)
    user = await start(bot, RESIDENT, "en")
    await bot.send(user, "/settings")
    await bot.tap(user, "Display name")
    await bot.send(user, "Mia from Hörde")
    assert "You appear as: Mia from Hörde" in bot.screen(RESIDENT)["text"]

    await bot.send(user, "/start item_TD-03")
    await bot.tap(user, "Comment")
    await bot.send(user, "Great idea.")
    await bot.tap(admin, "Freigeben")
    await bot.send(user, "/start item_TD-03")
    await bot.tap(user, "Comments (1)")
    assert "Mia from Hörde" in bot.screen(RESIDENT)["text"]

    await bot.send(user, "/settings")
    await bot.tap(user, "Display name")
    await bot.tap(user, "pseudonym")
    assert re.search(r"You appear as: Resident \d{4} \(pseudonym\)", bot.screen(RESIDENT)["text"])


async def test_comment_prompt_survives_a_restart(fake: FakeTelegram, sqlite_url: str) -> None:
    """ "Waiting for the comment text for TD-07" lives in the database."""
    from tests.conftest import make_settings

    settings = make_settings(fake, sqlite_url)
    async with BotHarness.running(fake, settings) as bot:
        user = await start(bot, RESIDENT)
        await bot.send(user, "/start item_TD-01")
        await bot.tap(user, "Kommentieren")
    async with BotHarness.running(fake, settings, with_content=False) as bot:
        [thanks, *_] = sent(await bot.send(user, "Geschrieben nach dem Neustart."))
        assert "wartet auf die Freigabe" in thanks.visible_text
        async with bot.database.uow() as uow:
            assert await uow.comments.count_pending() == 1


async def test_navigating_away_ends_the_comment_prompt(bot: BotHarness) -> None:
    user = await start(bot, RESIDENT)
    await bot.send(user, "/start item_TD-01")
    await bot.tap(user, "Kommentieren")
    await bot.send(user, "/menu")
    [hint] = sent(await bot.send(user, "Dieser Text ist kein Kommentar."))
    assert "/search" in hint.visible_text
    async with bot.database.uow() as uow:
        assert await uow.comments.count_pending() == 0


async def test_cancel_aborts_the_comment(bot: BotHarness) -> None:
    user = await start(bot, RESIDENT)
    await bot.send(user, "/start item_TD-01")
    await bot.tap(user, "Kommentieren")
    await bot.tap(user, "Abbrechen")
    assert bot.screen(RESIDENT)["text"].startswith("📌 TD-01"), "back on the item card"
    await bot.send(user, "Kein Kommentar")
    async with bot.database.uow() as uow:
        assert await uow.comments.count_pending() == 0


async def test_follow_unfollow_and_my_items(bot: BotHarness) -> None:
    user = await start(bot, RESIDENT)
    await bot.send(user, "/start item_TD-04")
    await bot.tap(user, "Folgen")
    assert "🔔 Du folgst diesem Punkt." in bot.screen(RESIDENT)["text"]
    td01 = await item_id(bot, "TD-01")
    await bot.press(user, cb.SUPPORT.build(iid=td01, on=1, origin="H"))

    await bot.send(user, "/myitems")
    screen = bot.screen(RESIDENT)
    assert "Meine Punkte (2)" in screen["text"]
    assert "👍🔔 TD-01 · Qualifizierungszentrum für Green-Tech-Berufe" in buttons_of(screen)
    assert "🔔 TD-04 · Große Straße der Ausbildung" in buttons_of(screen)

    await bot.tap(user, "TD-04")
    await bot.tap(user, "Nicht mehr folgen")
    await bot.tap(user, "Zurück")
    assert "Meine Punkte (1)" in bot.screen(RESIDENT)["text"]


async def test_deep_links_and_share(bot: BotHarness) -> None:
    # A new resident arriving through a shared link is greeted first, then sees the item.
    user = bot.user(RESIDENT, "de")
    calls = await bot.send(user, "/start item_TD-05")
    greeting, card = sent(calls)
    assert "Willkommen" in greeting.visible_text and "/privacy" in greeting.visible_text
    assert card.visible_text.startswith("📌 TD-05 · Ärztliche Versorgung <sicher> & gut")
    share = card.url_buttons()["↗️ Teilen"]
    shared = parse_qs(urlsplit(share).query)["url"][0]
    assert unquote(shared) == "https://t.me/todo_test_bot?start=item_TD-05"

    [session] = sent(await bot.send(user, "/start session_s02"))
    assert session.visible_text.startswith("🎤 Pflege im Quartier")
    assert "(bei 10:00)" in session.visible_text, "a non-YouTube recording gets no time link"

    [unknown] = sent(await bot.send(user, "/start item_TD-99"))
    assert "kenne ich nicht" in unknown.visible_text


async def test_settings_language_and_digest(bot: BotHarness) -> None:
    user = await start(bot, RESIDENT, "de")
    await bot.send(user, "/language")
    await bot.tap(user, "English")
    screen = bot.screen(RESIDENT)
    assert "Language: English" in screen["text"]
    [reply] = sent(await bot.send(user, "/menu"))
    assert "Main menu" in reply.visible_text

    await bot.send(user, "/settings")
    assert "Weekly digest: on" in bot.screen(RESIDENT)["text"]
    await bot.tap(user, "Unsubscribe")
    assert "Weekly digest: off" in bot.screen(RESIDENT)["text"]
    async with bot.database.uow() as uow:
        resident = await uow.residents.by_telegram_id(RESIDENT)
        assert resident is not None and resident.digest_enabled is False
        assert resident.language == "en"


async def test_the_whole_journey_on_each_database(fake: FakeTelegram, db_url: str) -> None:
    """Start, browse, search, support twice, comment, approve, read, follow, deep link —
    once on SQLite and once on PostgreSQL."""
    from tests.conftest import make_settings

    async with BotHarness.running(fake, make_settings(fake, db_url)) as bot:
        admin = await start(bot, ADMIN, "de")
        user = await start(bot, RESIDENT, "en")
        await bot.tap(user, "Sessions")
        await bot.tap(user, "Kick-off")
        await bot.tap(user, "TD-02")
        await bot.tap(user, "Support")
        await bot.press(user, datas_of(bot.screen(RESIDENT))[0].replace(":0:", ":1:"))
        assert "👍 1 supporter " in bot.screen(RESIDENT)["text"]
        await bot.tap(user, "Comment")
        await bot.send(user, "Yes, please!")
        await bot.tap(admin, "Freigeben")
        await bot.send(user, "/search appreciation")
        await bot.tap(user, "TD-02")
        await bot.tap(user, "Comments (1)")
        assert "Yes, please!" in bot.screen(RESIDENT)["text"]
        await bot.send(user, "/start item_TD-02")
        card = bot.screen(RESIDENT)
        assert "✅ You support this item." in card["text"]
        assert "🔔 You follow this item." in card["text"]
        async with bot.database.uow() as uow:
            row = await uow.content.item_by_key("TD-02")
            assert row is not None
            assert (row.item.support_count, row.item.comment_count) == (1, 1)
        assert bot.fake.unanswered_callbacks() == []
        assert all("Traceback" not in t for t in texts(bot.fake.calls))
