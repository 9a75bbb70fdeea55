"""Basic moderation end to end: new comments reach the admins (or the moderators' group)
with Approve / Reject, the first decision wins, authors are told, /queue lists what is
pending, only admins' presses count, and the command menus are set per role."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select

from storage.models import Comment, Resident
from tests.conftest import make_settings
from tests.fake_telegram import ApiCall, FakeTelegram
from tests.harness import BotHarness, buttons_of, datas_of, sent, texts

JSON = dict[str, Any]
ADMIN_1 = 900001
ADMIN_2 = 900002
ALICE = 1001  # German resident
BOB = 1002  # English resident
GROUP = -100777


# --------------------------------------------------------------------------- helpers


pytestmark = pytest.mark.usefixtures("well_behaved")


def answers(calls: list[ApiCall]) -> list[str]:
    return [str(c.params.get("text") or "") for c in calls if c.method == "answerCallbackQuery"]


def review_messages(fake: FakeTelegram, chat_id: int) -> list[JSON]:
    """The bot's messages in that chat that are (or were) a comment for review."""
    return [m for m in fake.messages(chat_id) if "#" in m.get("text", "") and "TD-" in m["text"]]


async def comment_row(bot: BotHarness, comment_id: int) -> Comment:
    async with bot.database.uow() as uow:
        comment = await uow.session.get(Comment, comment_id)
        assert comment is not None
        await uow.session.refresh(comment)
        return comment


async def pseudonym(bot: BotHarness, telegram_id: int) -> int:
    async with bot.database.uow() as uow:
        resident = await uow.residents.by_telegram_id(telegram_id)
        assert resident is not None
        return resident.pseudonym


async def comment_count(bot: BotHarness, key: str) -> int:
    async with bot.database.uow() as uow:
        row = await uow.content.item_by_key(key)
        assert row is not None
        return row.item.comment_count


async def write_comment(
    bot: BotHarness, user: JSON, text: str, key: str = "TD-01"
) -> tuple[int, list[ApiCall]]:
    """Comment through the bot; returns the comment's id and the calls for the text."""
    comment_label = "Kommentieren" if user.get("language_code") == "de" else "Comment"
    await bot.send(user, f"/start item_{key}")
    await bot.tap(user, comment_label)
    calls = await bot.send(user, text)
    async with bot.database.uow() as uow:
        ids = list((await uow.session.execute(select(Comment.id).order_by(Comment.id))).scalars())
    return ids[-1], calls


async def shown_comments(bot: BotHarness, user: JSON, key: str = "TD-01") -> str:
    """The first page of an item's comment list as the resident sees it."""
    await bot.send(user, f"/start item_{key}")
    label = "Kommentare (" if user.get("language_code") == "de" else "Comments ("
    calls = await bot.tap(user, label)
    return texts(calls)[-1]


@pytest.fixture
def alice(bot: BotHarness) -> JSON:
    return bot.user(ALICE, "de")


@pytest.fixture
def bob(bot: BotHarness) -> JSON:
    return bot.user(BOB, "en")


@pytest.fixture
def anna(bot: BotHarness) -> JSON:
    """Admin 1, German, with a username."""
    return bot.user(ADMIN_1, "de", username="anna_mod", first_name="Anna")


@pytest.fixture
def ben(bot: BotHarness) -> JSON:
    """Admin 2, English, without a username."""
    return bot.user(ADMIN_2, "en", first_name="Ben", last_name="Berg")


@pytest.fixture
async def admins(bot: BotHarness, anna: JSON, ben: JSON) -> AsyncIterator[tuple[JSON, JSON]]:
    await bot.send(anna, "/start")
    await bot.send(ben, "/start")
    yield anna, ben


# --------------------------------------------------------------------------- admins in private


async def test_new_comment_reaches_both_admins_with_buttons(
    bot: BotHarness, alice: JSON, admins: tuple[JSON, JSON]
) -> None:
    comment_id, calls = await write_comment(bot, alice, "Mehr Kurse am Abend!")

    reviews = {c.chat_id: c for c in sent(calls) if c.chat_id in (ADMIN_1, ADMIN_2)}
    assert set(reviews) == {ADMIN_1, ADMIN_2}
    number = await pseudonym(bot, ALICE)
    de, en = reviews[ADMIN_1], reviews[ADMIN_2]
    assert "Mehr Kurse am Abend!" in (de.visible_text or "")
    assert f"Anwohner*in {number}" in (de.visible_text or "")
    assert "TD-01" in (de.visible_text or "")
    assert de.button_texts() == ["✅ Freigeben", "🚫 Ablehnen", "⛔ Sperren"]
    assert en.button_texts() == ["✅ Approve", "🚫 Reject", "⛔ Ban"]  # in each admin's language
    for call in (de, en):
        assert call.callback_datas() == [f"mod:{d}:{comment_id}" for d in "arb"]
    # The author's confirmation says it waits for review; nothing is public yet.
    assert "Moderation" in texts([c for c in sent(calls) if c.chat_id == ALICE])[0]
    assert (await comment_row(bot, comment_id)).status == "pending"
    assert "Noch keine Kommentare" in await shown_comments(bot, alice)


