"""Bad input end to end: forged and stale buttons, unknown deep links, over-long and odd
messages, HTML in comments, replayed updates, updates the bot must ignore, Bot API failures
and residents who blocked the bot. Nothing crashes, nothing is stored wrongly, every button
press is answered and every message fits Telegram's limits."""

from __future__ import annotations

import copy
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import func, select

from storage.models import Comment, Resident
from tests.fake_telegram import ApiCall, FakeTelegram
from tests.harness import BotHarness, buttons_of, datas_of, sent, texts

RESIDENT = 1001
OTHER = 1002
ADMIN = 900001
JSON = dict[str, Any]

TRY_AGAIN_DE = "Bitte versuch es gleich noch einmal"
STALE_DE = "Dieser Knopf ist nicht mehr aktuell"
NOT_TEXT_DE = "Bitte schick mir deinen Kommentar als Text"


# --------------------------------------------------------------------------- helpers


@pytest.fixture(autouse=True)
def checks(fake: FakeTelegram) -> Any:
    """After every test: Telegram never refused a message or answer as malformed (invalid
    HTML, over 4096 characters, bad keyboard), every press was answered and no text shows a
    stack trace. A test that
    replays an answered button adds "query is too old" to the returned set."""
    expected: set[str] = {"not modified"}
    yield expected
    refused = [
        c.summary()
        for c in fake.calls
        if c.method in ("sendMessage", "editMessageText", "answerCallbackQuery")
        and c.error_code == 400
        and not any(e in str((c.error or {}).get("description")) for e in expected)
    ]
    assert refused == []
    assert fake.unanswered_callbacks() == []
    for call in fake.calls:
        shown = call.visible_text or str(call.params.get("text") or "")
        assert "Traceback" not in shown
        assert "Error:" not in shown
        if call.method in ("sendMessage", "editMessageText"):
            assert len(shown) <= 4096


def bot_calls(calls: list[ApiCall]) -> list[ApiCall]:
    """What the bot did, without its polling."""
    return [c for c in calls if c.method != "getUpdates"]


def answer_of(fake: FakeTelegram, calls: list[ApiCall]) -> str:
    """The text of the callback answer among these calls ("" if answered without text)."""
    answers = [c for c in calls if c.method == "answerCallbackQuery"]
    assert len(answers) == 1, [c.summary() for c in calls]
    return str(answers[0].params.get("text") or "")


async def item_id(bot: BotHarness, key: str) -> int:
    async with bot.database.uow() as uow:
        row = await uow.content.item_by_key(key)
        assert row is not None
        return row.item.id


async def counters(bot: BotHarness, key: str) -> tuple[int, int]:
    """(support_count, comment_count) as stored on the item."""
    async with bot.database.uow() as uow:
        row = await uow.content.item_by_key(key)
        assert row is not None
        return row.item.support_count, row.item.comment_count


async def comment_texts(bot: BotHarness) -> list[str]:
    async with bot.database.uow() as uow:
        result = await uow.session.execute(select(Comment.text).order_by(Comment.id))
        return list(result.scalars())


async def comment_total(bot: BotHarness) -> int:
    async with bot.database.uow() as uow:
        return (await uow.session.execute(select(func.count()).select_from(Comment))).scalar_one()


async def resident_row(bot: BotHarness, telegram_id: int) -> Resident:
    async with bot.database.uow() as uow:
        resident = await uow.residents.by_telegram_id(telegram_id)
        assert resident is not None
        await uow.session.refresh(resident)
        return resident


async def open_comment_prompt(bot: BotHarness, user: JSON, key: str = "TD-01") -> None:
    await bot.send(user, f"/start item_{key}")
    calls = await bot.tap(user, "Kommentieren")
    assert "Dein Kommentar zu" in texts(calls)[-1] or "Your comment on" in texts(calls)[-1]


