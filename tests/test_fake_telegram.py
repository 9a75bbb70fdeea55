"""Tests of the fake Telegram Bot API server, driven by the real python-telegram-bot stack."""

from __future__ import annotations

import asyncio
import datetime as dtm
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from telegram import (
    Bot,
    BotCommand,
    BotCommandScopeChat,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Update,
)
from telegram.constants import ParseMode
from telegram.error import BadRequest, Forbidden, InvalidToken, RetryAfter
from telegram.ext import (
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
)

try:
    from tests.fake_telegram import FakeTelegram, HtmlParseError, parse_html, visible_text
except ImportError:  # tests/ not importable as a package
    from fake_telegram import (  # type: ignore[no-redef]
        FakeTelegram,
        HtmlParseError,
        parse_html,
        visible_text,
    )

pytestmark = pytest.mark.asyncio

USER_ID = 1001


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as server:
        yield server


@pytest_asyncio.fixture
async def bot(fake: FakeTelegram) -> AsyncIterator[Bot]:
    async with Bot(
        fake.token, base_url=f"{fake.url}/bot", base_file_url=f"{fake.url}/file/bot"
    ) as telegram_bot:
        yield telegram_bot


@pytest.fixture
def alice(fake: FakeTelegram) -> dict[str, object]:
    """A user who has written to the bot (so strict initiation allows sending to her)."""
    user = fake.user(USER_ID, first_name="Alice", username="alice")
    fake.send_message(user, "hi")
    return user