async def test_approve_edits_both_admin_messages_tells_author_and_shows_comment(
    bot: BotHarness, alice: JSON, admins: tuple[JSON, JSON]
) -> None:
    anna, _ = admins
    comment_id, _ = await write_comment(bot, alice, "Bitte auch samstags öffnen.")
    message_1 = bot.screen(ADMIN_1)["message_id"]
    message_2 = bot.screen(ADMIN_2)["message_id"]

    calls = await bot.press(anna, f"mod:a:{comment_id}", message_id=message_1)

    assert answers(calls) == ["Freigegeben."]
    edited_1 = bot.fake.get_message(ADMIN_1, message_1)
    edited_2 = bot.fake.get_message(ADMIN_2, message_2)
    assert edited_1 is not None and edited_2 is not None
    assert "Freigegeben von @anna_mod" in edited_1["text"]
    assert "Approved by @anna_mod" in edited_2["text"]
    for edited in (edited_1, edited_2):
        assert "Bitte auch samstags öffnen." in edited["text"]
        assert buttons_of(edited) == []  # nothing left to decide
    # The author hears it, with a way to the item.
    told = [c for c in sent(calls) if c.chat_id == ALICE]
    assert len(told) == 1
    assert "jetzt für alle sichtbar" in (told[0].visible_text or "")
    assert "Punkt öffnen" in " ".join(told[0].button_texts())

    row = await comment_row(bot, comment_id)
    assert (row.status, row.decided_by_telegram_id) == ("approved", ADMIN_1)
    assert await comment_count(bot, "TD-01") == 1
    shown = await shown_comments(bot, alice)
    assert f"Anwohner*in {await pseudonym(bot, ALICE)}" in shown
    assert "Bitte auch samstags öffnen." in shown


async def test_second_admin_pressing_later_is_told_it_was_decided(
    bot: BotHarness, alice: JSON, admins: tuple[JSON, JSON]
) -> None:
    anna, ben = admins
    comment_id, _ = await write_comment(bot, alice, "Wichtig!")
    message_2 = bot.screen(ADMIN_2)["message_id"]
    await bot.press(anna, f"mod:a:{comment_id}", message_id=bot.screen(ADMIN_1)["message_id"])

    calls = await bot.press(ben, f"mod:r:{comment_id}", message_id=message_2)

    assert answers(calls) == ["Already decided by @anna_mod: approved."]
    assert [c for c in sent(calls) if c.chat_id == ALICE] == []
    row = await comment_row(bot, comment_id)
    assert (row.status, row.decided_by_name) == ("approved", "@anna_mod")
    assert await comment_count(bot, "TD-01") == 1
    assert "Approved by @anna_mod" in bot.screen(ADMIN_2)["text"]
    assert "Wichtig!" in await shown_comments(bot, alice)


async def test_two_admins_pressing_at_once_give_exactly_one_decision(
    bot: BotHarness, alice: JSON, admins: tuple[JSON, JSON]
) -> None:
    anna, ben = admins
    comment_id, _ = await write_comment(bot, alice, "Gleichzeitig entschieden")
    presses = [
        bot.fake.callback_update(
            anna, f"mod:a:{comment_id}", message_id=bot.screen(ADMIN_1)["message_id"]
        ),
        # Reject first asks for a reason; Ban decides at once.
        bot.fake.callback_update(
            ben, f"mod:b:{comment_id}", message_id=bot.screen(ADMIN_2)["message_id"]
        ),
    ]

    calls = await bot.feed_many(presses)

    row = await comment_row(bot, comment_id)
    assert row.status in ("approved", "rejected")
    winner_name = "@anna_mod" if row.status == "approved" else "Ben Berg"
    assert row.decided_by_name == winner_name
    assert sum(a.startswith(("Already decided", "Schon entschieden")) for a in answers(calls)) == 1
    told = [c for c in sent(calls) if c.chat_id == ALICE]
    assert len(told) == 1
    visible = "jetzt für alle sichtbar" if row.status == "approved" else "nicht veröffentlicht"
    assert visible in (told[0].visible_text or "")
    assert await comment_count(bot, "TD-01") == (1 if row.status == "approved" else 0)
    # Both moderators end up seeing the same outcome, without buttons.
    for chat in (ADMIN_1, ADMIN_2):
        screen = bot.screen(chat)
        assert winner_name in screen["text"]
        assert buttons_of(screen) == []