async def write_comment(bot: BotHarness, user: JSON, text: str, key: str = "TD-01") -> int:
    """Comment through the bot; returns the new (pending) comment's id."""
    await open_comment_prompt(bot, user, key)
    await bot.send(user, text)
    async with bot.database.uow() as uow:
        ids = (await uow.session.execute(select(Comment.id).order_by(Comment.id))).scalars()
        return list(ids)[-1]


def sticker() -> JSON:
    return {
        "sticker": {
            "file_id": "CAACAgIAAxkBAAIBsticker",
            "file_unique_id": "AgADsticker",
            "type": "regular",
            "width": 512,
            "height": 512,
            "is_animated": False,
            "is_video": False,
        }
    }


def photo() -> JSON:
    return {
        "photo": [
            {"file_id": "AgACAgIphoto1", "file_unique_id": "p", "width": 90, "height": 90},
            {"file_id": "AgACAgIphoto2", "file_unique_id": "q", "width": 800, "height": 800},
        ]
    }


def voice() -> JSON:
    return {"voice": {"file_id": "AwACAgIAAxkBAAvoice", "file_unique_id": "v1", "duration": 3}}


def my_chat_member(fake: FakeTelegram, user: JSON, old: str, new: str) -> JSON:
    me = {
        "id": fake.bot_id,
        "is_bot": True,
        "first_name": fake.bot_first_name,
        "username": fake.bot_username,
    }

    def member(status: str) -> JSON:
        return {"user": me, "status": status, **({"until_date": 0} if status == "kicked" else {})}

    return {
        "my_chat_member": {
            "chat": fake.private_chat(user),
            "from": user,
            "date": int(time.time()),
            "old_chat_member": member(old),
            "new_chat_member": member(new),
        }
    }


@pytest.fixture
def alice(bot: BotHarness) -> JSON:
    return bot.user(RESIDENT, "de")


@pytest.fixture
async def admin(bot: BotHarness) -> AsyncIterator[JSON]:
    user = bot.user(ADMIN, "de", username="mod_anna")
    await bot.send(user, "/start")
    yield user


# --------------------------------------------------------------------------- forged buttons


@pytest.mark.parametrize(
    "data",
    [
        "garbage",
        "",
        "zz:1:2",
        "sup:abc:1:H",
        "sup:1:2:H",
        "sup:1:1",
        "i:1:Zbad",
        "il:0:x:0",
        "mod:x:1",
        "cl:1:0:S",
        "sup:1:1:H:extra",
        "ä" * 30,
    ],
)
async def test_forged_callback_data_is_answered_and_changes_nothing(
    bot: BotHarness, alice: JSON, data: str
) -> None:
    await bot.send(alice, "/start item_TD-01")
    screen_before = bot.screen(RESIDENT)

    calls = await bot.press(alice, data)

    assert STALE_DE in answer_of(bot.fake, calls)
    assert sent(calls) == [] and sent(calls, "editMessageText") == []
    assert bot.screen(RESIDENT) == screen_before
    assert await counters(bot, "TD-01") == (0, 0)
    async with bot.database.uow() as uow:
        assert await uow.engagement.support_count(await item_id(bot, "TD-01")) == 0
        assert await uow.comments.count_pending() == 0
    assert bot.fake.unanswered_callbacks() == []


async def test_support_for_an_unknown_item_is_answered_and_stores_nothing(
    bot: BotHarness, alice: JSON
) -> None:
    await bot.send(alice, "/start item_TD-01")
    screen_before = bot.screen(RESIDENT)

    calls = await bot.press(alice, "sup:999999:1:H")
    assert "gibt es nicht mehr" in answer_of(bot.fake, calls)
    calls += await bot.press(alice, "fol:999999:1:H")
    calls += await bot.press(alice, "c:999999:H")
    calls += await bot.press(alice, "cl:999999:0:H")
    calls += await bot.press(alice, "i:999999:H")

    resident = await resident_row(bot, RESIDENT)
    async with bot.database.uow() as uow:
        assert await uow.engagement.support_count(999999) == 0
        assert await uow.engagement.count_my_items(resident.id) == 0
        state = await uow.conversations.get(resident.id)
        assert state is None or state.awaiting is None
    # The stale screens say the item is gone, with a way back to the menu.
    assert bot.screen(RESIDENT) != screen_before
    assert "gibt es nicht (mehr)" in texts(calls)[-1]
    assert bot.fake.unanswered_callbacks() == []
    # The next text is not taken as a comment on a phantom item.
    await bot.send(alice, "Hallo")
    assert await comment_total(bot) == 0