def keyboard(*buttons: tuple[str, str]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup([[InlineKeyboardButton(t, callback_data=d)] for t, d in buttons])


async def test_get_me(fake: FakeTelegram, bot: Bot) -> None:
    me = await bot.get_me()
    assert me.id == fake.bot_id
    assert me.is_bot
    assert me.username == "todo_test_bot"
    assert me.first_name == "to:DO Bot"
    assert me.can_join_groups is True
    assert fake.calls_of("getMe")


async def test_wrong_token_is_unauthorized(fake: FakeTelegram) -> None:
    with pytest.raises(InvalidToken):
        async with Bot("999:wrong", base_url=f"{fake.url}/bot"):
            pass
    assert fake.calls[-1].error == {
        "ok": False,
        "error_code": 401,
        "description": "Unauthorized",
    }


async def test_send_and_edit_with_keyboard(
    fake: FakeTelegram, bot: Bot, alice: dict[str, object]
) -> None:
    sent = await bot.send_message(
        USER_ID,
        "<b>Hello</b> &amp; welcome",
        parse_mode=ParseMode.HTML,
        reply_markup=keyboard(("Yes", "vote:1"), ("No", "vote:0")),
    )
    assert sent.text == "Hello & welcome"
    assert sent.text_html == "<b>Hello</b> &amp; welcome"
    assert sent.reply_markup is not None
    assert sent.chat.type == "private"
    assert sent.from_user is not None and sent.from_user.id == fake.bot_id

    call = fake.calls_of("sendMessage")[-1]
    assert call.chat_id == USER_ID
    assert call.text == "<b>Hello</b> &amp; welcome"
    assert call.params["parse_mode"] == "HTML"
    assert call.button_texts() == ["Yes", "No"]
    assert call.callback_datas() == ["vote:1", "vote:0"]
    assert call.buttons()[0][0] == {"text": "Yes", "callback_data": "vote:1"}

    edited = await bot.edit_message_text(
        "Thanks!",
        chat_id=USER_ID,
        message_id=sent.message_id,
        reply_markup=InlineKeyboardMarkup(
            [[InlineKeyboardButton("Website", url="https://example.org/x")]]
        ),
    )
    assert not isinstance(edited, bool) and edited.text == "Thanks!"
    edit_call = fake.calls_of("editMessageText")[-1]
    assert edit_call.url_buttons() == {"Website": "https://example.org/x"}

    stored = fake.messages(USER_ID)
    assert [m["message_id"] for m in stored] == [sent.message_id]
    assert stored[0]["text"] == "Thanks!"
    assert "entities" not in stored[0]
    assert stored[0]["reply_markup"]["inline_keyboard"][0][0]["url"] == "https://example.org/x"
    assert "edit_date" in stored[0]

    # editing without reply_markup removes the keyboard, like Telegram
    await bot.edit_message_text("Thanks!", chat_id=USER_ID, message_id=sent.message_id)
    last = fake.last_message(USER_ID)
    assert last is not None and "reply_markup" not in last


async def test_message_ids_are_per_chat_and_shared_with_user_messages(
    fake: FakeTelegram, bot: Bot, alice: dict[str, object]
) -> None:
    first = await bot.send_message(USER_ID, "one")
    fake.send_message(alice, "answer")
    second = await bot.send_message(USER_ID, "two")
    assert first.message_id == 2  # 1 was alice's "hi"
    assert second.message_id == 4
    assert [m["text"] for m in fake.messages(USER_ID)] == ["one", "two"]
    assert [m["text"] for m in fake.all_messages(USER_ID)] == ["hi", "one", "answer", "two"]

    await bot.delete_message(USER_ID, first.message_id)
    assert [m["text"] for m in fake.messages(USER_ID)] == ["two"]
    with pytest.raises(BadRequest, match=r"(?i)message to delete not found"):
        await bot.delete_message(USER_ID, first.message_id)


async def test_edit_not_modified_and_not_found(
    fake: FakeTelegram, bot: Bot, alice: dict[str, object]
) -> None:
    markup = keyboard(("A", "a"))
    sent = await bot.send_message(USER_ID, "same", reply_markup=markup)
    with pytest.raises(BadRequest, match=r"(?i)message is not modified"):
        await bot.edit_message_text(
            "same", chat_id=USER_ID, message_id=sent.message_id, reply_markup=markup
        )
    with pytest.raises(BadRequest, match=r"(?i)message is not modified"):
        await bot.edit_message_reply_markup(USER_ID, sent.message_id, reply_markup=markup)
    assert fake.calls[-1].error is not None
    assert fake.calls[-1].error["error_code"] == 400
    # a different markup is a modification
    await bot.edit_message_reply_markup(USER_ID, sent.message_id, reply_markup=keyboard(("B", "b")))
    with pytest.raises(BadRequest, match=r"(?i)message to edit not found"):
        await bot.edit_message_text("x", chat_id=USER_ID, message_id=999)
    with pytest.raises(BadRequest, match=r"(?i)message can't be edited"):
        await bot.edit_message_text("x", chat_id=USER_ID, message_id=1)  # alice's message


@pytest.mark.parametrize(
    "html",
    [
        "<b>unclosed",
        "<b><i>crossed</b></i>",
        "a < b",
        "Tom & Jerry",
        "&nbsp;",
        "<br>",
        "<span>no class</span>",
        "<a>no href</a>",
        "</b>",
        "<b/>",
        '<a href="https://x.org">ok</a><unknown>x</unknown>',
    ],
)
async def test_invalid_html_is_rejected(
    fake: FakeTelegram, bot: Bot, alice: dict[str, object], html: str
) -> None:
    with pytest.raises(BadRequest, match=r"(?i)can't parse entities"):
        await bot.send_message(USER_ID, html, parse_mode=ParseMode.HTML)
    with pytest.raises(HtmlParseError):
        visible_text(html)
    assert fake.messages(USER_ID) == []


async def test_valid_html_and_entities(
    fake: FakeTelegram, bot: Bot, alice: dict[str, object]
) -> None:
    html = (
        '<B>bold</B> <a href="https://example.org/?a=1&amp;b=2">link</a> '
        '<span class="tg-spoiler">s</span> <tg-spoiler>t</tg-spoiler> '
        '<pre><code class="language-python">x = 1</code></pre> '
        "<blockquote expandable>q</blockquote> &#128512; &#x1F600; &quot;&lt;&gt;"
    )
    sent = await bot.send_message(USER_ID, html, parse_mode=ParseMode.HTML)
    assert sent.text == visible_text(html)
    types = [e.type for e in sent.entities]
    assert types == [
        "bold",
        "text_link",
        "spoiler",
        "spoiler",
        "pre",
        "expandable_blockquote",
    ]
    assert sent.entities[1].url == "https://example.org/?a=1&b=2"
    assert sent.entities[4].language == "python"


async def test_visible_text() -> None:
    assert visible_text("<b>Hi</b> &lt;you&gt; &amp; <i>me</i>") == "Hi <you> & me"
    assert visible_text("Caf&#233; &#x2764;") == "Café ❤"
    assert visible_text('<a href="tg://user?id=1">x</a>y') == "xy"
    assert visible_text("plain > text") == "plain > text"
    text, entities = parse_html("😀<b>x</b>")
    assert text == "😀x"
    assert entities == [{"type": "bold", "offset": 2, "length": 1}]  # UTF-16 offsets


async def test_text_validation(fake: FakeTelegram, bot: Bot, alice: dict[str, object]) -> None:
    with pytest.raises(BadRequest, match=r"(?i)message text is empty"):
        await bot.send_message(USER_ID, "  \n ")
    with pytest.raises(BadRequest, match=r"(?i)message text is empty"):
        await bot.send_message(USER_ID, "<b> </b>", parse_mode=ParseMode.HTML)
    # 4096 visible characters are fine even if the markup makes the raw text longer
    await bot.send_message(USER_ID, "<b>" + "x" * 4096 + "</b>", parse_mode=ParseMode.HTML)
    with pytest.raises(BadRequest, match=r"(?i)message is too long"):
        await bot.send_message(USER_ID, "x" * 4097)
    with pytest.raises(BadRequest, match=r"(?i)message is too long"):
        await bot.send_message(USER_ID, "😀" * 2049)  # 4098 UTF-16 code units
    # surrounding whitespace is stripped like Telegram does
    sent = await bot.send_message(USER_ID, "\n  hi  \n")
    assert sent.text == "hi"


async def test_callback_data_limit(fake: FakeTelegram, bot: Bot, alice: dict[str, object]) -> None:
    await bot.send_message(USER_ID, "ok", reply_markup=keyboard(("x", "a" * 64)))
    await bot.send_message(USER_ID, "ok", reply_markup=keyboard(("x", "ä" * 32)))  # 64 bytes
    with pytest.raises(BadRequest, match=r"(?i)BUTTON_DATA_INVALID"):
        await bot.send_message(USER_ID, "no", reply_markup=keyboard(("x", "a" * 65)))
    with pytest.raises(BadRequest, match=r"(?i)BUTTON_DATA_INVALID"):
        await bot.send_message(USER_ID, "no", reply_markup=keyboard(("x", "ä" * 33)))
    with pytest.raises(BadRequest, match=r"(?i)BUTTON_URL_INVALID"):
        await bot.send_message(
            USER_ID,
            "no",
            reply_markup=InlineKeyboardMarkup(
                [[InlineKeyboardButton("x", url="javascript:alert(1)")]]
            ),
        )
    assert len(fake.messages(USER_ID)) == 2


async def test_button_without_action_is_invalid(
    fake: FakeTelegram, bot: Bot, alice: dict[str, object]
) -> None:
    with pytest.raises(BadRequest, match=r"(?i)BUTTON_TYPE_INVALID"):
        await bot.send_message(
            USER_ID,
            "no",
            reply_markup={"inline_keyboard": [[{"text": "bare"}]]},  # type: ignore[arg-type]
        )


async def test_blocked_chat(fake: FakeTelegram, bot: Bot, alice: dict[str, object]) -> None:
    sent = await bot.send_message(USER_ID, "before")
    fake.block(USER_ID)
    with pytest.raises(Forbidden, match=r"(?i)bot was blocked by the user"):
        await bot.send_message(USER_ID, "after")
    with pytest.raises(Forbidden, match=r"(?i)bot was blocked by the user"):
        await bot.edit_message_text("edit", chat_id=USER_ID, message_id=sent.message_id)
    assert fake.stats["errors"][403] == 2
    fake.unblock(USER_ID)
    await bot.send_message(USER_ID, "again")


@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
async def test_fail_with_retry_after(
    fake: FakeTelegram, bot: Bot, alice: dict[str, object]
) -> None:
    fake.fail(
        "sendMessage",
        error_code=429,
        description="Too Many Requests: retry after 3",
        retry_after=3,
    )
    with pytest.raises(RetryAfter) as info:
        await bot.send_message(USER_ID, "x")
    retry_after = info.value.retry_after
    seconds = retry_after.total_seconds() if isinstance(retry_after, dtm.timedelta) else retry_after
    assert seconds == 3
    assert fake.calls[-1].error == {
        "ok": False,
        "error_code": 429,
        "description": "Too Many Requests: retry after 3",
        "parameters": {"retry_after": 3},
    }
    await bot.send_message(USER_ID, "x")  # times=1: next call succeeds

    fake.fail("sendMessage", error_code=400, description="Bad Request: boom", chat_id=555)
    await bot.send_message(USER_ID, "other chat unaffected")


@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
async def test_rate_limit(fake: FakeTelegram, bot: Bot, alice: dict[str, object]) -> None:
    fake.per_chat_rate_limit = (2, 60.0)
    await bot.send_message(USER_ID, "1")
    await bot.send_message(USER_ID, "2")
    with pytest.raises(RetryAfter):
        await bot.send_message(USER_ID, "3")
    assert fake.stats["rate_limited"] == 1
    assert fake.calls[-1].error is not None
    assert fake.calls[-1].error["parameters"]["retry_after"] >= 59


async def test_strict_initiation(fake: FakeTelegram, bot: Bot) -> None:
    with pytest.raises(Forbidden, match=r"(?i)bot can't initiate conversation with a user"):
        await bot.send_message(2002, "hello?")
    with pytest.raises(BadRequest, match=r"(?i)chat not found"):
        await bot.send_message(-1001234, "group?")
    fake.send_message(fake.user(2002), "/start")
    await bot.send_message(2002, "now it works")
    fake.allow_chat(-1001234)
    sent = await bot.send_message(-1001234, "group ok")
    assert sent.chat.type == "supergroup"
    fake.send_group_message(fake.user(3003), -1005555, "hi all")
    await bot.send_message(-1005555, "hello group")


async def test_parameter_decoding(fake: FakeTelegram, bot: Bot, alice: dict[str, object]) -> None:
    sent = await bot.send_message(
        USER_ID,
        "12345",
        disable_notification=True,
        reply_to_message_id=1,
        reply_markup=keyboard(("1", "2")),
    )
    assert sent.reply_to_message is not None and sent.reply_to_message.text == "hi"
    params = fake.calls_of("sendMessage")[-1].params
    assert params["text"] == "12345"
    assert params["chat_id"] == USER_ID
    assert params["disable_notification"] is True
    assert params["reply_parameters"] == {"message_id": 1}
    assert params["reply_markup"] == {"inline_keyboard": [[{"text": "1", "callback_data": "2"}]]}

    await bot.set_my_commands(
        [BotCommand("start", "Start"), BotCommand("help", "Help")],
        scope=BotCommandScopeChat(USER_ID),
        language_code="de",
    )
    call = fake.calls_of("setMyCommands")[-1]
    assert call.params["commands"][0] == {"command": "start", "description": "Start"}
    assert call.params["scope"] == {"type": "chat", "chat_id": USER_ID}
    assert [c["command"] for c in fake.commands_for(call.params["scope"], "de")] == [
        "start",
        "help",
    ]
    got = await bot.get_my_commands(scope=BotCommandScopeChat(USER_ID), language_code="de")
    assert [c.command for c in got] == ["start", "help"]
    assert await bot.get_my_commands() == ()


async def test_callback_queries(fake: FakeTelegram, bot: Bot, alice: dict[str, object]) -> None:
    sent = await bot.send_message(USER_ID, "Pick", reply_markup=keyboard(("Go", "go:1")))
    uid = fake.press_button(alice, "Go")
    updates = await bot.get_updates(offset=0, timeout=0)
    update = next(u for u in updates if u.update_id == uid)
    query = update.callback_query
    assert query is not None and query.data == "go:1"
    assert query.message is not None and query.message.message_id == sent.message_id
    assert fake.unanswered_callbacks() == [query.id]
    with pytest.raises(BadRequest, match=r"(?i)MESSAGE_TOO_LONG"):
        await bot.answer_callback_query(query.id, text="x" * 201)
    assert await bot.answer_callback_query(query.id, text="Done")
    assert fake.calls_of("answerCallbackQuery")[-1].params["callback_query_id"] == query.id
    assert fake.unanswered_callbacks() == []
    with pytest.raises(BadRequest, match=r"(?i)query is too old"):
        await bot.answer_callback_query(query.id)
    with pytest.raises(BadRequest, match=r"(?i)query is too old"):
        await bot.answer_callback_query("123456789")


async def test_long_poll_wakes_on_update(fake: FakeTelegram, bot: Bot) -> None:
    loop = asyncio.get_running_loop()
    poll = asyncio.create_task(bot.get_updates(timeout=5))
    await fake.wait_until_polling(timeout=2)
    start = loop.time()
    uid = fake.send_message(fake.user(42), "/start now")
    updates = await asyncio.wait_for(poll, timeout=2)
    assert loop.time() - start < 1.0
    assert [u.update_id for u in updates] == [uid]
    message = updates[0].message
    assert message is not None and message.text == "/start now"
    assert message.entities[0].type == "bot_command" and message.entities[0].length == 6
    await fake.wait_until_fetched(uid, timeout=1)

    # the offset confirms; a short poll without new updates returns []
    assert await bot.get_updates(offset=uid + 1, timeout=0) == ()
    assert fake.confirmed_update_id == uid


async def test_stop_ends_long_poll(fake: FakeTelegram, bot: Bot) -> None:
    poll = asyncio.create_task(bot.get_updates(timeout=30))
    await fake.wait_until_polling(timeout=2)
    await asyncio.wait_for(fake.stop(), timeout=3)
    assert await asyncio.wait_for(poll, timeout=3) == ()


async def test_wait_for_call_times_out_with_call_list(
    fake: FakeTelegram, bot: Bot, alice: dict[str, object]
) -> None:
    await bot.send_message(USER_ID, "something")
    with pytest.raises(AssertionError, match="sendMessage"):
        await fake.wait_for_call(lambda c: c.method == "sendPhoto", timeout=0.05)


async def test_document_upload(fake: FakeTelegram, bot: Bot, alice: dict[str, object]) -> None:
    payload = b"id,title\n1,Arbeit\n" * 10
    sent = await bot.send_document(
        USER_ID, payload, filename="export.csv", caption="<i>Export</i>", parse_mode="HTML"
    )
    assert sent.document is not None and sent.document.file_name == "export.csv"
    assert sent.caption == "Export"
    call = fake.calls_of("sendDocument")[-1]
    upload = call.files["document"]
    assert upload.filename == "export.csv"
    assert upload.data == payload and upload.size == len(payload)
    assert call.params["document"] is upload
    assert call.text == "<i>Export</i>"

    # re-send by file_id returns the same file_id; the file can be downloaded again
    again = await bot.send_document(USER_ID, sent.document.file_id)
    assert again.document is not None and again.document.file_id == sent.document.file_id
    file = await bot.get_file(sent.document.file_id)
    assert bytes(await file.download_as_bytearray()) == payload

    photo = await bot.send_photo(USER_ID, b"\x89PNG fake", filename="p.png")
    assert photo.photo and fake.calls_of("sendPhoto")[-1].files["photo"].data == b"\x89PNG fake"
    with pytest.raises(BadRequest, match=r"(?i)wrong file identifier"):
        await bot.send_document(USER_ID, "not-a-known-file-id")


async def test_application_polling_replies_to_start(fake: FakeTelegram) -> None:
    app = (
        ApplicationBuilder()
        .token(fake.token)
        .base_url(f"{fake.url}/bot")
        .base_file_url(f"{fake.url}/file/bot")
        .build()
    )

    async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.message is not None and update.effective_user is not None
        await update.message.reply_text(
            f"Hallo {update.effective_user.first_name}!", reply_markup=keyboard(("OK", "ok"))
        )

    async def pressed(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        assert query is not None
        await query.answer()
        await query.edit_message_text("Erledigt")

    app.add_handler(CommandHandler("start", start))
    app.add_handler(CallbackQueryHandler(pressed))
    await app.initialize()
    await app.start()
    assert app.updater is not None
    await app.updater.start_polling(poll_interval=0, timeout=1)
    try:
        alice = fake.user(USER_ID, first_name="Alice")
        mark = len(fake.calls)
        fake.send_message(alice, "/start")
        call = await fake.wait_for_method("sendMessage", chat_id=USER_ID, since=mark)
        assert call.ok and call.text == "Hallo Alice!"
        assert call.callback_datas() == ["ok"]

        mark = len(fake.calls)
        fake.press_button(alice, "OK")
        await fake.wait_for_method("editMessageText", chat_id=USER_ID, since=mark, ok=True)
        assert fake.messages(USER_ID)[-1]["text"] == "Erledigt"
        assert fake.unanswered_callbacks() == []
    finally:
        await asyncio.wait_for(app.updater.stop(), timeout=5)
        await asyncio.wait_for(app.stop(), timeout=5)
        await asyncio.wait_for(app.shutdown(), timeout=5)
    assert fake.calls_of("deleteWebhook") and fake.calls_of("getMe")