async def test_reject_tells_author_and_keeps_comment_hidden(
    bot: BotHarness, bob: JSON, admins: tuple[JSON, JSON]
) -> None:
    _, ben = admins
    comment_id, _ = await write_comment(bot, bob, "Spam spam spam")

    review_2 = bot.screen(ADMIN_2)["message_id"]
    calls = await bot.press(ben, f"mod:r:{comment_id}", message_id=review_2)
    assert answers(calls) == ["Please write a reason – or reject without one."]
    assert (await comment_row(bot, comment_id)).status == "pending"
    calls = await bot.press(ben, f"mnr:c:{comment_id}")

    assert answers(calls) == ["Rejected."]
    told = [c for c in sent(calls) if c.chat_id == BOB]
    assert len(told) == 1
    assert "was not published" in (told[0].visible_text or "")
    assert "Abgelehnt von Ben Berg" in bot.screen(ADMIN_1)["text"]
    assert "Rejected by Ben Berg" in (bot.fake.get_message(ADMIN_2, review_2) or {})["text"]
    assert "without a reason" in bot.screen(ADMIN_2)["text"]
    assert (await comment_row(bot, comment_id)).status == "rejected"
    assert await comment_count(bot, "TD-01") == 0
    shown = await shown_comments(bot, bob)
    assert "Spam spam spam" not in shown
    assert "No comments yet" in shown
    await bot.send(bob, "/start item_TD-01")
    assert "Comments (0)" in " ".join(buttons_of(bot.screen(BOB)))


async def test_english_author_shows_as_resident_and_display_name_is_used(
    bot: BotHarness, alice: JSON, bob: JSON, admins: tuple[JSON, JSON]
) -> None:
    anna, _ = admins
    first, _ = await write_comment(bot, bob, "From Bob")
    await bot.send(alice, "/settings")
    await bot.tap(alice, "Anzeigename")
    await bot.send(alice, "Alice aus Hörde")
    second, _ = await write_comment(bot, alice, "Von Alice")
    for comment_id in (first, second):
        await bot.press(anna, f"mod:a:{comment_id}", message_id=bot.screen(ADMIN_1)["message_id"])

    shown = await shown_comments(bot, bob)
    assert f"Resident {await pseudonym(bot, BOB)}" in shown
    assert "From Bob" in shown
    assert "Alice aus Hörde" in shown and "Von Alice" in shown
    assert f"{await pseudonym(bot, ALICE)}" not in shown
    assert "Anwohner*in" not in shown


async def test_queue_lists_pending_comments_oldest_first(
    bot: BotHarness, alice: JSON, bob: JSON, admins: tuple[JSON, JSON]
) -> None:
    anna, _ = admins
    first, _ = await write_comment(bot, alice, "Erster Kommentar", "TD-01")
    second, _ = await write_comment(bot, bob, "Second comment", "TD-02")
    third, _ = await write_comment(bot, alice, "Dritter Kommentar", "TD-03")
    review = next(m for m in review_messages(bot.fake, ADMIN_1) if "Second" in m["text"])
    await bot.press(anna, f"mod:r:{second}", message_id=review["message_id"])
    await bot.press(anna, f"mnr:c:{second}")

    calls = await bot.send(anna, "/queue")

    replies = sent(calls)
    assert "2 Kommentare warten auf Freigabe" in (replies[0].visible_text or "")
    listed = replies[1:]
    assert [c.callback_datas() for c in listed] == [
        [f"mod:a:{first}", f"mod:r:{first}", f"mod:b:{first}"],
        [f"mod:a:{third}", f"mod:r:{third}", f"mod:b:{third}"],
    ]
    assert "Erster Kommentar" in (listed[0].visible_text or "")
    assert "Dritter Kommentar" in (listed[1].visible_text or "")

    # Deciding from the queue also updates the first notification.
    calls = await bot.press(anna, f"mod:a:{first}", message_id=listed[0].message_id)
    assert answers(calls) == ["Freigegeben."]
    originals = [m for m in review_messages(bot.fake, ADMIN_1) if "Erster Kommentar" in m["text"]]
    assert len(originals) == 2
    assert all("Freigegeben von @anna_mod" in m["text"] for m in originals)