async def test_stale_item_origin_falls_back_to_a_working_card(bot: BotHarness, alice: JSON) -> None:
    """An old keyboard pointing at a session or field that is gone still opens the item;
    "Back" then leads somewhere that works."""
    await bot.send(alice, "/start")
    iid = await item_id(bot, "TD-01")
    await bot.press(alice, f"i:{iid}:S999999")
    assert "TD-01" in bot.screen(RESIDENT)["text"]
    calls = await bot.tap(alice, "Zurück")
    assert "gibt es nicht (mehr)" in texts(calls)[-1]
    calls = await bot.press(alice, "il:999999:s:0")
    assert STALE_DE in answer_of(bot.fake, calls)
    assert "to:DO-Liste" in bot.screen(RESIDENT)["text"]
    assert bot.fake.unanswered_callbacks() == []


async def test_moderation_button_forged_by_a_resident_changes_nothing(
    bot: BotHarness, alice: JSON, admin: JSON
) -> None:
    comment_id = await write_comment(bot, alice, "Gute Idee!")
    for data in (f"mod:a:{comment_id}", f"mod:r:{comment_id}"):
        calls = await bot.press(alice, data)
        assert "nur Moderator*innen" in answer_of(bot.fake, calls)
        assert sent(calls) == []

    async with bot.database.uow() as uow:
        assert await uow.comments.count_pending() == 1
        assert await uow.comments.count_approved(await item_id(bot, "TD-01")) == 0
    assert await counters(bot, "TD-01") == (0, 0)
    # The admin's review message still offers the decision.
    assert "Freigeben" in " ".join(buttons_of(bot.screen(ADMIN)))
    assert bot.fake.unanswered_callbacks() == []


async def test_moderation_button_for_an_unknown_comment(bot: BotHarness, admin: JSON) -> None:
    calls = await bot.press(admin, "mod:a:999999")
    assert STALE_DE in answer_of(bot.fake, calls)
    async with bot.database.uow() as uow:
        assert await uow.comments.count_pending() == 0
    assert bot.fake.unanswered_callbacks() == []


# --------------------------------------------------------------------------- deep links


@pytest.mark.parametrize(
    "payload",
    ["item_NOPE", "session_x", "garbage!!", "item_", "item_" + "A" * 33, "session_s01;drop"],
)
async def test_unknown_deep_links_get_a_clear_message(
    bot: BotHarness, alice: JSON, payload: str
) -> None:
    calls = await bot.send(alice, f"/start {payload}")
    shown = texts(calls)
    assert "Diesen Link kenne ich nicht" in shown[-1]
    # A first contact is greeted (with the privacy notice) before that.
    assert "Willkommen" in shown[0] and "/privacy" in shown[0]
    assert "Sessions" in " ".join(buttons_of(bot.screen(RESIDENT)))


async def test_known_deep_links_still_open(bot: BotHarness, alice: JSON) -> None:
    await bot.send(alice, "/start")
    calls = await bot.send(alice, "/start item_TD-03")
    assert "TD-03" in texts(calls)[-1]
    calls = await bot.send(alice, "/start session_s02")
    assert "Pflege im Quartier" in texts(calls)[-1]


# --------------------------------------------------------------------------- comment text


async def test_over_long_comment_is_refused_with_the_limit_then_a_valid_one_is_taken(
    bot: BotHarness, alice: JSON
) -> None:
    await open_comment_prompt(bot, alice)

    calls = await bot.send(alice, "x" * 1001)
    reply = texts(calls)[-1]
    assert "1.001" in reply and "1.000" in reply
    assert "nichts" in reply.lower()
    assert await comment_total(bot) == 0

    # Still waiting for the comment: a shorter text is taken.
    calls = await bot.send(alice, "y" * 1000)
    assert "Danke" in texts(calls)[0]
    assert await comment_texts(bot) == ["y" * 1000]


async def test_html_in_comments_is_stored_as_typed_and_shown_escaped(
    bot: BotHarness, alice: JSON, admin: JSON
) -> None:
    typed = "<b>fett</b> & <script>alert(1)</script> a<b & c>d &amp;"
    comment_id = await write_comment(bot, alice, typed)
    assert await comment_texts(bot) == [typed]

    review = bot.screen(ADMIN)
    assert typed in review["text"]  # the text as the moderator sees it
    assert datas_of(review)[:2] == [f"mod:a:{comment_id}", f"mod:r:{comment_id}"]
    raw = bot.fake.calls_of("sendMessage", ADMIN)[-1].params["text"]
    assert "&lt;b&gt;fett&lt;/b&gt; &amp; &lt;script&gt;alert(1)&lt;/script&gt;" in raw
    assert "&amp;amp;" in raw

    await bot.press(admin, f"mod:a:{comment_id}")
    assert typed in bot.screen(ADMIN)["text"]

    await bot.send(alice, "/start item_TD-01")
    calls = await bot.tap(alice, "Kommentare (1)")
    assert typed in texts(calls)[-1]
    # No formatting came from the resident's text: it is plain text in the message.
    shown = [c for c in calls if c.method == "editMessageText"][-1]
    assert "<b>fett</b>" not in shown.params["text"]
    assert "&lt;script&gt;" in shown.params["text"]
    assert bot.fake.unanswered_callbacks() == []


@pytest.mark.parametrize("media", [sticker, photo, voice], ids=["sticker", "photo", "voice"])
async def test_non_text_while_a_comment_is_awaited_asks_for_text(
    bot: BotHarness, alice: JSON, media: Any
) -> None:
    await open_comment_prompt(bot, alice)

    calls = await bot.send(alice, None, extra=media())
    assert NOT_TEXT_DE in texts(calls)[-1]
    assert await comment_total(bot) == 0

    # The bot keeps waiting: text now becomes the comment.
    await bot.send(alice, "Jetzt als Text")
    assert await comment_texts(bot) == ["Jetzt als Text"]
    assert bot.fake.unanswered_callbacks() == []


async def test_blank_text_while_a_comment_is_awaited_stores_nothing(
    bot: BotHarness, alice: JSON
) -> None:
    await open_comment_prompt(bot, alice)
    calls = await bot.send(alice, "   \n\t \u200b ")
    assert NOT_TEXT_DE in texts(calls)[-1]
    calls = await bot.send(alice, "")
    calls += await bot.send(alice, None)
    assert sent(calls), "an empty message still gets an answer"
    assert await comment_total(bot) == 0
    await bot.send(alice, "Echter Text")
    assert await comment_texts(bot) == ["Echter Text"]


async def test_empty_messages_outside_a_conversation(bot: BotHarness, alice: JSON) -> None:
    await bot.send(alice, "/start")
    for text in ("", None, "   "):
        calls = await bot.send(alice, text)
        assert len(sent(calls)) <= 1
        assert TRY_AGAIN_DE not in " ".join(texts(calls))
    assert await comment_total(bot) == 0


# --------------------------------------------------------------------------- replays


async def test_same_message_delivered_twice_gives_one_comment(bot: BotHarness, alice: JSON) -> None:
    await open_comment_prompt(bot, alice)
    update = bot.fake.message_update(alice, "Nur einmal bitte")
    again = copy.deepcopy(update)

    await bot.feed(update)
    await bot.feed(again)  # Telegram delivers it once more (same message, new update id)

    assert await comment_texts(bot) == ["Nur einmal bitte"]
    async with bot.database.uow() as uow:
        assert await uow.comments.count_pending() == 1