async def test_queue_says_when_nothing_is_pending(
    bot: BotHarness, admins: tuple[JSON, JSON]
) -> None:
    anna, ben = admins
    calls = await bot.send(anna, "/queue")
    assert [t for t in texts(calls)] == ["📥 Keine Kommentare warten auf Freigabe."]
    calls = await bot.send(ben, "/queue")
    assert texts(calls) == ["📥 No comments are waiting for review."]


async def test_queue_shows_the_oldest_ten_of_many(
    bot: BotHarness, alice: JSON, admins: tuple[JSON, JSON]
) -> None:
    anna, _ = admins
    await bot.send(alice, "/start")
    async with bot.database.uow() as uow:
        resident = await uow.residents.by_telegram_id(ALICE)
        row = await uow.content.item_by_key("TD-04")
        assert resident is not None and row is not None
        async with uow.write():
            ids = [
                await uow.comments.add(resident.id, row.item.id, f"Nummer {n}") for n in range(12)
            ]

    calls = await bot.send(anna, "/queue")

    replies = sent(calls)
    assert "12 Kommentare warten auf Freigabe" in (replies[0].visible_text or "")
    assert "ältesten 10" in (replies[0].visible_text or "")
    assert [c.callback_datas()[0] for c in replies[1:]] == [f"mod:a:{i}" for i in ids[:10]]


async def test_queue_is_refused_for_residents(bot: BotHarness, alice: JSON) -> None:
    await write_comment(bot, alice, "Geheim?")
    calls = await bot.send(alice, "/queue")
    assert texts(calls) == ["🛡 Diesen Befehl können nur Moderator*innen verwenden."]
    assert all(not c.callback_datas() for c in sent(calls))


async def test_admin_who_never_started_does_not_block_the_comment(
    bot: BotHarness, alice: JSON, ben: JSON
) -> None:
    await bot.send(ben, "/start")  # admin 1 never wrote to the bot

    comment_id, calls = await write_comment(bot, alice, "Trotzdem gespeichert")

    assert any(c.chat_id == ADMIN_1 and c.error_code == 403 for c in calls)
    assert "Danke" in texts([c for c in sent(calls) if c.chat_id == ALICE])[0]
    assert (await comment_row(bot, comment_id)).status == "pending"
    review = bot.screen(ADMIN_2)
    assert "Trotzdem gespeichert" in review["text"]
    assert datas_of(review) == [f"mod:{d}:{comment_id}" for d in "arb"]

    await bot.press(ben, f"mod:a:{comment_id}", message_id=review["message_id"])
    assert (await comment_row(bot, comment_id)).status == "approved"
    assert "jetzt für alle sichtbar" in bot.screen(ALICE)["text"]


# --------------------------------------------------------------------------- command menus


async def test_command_menus_per_language_and_role(bot: BotHarness) -> None:
    fake = bot.fake
    resident_de = [c["command"] for c in fake.commands_for(None, "de")]
    resident_default = [c["command"] for c in fake.commands_for(None, "")]
    for commands in (resident_de, resident_default):
        assert {"start", "menu", "search", "settings", "help", "cancel"} <= set(commands)
        assert "queue" not in commands
    german = {c["command"]: c["description"] for c in fake.commands_for(None, "de")}
    english = {c["command"]: c["description"] for c in fake.commands_for(None, "")}
    assert german["search"] != english["search"]
    for admin in (ADMIN_1, ADMIN_2):
        scope = {"type": "chat", "chat_id": admin}
        for code in ("", "de"):
            commands = [c["command"] for c in fake.commands_for(scope, code)]
            assert "queue" in commands and "start" in commands
    assert fake.commands_for({"type": "chat", "chat_id": ALICE}, "") == []
    assert len(fake.calls_of("setMyCommands")) >= 4


async def test_start_up_survives_refused_optional_calls(
    fake: FakeTelegram, sqlite_url: str
) -> None:
    fake.fail("setMyCommands", error_code=400, description="Bad Request: nope", times=None)
    fake.fail("setMyDescription", error_code=400, description="Bad Request: nope", times=None)
    fake.fail("setMyShortDescription", error_code=429, description="Too Many Requests", times=None)

    async with BotHarness.running(fake, make_settings(fake, sqlite_url)) as bot:
        assert fake.calls_of("setMyCommands") and all(
            not c.ok for c in fake.calls_of("setMyCommands")
        )
        calls = await bot.send(bot.user(ALICE, "de"), "/start")
        assert "Willkommen" in texts(calls)[0]
        assert "Sessions" in " ".join(buttons_of(bot.screen(ALICE)))


# --------------------------------------------------------------------------- moderators' group