async def test_same_text_twice_at_once_gives_one_comment(bot: BotHarness, alice: JSON) -> None:
    await open_comment_prompt(bot, alice)
    calls = await bot.feed_many(
        [
            bot.fake.message_update(alice, "Doppelt gesendet"),
            bot.fake.message_update(alice, "Doppelt gesendet"),
        ]
    )
    assert await comment_texts(bot) == ["Doppelt gesendet"]
    assert sum("Danke" in t for t in texts(calls)) == 1


async def test_support_pressed_several_times_at_once_counts_once(
    bot: BotHarness, alice: JSON, checks: set[str]
) -> None:
    await bot.send(alice, "/start item_TD-02")
    card = bot.screen(RESIDENT)
    support = next(d for d in datas_of(card) if d.startswith("sup:"))
    assert ":1:" in support

    presses = [
        bot.fake.callback_update(alice, support, message_id=card["message_id"]) for _ in range(5)
    ]
    assert len({p["callback_query"]["id"] for p in presses}) == 5
    await bot.feed_many(presses)
    # … and a replay of one of them later (its query was answered already).
    checks.add("query is too old")
    replay = copy.deepcopy(presses[0])
    del replay["update_id"]
    await bot.feed(replay)

    iid = await item_id(bot, "TD-02")
    async with bot.database.uow() as uow:
        assert await uow.engagement.support_count(iid) == 1
    assert await counters(bot, "TD-02") == (1, 0)
    card = bot.screen(RESIDENT)
    assert "1 Unterstützer" in card["text"]
    assert any("zurückziehen" in b for b in buttons_of(card))
    assert any(d.startswith(f"sup:{iid}:0:") for d in datas_of(card))
    assert bot.fake.unanswered_callbacks() == []


async def test_withdraw_replayed_does_not_go_below_zero(bot: BotHarness, alice: JSON) -> None:
    await bot.send(alice, "/start item_TD-02")
    await bot.tap(alice, "Unterstützen")
    card = bot.screen(RESIDENT)
    withdraw = next(d for d in datas_of(card) if d.startswith("sup:"))
    await bot.feed_many(
        [bot.fake.callback_update(alice, withdraw, message_id=card["message_id"]) for _ in range(3)]
    )
    assert await counters(bot, "TD-02") == (0, 0)
    assert any(b.endswith("Unterstützen") for b in buttons_of(bot.screen(RESIDENT)))
    assert bot.fake.unanswered_callbacks() == []


# --------------------------------------------------------------------------- ignored updates


async def test_edited_messages_are_ignored(bot: BotHarness, alice: JSON) -> None:
    await open_comment_prompt(bot, alice)
    update = bot.fake.message_update(alice, "Kommentar, bearbeitet", edited=True)
    calls = await bot.feed(update)
    assert bot_calls(calls) == []
    assert await comment_total(bot) == 0
    calls = await bot.send(alice, "/start", edited=True)
    assert bot_calls(calls) == []


async def test_channel_posts_are_ignored(bot: BotHarness) -> None:
    calls = await bot.feed(bot.fake.channel_post_update(-100555, "/start"))
    calls += await bot.feed(bot.fake.channel_post_update(-100555, "Hallo"))
    assert sent(calls) == [] and bot_calls(calls) == []


@pytest.mark.parametrize("text", ["/start", "Hallo Bot", "/queue", "/start item_TD-01"])
async def test_group_messages_are_ignored(bot: BotHarness, text: str) -> None:
    member = bot.user(RESIDENT, "de")
    admin = bot.user(ADMIN, "de")
    calls = await bot.feed(bot.fake.group_message_update(member, -100666, text))
    calls += await bot.feed(bot.fake.group_message_update(admin, -100666, text))
    assert bot_calls(calls) == []
    async with bot.database.uow() as uow:
        assert await uow.residents.by_telegram_id(RESIDENT) is None


async def test_button_in_a_group_is_answered_and_does_nothing(bot: BotHarness) -> None:
    member = bot.user(RESIDENT, "de")
    iid = await item_id(bot, "TD-01")
    calls = await bot.feed(
        bot.fake.callback_update(member, f"sup:{iid}:1:H", message_id=5, chat_id=-100666)
    )
    assert [c.method for c in bot_calls(calls)] == ["answerCallbackQuery"]
    assert await counters(bot, "TD-01") == (0, 0)
    assert bot.fake.unanswered_callbacks() == []


async def test_messages_from_other_bots_are_ignored(bot: BotHarness) -> None:
    other_bot = bot.user(555777, "de", is_bot=True)
    calls = await bot.send(other_bot, "/start")
    calls += await bot.send(other_bot, "Hallo")
    assert bot_calls(calls) == []
    async with bot.database.uow() as uow:
        assert await uow.residents.by_telegram_id(555777) is None


# --------------------------------------------------------------------------- failures


async def test_bot_api_failure_gives_a_short_please_try_again(bot: BotHarness, alice: JSON) -> None:
    await bot.send(alice, "/start item_TD-01")
    bot.fake.fail("editMessageText", error_code=500, description="Internal Server Error")

    calls = await bot.tap(alice, "Menü")

    # The press was answered once, together with the edit that failed (one round trip, not
    # two); "please try again" follows as a message.
    answer_of(bot.fake, calls)
    replies = sent(calls)
    assert len(replies) == 1
    assert TRY_AGAIN_DE in (replies[0].visible_text or "")
    assert len(replies[0].visible_text or "") < 200
    assert bot.fake.unanswered_callbacks() == []
    # The next press works again.
    calls = await bot.tap(alice, "Menü")
    assert "Hauptmenü" in texts(calls)[-1]


async def test_failure_while_handling_a_message_in_english(bot: BotHarness) -> None:
    bob = bot.user(OTHER, "en")
    await bot.send(bob, "/start")
    bot.fake.fail("sendMessage", error_code=500, description="Internal Server Error")
    calls = await bot.send(bob, "/menu")
    replies = [c for c in sent(calls) if c.ok]
    assert len(replies) == 1
    assert "Please try again" in (replies[0].visible_text or "")


async def test_blocked_resident_is_marked_and_gets_no_decision_message(
    bot: BotHarness, alice: JSON, admin: JSON
) -> None:
    comment_id = await write_comment(bot, alice, "Bevor ich gehe")
    await bot.send(alice, "/start item_TD-01")
    bot.fake.block(RESIDENT)

    calls = await bot.tap(alice, "Menü")  # the bot's reply fails with 403

    assert any(c.error_code == 403 for c in calls)
    assert (await resident_row(bot, RESIDENT)).blocked_at is not None
    assert TRY_AGAIN_DE not in " ".join(texts(calls))

    before = len(bot.fake.calls)
    await bot.press(admin, f"mod:a:{comment_id}", message_id=bot.screen(ADMIN)["message_id"])
    after = bot.fake.calls[before:]
    assert [c for c in after if c.chat_id == RESIDENT] == []
    async with bot.database.uow() as uow:
        assert await uow.comments.count_approved(await item_id(bot, "TD-01")) == 1
    assert bot.fake.unanswered_callbacks() == []


async def test_kicked_marks_blocked_and_writing_again_clears_it(
    bot: BotHarness, alice: JSON, admin: JSON
) -> None:
    await bot.send(alice, "/start")
    calls = await bot.feed(my_chat_member(bot.fake, alice, "member", "kicked"))
    assert bot_calls(calls) == []
    assert (await resident_row(bot, RESIDENT)).blocked_at is not None

    # They come back: Telegram reports it and they write again.
    await bot.feed(my_chat_member(bot.fake, alice, "kicked", "member"))
    calls = await bot.send(alice, "/start")
    assert sent(calls) and all(c.ok for c in sent(calls))
    assert (await resident_row(bot, RESIDENT)).blocked_at is None