class TestModerationChat:
    @pytest.fixture
    def bot_settings(self) -> dict[str, Any]:
        return {"moderation_chat_id": GROUP}

    @pytest.fixture(autouse=True)
    def group(self, fake: FakeTelegram) -> None:
        fake.allow_chat(GROUP, title="to:DO Moderation")

    async def test_comments_go_to_the_group_only(
        self, bot: BotHarness, alice: JSON, admins: tuple[JSON, JSON]
    ) -> None:
        comment_id, calls = await write_comment(bot, alice, "Für die Gruppe")

        targets = {c.chat_id for c in sent(calls)}
        assert targets == {ALICE, GROUP}
        review = bot.screen(GROUP)
        assert "Für die Gruppe" in review["text"]
        assert datas_of(review) == [f"mod:{d}:{comment_id}" for d in "arb"]
        assert buttons_of(review) == ["✅ Freigeben", "🚫 Ablehnen", "⛔ Sperren"]

    async def test_only_admins_presses_count(
        self, bot: BotHarness, alice: JSON, admins: tuple[JSON, JSON]
    ) -> None:
        anna, _ = admins
        comment_id, _ = await write_comment(bot, alice, "Gruppenentscheidung")
        review = bot.screen(GROUP)
        member = bot.user(777, "de", username="just_a_member")

        calls = await bot.tap(member, "Freigeben", chat_id=GROUP)

        assert answers(calls) == ["Das dürfen nur Moderator*innen."]
        assert [c for c in calls if c.method in ("sendMessage", "editMessageText")] == []
        assert (await comment_row(bot, comment_id)).status == "pending"
        assert bot.screen(GROUP) == review

        calls = await bot.tap(anna, "Freigeben", chat_id=GROUP)

        assert answers(calls) == ["Freigegeben."]
        assert "Freigegeben von @anna_mod" in bot.screen(GROUP)["text"]
        assert buttons_of(bot.screen(GROUP)) == []
        assert (await comment_row(bot, comment_id)).status == "approved"
        assert "jetzt für alle sichtbar" in bot.screen(ALICE)["text"]
        assert "Gruppenentscheidung" in await shown_comments(bot, alice)

    async def test_queue_in_the_group(self, bot: BotHarness, alice: JSON, anna: JSON) -> None:
        calls = await bot.feed(bot.fake.group_message_update(anna, GROUP, "/queue"))
        assert texts(calls) == ["📥 Keine Kommentare warten auf Freigabe."]

        comment_id, _ = await write_comment(bot, alice, "Wartet noch")
        calls = await bot.feed(bot.fake.group_message_update(anna, GROUP, "/queue@todo_test_bot"))
        assert {c.chat_id for c in sent(calls)} == {GROUP}
        assert "1 Kommentar wartet auf Freigabe" in texts(calls)[0]
        assert sent(calls)[-1].callback_datas() == [f"mod:{d}:{comment_id}" for d in "arb"]

    async def test_other_group_messages_are_ignored(
        self, bot: BotHarness, alice: JSON, anna: JSON
    ) -> None:
        await write_comment(bot, alice, "Ein Kommentar")
        member = bot.user(777, "de")
        ignored = [
            bot.fake.group_message_update(anna, GROUP, "Guten Morgen zusammen"),
            bot.fake.group_message_update(anna, GROUP, "/start"),
            bot.fake.group_message_update(anna, GROUP, "/help"),
            bot.fake.group_message_update(member, GROUP, "/menu"),
            bot.fake.group_message_update(member, GROUP, "/search Pflege"),
        ]
        calls = await bot.feed_many(ignored)
        assert [c for c in calls if c.method != "getUpdates"] == []
        # Other buttons in the group are answered but do nothing.
        calls = await bot.feed(
            bot.fake.callback_update(member, "sup:1:1:H", message_id=1, chat_id=GROUP)
        )
        assert [c.method for c in calls if c.method != "getUpdates"] == ["answerCallbackQuery"]
        async with bot.database.uow() as uow:
            assert await uow.engagement.support_count(1) == 0
            assert await uow.residents.by_telegram_id(777) is None

    async def test_group_commands_menu_has_queue(self, bot: BotHarness) -> None:
        commands = bot.fake.commands_for({"type": "chat", "chat_id": GROUP}, "")
        assert [c["command"] for c in commands] == ["queue"]


async def test_group_without_moderation_chat_stores_nothing(bot: BotHarness, alice: JSON) -> None:
    """Without a moderation chat, a group the bot was added to changes nothing."""
    await bot.feed(bot.fake.group_message_update(alice, -100999, "/queue"))
    async with bot.database.uow() as uow:
        result = await uow.session.execute(select(Resident).where(Resident.telegram_id == ALICE))
        assert result.first() is None