async def test_kicked_for_an_unknown_user_stores_nothing(bot: BotHarness) -> None:
    stranger = bot.user(OTHER, "de")
    calls = await bot.feed(my_chat_member(bot.fake, stranger, "member", "kicked"))
    assert bot_calls(calls) == []
    async with bot.database.uow() as uow:
        assert await uow.residents.by_telegram_id(OTHER) is None


# --------------------------------------------------------------------------- commands


async def test_cancel_with_nothing_to_cancel(bot: BotHarness, alice: JSON) -> None:
    await bot.send(alice, "/start")
    calls = await bot.send(alice, "/cancel")
    assert "nichts abzubrechen" in texts(calls)[-1]


async def test_cancel_ends_the_comment_prompt(bot: BotHarness, alice: JSON) -> None:
    await open_comment_prompt(bot, alice)
    calls = await bot.send(alice, "/cancel")
    assert "Abgebrochen" in texts(calls)[-1]
    calls = await bot.send(alice, "Das ist kein Kommentar mehr")
    assert "/search" in texts(calls)[-1]
    assert await comment_total(bot) == 0


@pytest.mark.parametrize("command", ["/frobnicate", "/START2", "/queue_all", "/x@todo_test_bot"])
async def test_unknown_command_gets_a_hint(bot: BotHarness, alice: JSON, command: str) -> None:
    calls = await bot.send(alice, command)
    assert "Diesen Befehl kenne ich nicht" in texts(calls)[-1]
    assert "/help" in texts(calls)[-1]


async def test_unknown_command_in_english(bot: BotHarness) -> None:
    calls = await bot.send(bot.user(OTHER, "en"), "/frobnicate")
    assert "I don't know this command" in texts(calls)[-1]


# --------------------------------------------------------------------------- long input


async def test_long_search_query_fits_the_message(bot: BotHarness, alice: JSON) -> None:
    query = ("Pflege " * 50)[:300]
    calls = await bot.send(alice, f"/search {query}")
    replies = sent(calls)
    assert replies and all(c.ok for c in replies)
    assert "Suche nach" in texts(calls)[-1]
    assert len(texts(calls)[-1]) <= 4096

    await bot.tap(alice, "Neue Suche")
    calls = await bot.send(alice, "ß" * 300)
    assert "Suche nach" in texts(calls)[-1]
    assert all(c.ok for c in sent(calls))
    assert bot.fake.unanswered_callbacks() == []


async def test_display_name_too_long_or_multi_line_is_refused(bot: BotHarness, alice: JSON) -> None:
    await bot.send(alice, "/settings")
    await bot.tap(alice, "Anzeigename")

    calls = await bot.send(alice, "N" * 33)
    assert "zu lang" in texts(calls)[-1] and "32" in texts(calls)[-1]
    calls = await bot.send(alice, "Anna\nSchmidt")
    assert "in einer Zeile" in texts(calls)[-1]
    assert (await resident_row(bot, RESIDENT)).display_name is None

    calls = await bot.send(alice, "N" * 32)
    assert "N" * 32 in texts(calls)[-1]
    assert (await resident_row(bot, RESIDENT)).display_name == "N" * 32
    assert bot.fake.unanswered_callbacks() == []


async def test_html_display_name_is_shown_escaped(bot: BotHarness, alice: JSON) -> None:
    await bot.send(alice, "/settings")
    await bot.tap(alice, "Anzeigename")
    calls = await bot.send(alice, "<i>Kim</i> & Co")
    assert "<i>Kim</i> & Co" in texts(calls)[-1]
    assert (await resident_row(bot, RESIDENT)).display_name == "<i>Kim</i> & Co"
    assert bot.fake.unanswered_callbacks() == []
