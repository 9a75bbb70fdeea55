"""Hostile texts through the fake Bot API into every text the bot takes: HTML and Markdown
injection, bidi controls, zero-width characters, combining floods, emoji ZWJ sequences,
texts at and over Telegram's 4096 limit (also in astral characters), NUL and other
controls, lone surrogates and bytes that are not UTF-8 in the JSON Telegram sends.

For every input and every text: no traceback or "please try again" reaches anyone, no error
is logged, Telegram accepted every reply (the fake parses the HTML strictly: nothing the
resident typed became markup, the literal characters are what is shown), a refused text
changed nothing in the database and got a reply, an accepted one is stored as the domain
cleans it (domain.text), and nothing stored carries controls, bidi overrides or lone
surrogates."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, delete, select

from bot import callbacks as cb
from bot.telegram_text import validate_html, visible_length
from domain import goal_admin, goals, moderation, proposals
from domain.announcements import TEXT_LIMIT
from domain.items import SEARCH_QUERY_MAX
from domain.residents import InvalidDisplayName, validate_display_name
from domain.text import COMBINING_MAX, checked_text, clean_user_text
from storage.models import COMMENT_MAX, Base, Comment, Goal, Milestone, Partner
from tests.conftest import TZ, content_raw, make_settings
from tests.drills import report
from tests.fake_telegram import ApiCall, FakeTelegram, utf16_len
from tests.harness import VOLATILE_COLUMNS, VOLATILE_TABLES, BotHarness, snapshot
from tests.test_importer_goals import goal_entries

JSON = dict[str, Any]
Snapshot = dict[str, list[tuple[Any, ...]]]

ALICE = 1001
ADMIN = 900001
TRY_AGAIN = ("Bitte versuch es gleich noch einmal", "Please try again")

#: What must never be stored: controls (but tab and line breaks), bidi controls,
#: zero-width characters outside emoji sequences, lone surrogates. Independent of
#: domain.text on purpose: it is what a moderator's view must be safe from.
FORBIDDEN = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200b\u200c\u200e\u200f\u202a-\u202e"
    "\u2066-\u2069\ufeff\ud800-\udfff]"
    # … and floods of combining marks (more than domain.text.COMBINING_MAX in a row)
    "|[\u0300-\u036f\u0483-\u0489\u20d0-\u20ff]{9,}"
)


@dataclass(frozen=True)
class Hostile:
    name: str
    text: str
    #: (entity type, text it would cover) that would exist if the input became markup.
    tricks: tuple[tuple[str, str], ...] = ()
    #: Placeholder -> raw bytes in the JSON body of the update (FakeTelegram.add_raw_update).
    raw: dict[str, bytes] = field(default_factory=dict)
    #: Kept literally in what is stored, if the text is taken whole.
    keep: str = ""

    def received(self) -> str:
        """The text the bot gets after python-telegram-bot decoded the JSON."""
        text = self.text
        for placeholder, raw in self.raw.items():
            decoded = json.loads(b'"' + raw + b'"') if raw.startswith(b"\\") else None
            replacement = decoded if decoded is not None else raw.decode("utf-8", "replace")
            text = text.replace(placeholder, replacement)
        return text


CORPUS: list[Hostile] = [
    Hostile(
        "bold",
        "<b>fett</b> und <i>kursiv</i>",
        (("bold", "fett"), ("italic", "kursiv")),
        keep="<b>fett</b> und <i>kursiv</i>",
    ),
    Hostile(
        "js-link",
        '<a href="javascript:alert(1)">klick</a> <a href="https://evil.example">da</a>',
        (("text_link", "klick"), ("text_link", "da")),
        keep='<a href="javascript:alert(1)">klick</a>',
    ),
    Hostile("close-code", "</code></pre></b> danach", (), keep="</code></pre></b>"),
    Hostile(
        "amp",
        "&amp; &lt;b&gt; &#60;b&#62; &#x3C; & &; &#; &nbsp; &unknown; a&&b",
        keep="&amp; &lt;b&gt; &#60;b&#62;",
    ),
    Hostile("unclosed", "<b><i>offen <u>weiter", ()),
    Hostile("spoiler", '<tg-spoiler>geheim</tg-spoiler> <span class="tg-spoiler">x</span>', ()),
    Hostile(
        "markdown",
        "*fett* _kursiv_ __unter__ ~weg~ `code` ```pre``` [link](http://x.y) ||sp|| \\* > q",
        (("bold", "fett"), ("italic", "kursiv"), ("text_link", "link")),
    ),
    Hostile("rtl-override", "Rechnung\u202egnp.exe\u202c ok", ()),
    Hostile("bidi", "\u2066iso\u2069 \u2067r\u2069 \u200eL\u200fR \u061cA \u202aE\u202c", ()),
    Hostile("zero-width", "Null\u200bbreite\u200c Zei\u200dchen\ufeff\u2060", ()),
    Hostile("combining", "Z" + "\u0336\u0335\u0334" * 40 + "algo" + "\u0489" * 30, ()),
    Hostile(
        "emoji-zwj",
        "👨\u200d👩\u200d👧\u200d👦 🏳️\u200d🌈 👩🏽\u200d💻 ❤️\u200d🔥 🇩🇪",
        keep="👨\u200d👩\u200d👧\u200d👦 🏳️\u200d🌈 👩🏽\u200d💻 ❤️\u200d🔥",
    ),
    Hostile("c0", "a\x00b\x01c\x07d\x1be\x7ff\x85g\x9bh", ()),
    Hostile("only-invisible", "\u200b\u202e\x00\ufeff \u2066", ()),
    Hostile("newlines", "Zeile 1\r\nZeile 2\n\n\tZeile 3\u2028Zeile 4", ()),
    Hostile("max-4096", "x" * 4096, ()),
    Hostile("over-4096", "ü" * 4097, ()),
    Hostile("astral-4096", "😀" * 2048, ()),
    Hostile(
        "lone-surrogate",
        "vor @@SURROGATE@@ nach @@LOW@@",
        (),
        {"@@SURROGATE@@": rb"\ud800", "@@LOW@@": rb"\udfff"},
    ),
    Hostile("not-utf8", "vor @@BYTES@@ nach", (), {"@@BYTES@@": b"\xff\xfe\xc3"}),
]


# --------------------------------------------------------------------------- inputs


@dataclass
class Ctx:
    bot: BotHarness
    alice: JSON
    admin: JSON
    goal_id: int = 0
    partner_goal_id: int = 0
    written: int = 0

    async def snap(self) -> Snapshot:
        return await fast_snapshot(self.bot)


@dataclass(frozen=True)
class Input:
    name: str
    sender: str  # "alice" | "admin"
    #: Bring the sender to where the bot waits for this text (None: a command, see prefix).
    arm: Callable[[Ctx], Awaitable[None]] | None
    #: What is stored for a text, by the domain's rules; None: refused.
    expect: Callable[[str], str | None]
    prefix: str = ""
    #: Does a reply show the accepted text (so that we can check it is shown literally)?
    echoes: bool = True
    #: The text is HTML on purpose (a moderator's announcement): its tags are markup.
    markup: bool = False


def _checked(limit: int, *, one_line: bool) -> Callable[[str], str | None]:
    def expect(text: str) -> str | None:
        cleaned, problem, _ = checked_text(text, limit, one_line=one_line)
        return None if problem else cleaned

    return expect


def _comment(text: str) -> str | None:
    cleaned = clean_user_text(text)
    return cleaned if cleaned and len(cleaned) <= COMMENT_MAX else None


def _search(text: str) -> str | None:
    return " ".join(clean_user_text(text).split())[:SEARCH_QUERY_MAX]


def _command_search(text: str) -> str | None:
    # A command's arguments are its words (python-telegram-bot splits on whitespace).
    return _search(" ".join(text.split()))


def _name(text: str) -> str | None:
    try:
        return validate_display_name(text)
    except InvalidDisplayName:
        return None


def _help_note(text: str) -> str | None:
    cleaned = clean_user_text(text)
    return cleaned if cleaned and len(cleaned) <= goals.HELP_NOTE_MAX else None


def _reason(text: str) -> str | None:
    cleaned = clean_user_text(text)
    return cleaned if len(cleaned) <= moderation.REASON_MAX else None


def _partner(text: str) -> str | None:
    parsed = goal_admin.parse_partner(text)
    return None if parsed.problem else parsed.name


def _milestone(text: str) -> str | None:
    parsed = goal_admin.parse_milestone(text)
    return None if parsed.problem else parsed.title


async def arm_comment(ctx: Ctx) -> None:
    await ctx.bot.send(ctx.alice, "/start item_TD-01")
    await ctx.bot.tap(ctx.alice, "Kommentieren")


async def arm_search(ctx: Ctx) -> None:
    await ctx.bot.press(ctx.alice, cb.SEARCH_PROMPT.build())


async def arm_name(ctx: Ctx) -> None:
    await ctx.bot.press(ctx.alice, cb.NAME_PROMPT.build())


async def arm_title(ctx: Ctx) -> None:
    await ctx.bot.send(ctx.alice, "/propose")


async def arm_description(ctx: Ctx) -> None:
    await ctx.bot.send(ctx.alice, "/propose")
    await ctx.bot.send(ctx.alice, "Ein Titel")


async def arm_help(ctx: Ctx) -> None:
    await ctx.bot.press(ctx.alice, cb.GOAL_HELP.build(gid=ctx.goal_id, via="H"))


async def arm_reason(ctx: Ctx) -> None:
    await arm_comment(ctx)
    ctx.written += 1
    await ctx.bot.send(ctx.alice, f"Kommentar Nummer {ctx.written}")
    async with ctx.bot.database.uow() as uow:
        comment_id = (await uow.session.execute(select(Comment.id).order_by(Comment.id))).all()
    await ctx.bot.press(ctx.admin, cb.MODERATE.build(decision="r", cid=comment_id[-1][0]))


def _announcement(text: str) -> str | None:
    html = clean_user_text(text)
    ok = html and validate_html(html) is None and visible_length(html) <= TEXT_LIMIT
    return html if ok else None


async def arm_broadcast(ctx: Ctx) -> None:
    await ctx.bot.send(ctx.admin, "/broadcast")


async def arm_goal_title(ctx: Ctx) -> None:
    await ctx.bot.send(ctx.admin, "/goal new")


async def arm_goal_description(ctx: Ctx) -> None:
    await ctx.bot.send(ctx.admin, "/goal new")
    await ctx.bot.send(ctx.admin, "Ein Ziel")


def _arm_edit(what: str, partner_goal: bool = False) -> Callable[[Ctx], Awaitable[None]]:
    async def arm(ctx: Ctx) -> None:
        gid = ctx.partner_goal_id if partner_goal else ctx.goal_id
        # Room for one more (a goal takes at most 20 partners, 30 milestones): the limit
        # is not what these texts are about.
        model = {"a": Partner, "m": Milestone}.get(what)
        if model is not None:
            async with ctx.bot.database.uow() as uow, uow.write():
                await uow.session.execute(delete(model).where(model.goal_id == gid))
        await ctx.bot.send(ctx.admin, f"/goal {'Z-2' if partner_goal else 'Z-1'}")
        await ctx.bot.press(ctx.admin, cb.GOAL_EDIT.build(gid=gid, what=what))

    return arm


INPUTS: list[Input] = [
    Input("comment", "alice", arm_comment, _comment),
    Input("search", "alice", arm_search, _search),
    Input("search-command", "alice", None, _command_search, prefix="/search "),
    Input("display-name", "alice", arm_name, _name),
    Input("proposal-title", "alice", arm_title, _checked(proposals.TITLE_MAX, one_line=True)),
    Input(
        "proposal-description",
        "alice",
        arm_description,
        _checked(proposals.DESCRIPTION_MAX, one_line=False),
    ),
    Input("help-note", "alice", arm_help, _help_note),
    Input("reject-reason", "admin", arm_reason, _reason),
    Input("goal-title", "admin", arm_goal_title, _checked(goal_admin.TITLE_MAX, one_line=True)),
    Input(
        "goal-description",
        "admin",
        arm_goal_description,
        _checked(goal_admin.DESCRIPTION_MAX, one_line=False),
    ),
    Input(
        "goal-edit-title", "admin", _arm_edit("t"), _checked(goal_admin.TITLE_MAX, one_line=True)
    ),
    Input("goal-edit-partner", "admin", _arm_edit("a", partner_goal=True), _partner),
    Input("goal-edit-milestone", "admin", _arm_edit("m"), _milestone),
    Input("announcement", "admin", arm_broadcast, _announcement, echoes=False, markup=True),
]


# --------------------------------------------------------------------------- checks


async def fast_snapshot(bot: BotHarness) -> Snapshot:
    """tests.harness.snapshot, read through a synchronous engine on SQLite (a tenth of the
    time: hundreds of snapshots here); on PostgreSQL the harness's own."""
    url = bot.settings.database_url
    if not url.startswith("sqlite"):
        return await snapshot(bot.database)
    engine = _SYNC_ENGINES.get(url)
    if engine is None:
        engine = _SYNC_ENGINES[url] = create_engine(url.replace("+aiosqlite", ""))
    tables: Snapshot = {}
    with engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            if table.name in VOLATILE_TABLES:
                continue
            columns = [c for c in table.columns if (table.name, c.name) not in VOLATILE_COLUMNS]
            rows = conn.execute(select(*columns)).all()
            tables[table.name] = sorted((tuple(r) for r in rows), key=repr)
    return tables


_SYNC_ENGINES: dict[str, Engine] = {}


def strings(value: Any) -> Iterator[str]:
    """Every string in a row value (JSON payloads included)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from strings(k)
            yield from strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from strings(v)


def new_strings(before: Snapshot, after: Snapshot) -> list[str]:
    found: list[str] = []
    for table, rows in after.items():
        old = set(map(repr, before.get(table, [])))
        for row in rows:
            if repr(row) not in old:
                found.extend(strings(row))
    return found


def all_strings(snap: Snapshot) -> list[str]:
    return [s for rows in snap.values() for s in strings(rows)]


def replies(calls: list[ApiCall]) -> list[ApiCall]:
    return [c for c in calls if c.method in ("sendMessage", "editMessageText")]


def covered(call: ApiCall) -> list[tuple[str, str]]:
    """(type, covered text) of every entity of a delivered message."""
    response = call.response if isinstance(call.response, dict) else {}
    text = response.get("text") or ""
    units = text.encode("utf-16-le", "surrogatepass")
    return [
        (
            e["type"],
            units[2 * e["offset"] : 2 * (e["offset"] + e["length"])].decode(
                "utf-16-le", "surrogatepass"
            ),
        )
        for e in response.get("entities") or []
    ]


@dataclass
class Tally:
    tried: int = 0
    refused: int = 0
    stored: int = 0
    echoed: int = 0
    #: Announcements (HTML on purpose) whose markup did become entities: the check works.
    markup_made: int = 0
    inputs: set[str] = field(default_factory=set)


def check_replies(calls: list[ApiCall], hostile: Hostile, where: str) -> None:
    for call in calls:
        if call.method in ("sendMessage", "editMessageText", "answerCallbackQuery"):
            # 403: the second admin never started the bot; 400 would be a malformed reply.
            assert call.error_code != 400 or "not modified" in str(call.error), (
                where,
                call.summary(),
            )
        shown = call.visible_text or str(call.params.get("text") or "")
        assert "Traceback" not in shown, where
        assert not any(t in shown for t in TRY_AGAIN), (where, shown[:200])
    for call in replies(calls):
        assert utf16_len(call.visible_text or "") <= 4096
        for trick in hostile.tricks:
            assert trick not in covered(call), (where, trick, call.params.get("text"))


async def deliver(ctx: Ctx, who: JSON, hostile: Hostile, prefix: str) -> list[ApiCall]:
    since = len(ctx.bot.fake.calls)
    update = ctx.bot.fake.message_update(who, prefix + hostile.text)
    if hostile.raw:
        update_id = ctx.bot.fake.add_raw_update(update, hostile.raw)
    else:
        update_id = ctx.bot.fake.add_update(update)
    await ctx.bot.wait_handled(update_id)
    return ctx.bot.fake.calls[since:]


async def try_input(
    ctx: Ctx, spec: Input, hostile: Hostile, tally: Tally, before: Snapshot | None
) -> Snapshot | None:
    """Deliver one hostile text to one input; returns the database afterwards if the bot
    still waits for this input (a refused text), else None (arm again)."""
    who = ctx.alice if spec.sender == "alice" else ctx.admin
    if before is None:
        if spec.arm is not None:
            await spec.arm(ctx)
        before = await ctx.snap()
    received = hostile.received()
    expected = spec.expect(received)
    where = f"{spec.name} × {hostile.name}"
    calls = await deliver(ctx, who, hostile, spec.prefix)
    after = await ctx.snap()
    tally.tried += 1
    tally.inputs.add(spec.name)

    check_replies(calls, hostile if not spec.markup else Hostile(hostile.name, ""), where)
    if spec.markup and any(t in covered(c) for c in replies(calls) for t in hostile.tricks):
        tally.markup_made += 1
    assert replies(calls), f"{where}: no answer"
    for text in new_strings(before, after):
        assert not FORBIDDEN.search(text), (where, text[:80])
    if expected is None:
        tally.refused += 1
        assert after == before, f"{where}: refused, but the database changed"
        # Still waiting for this input (the conversation is unchanged): no need to arm.
        return after if spec.arm is not None else None
    tally.stored += 1
    if expected:
        assert expected in all_strings(after), (where, expected[:80])
    if hostile.keep and len(received) < 100 and not spec.markup:
        assert hostile.keep in expected, (where, expected)
    shown = [(c.visible_text or "") for c in replies(calls)]
    if spec.echoes and expected and len(expected) <= 100 and "\n" not in expected:
        assert any(expected in s for s in shown), (where, expected, shown)
        tally.echoed += 1
    return None


# --------------------------------------------------------------------------- setup


#: No limits in the way of many texts from one resident; notifications at once.
SETTINGS: dict[str, Any] = {
    "actions_per_minute": 10000,
    "comments_per_hour": 10000,
    "proposals_per_hour": 10000,
    "notify_delay_seconds": 0,
    "quiet_hours": "",
}


@pytest.fixture
def bot_settings() -> dict[str, Any]:
    return dict(SETTINGS)


async def _ctx(bot: BotHarness) -> Ctx:
    from domain.importer import import_content

    raw = content_raw()
    raw["goals"] = goal_entries()
    async with bot.database.uow() as uow:
        await import_content(uow, raw, TZ)
        goal_ids = dict(
            (await uow.session.execute(select(Goal.key, Goal.id))).all()  # type: ignore[arg-type]
        )
    ctx = Ctx(bot, bot.user(ALICE, "de"), bot.user(ADMIN, "de"))
    ctx.goal_id, ctx.partner_goal_id = goal_ids["Z-1"], goal_ids["Z-2"]
    await bot.send(ctx.admin, "/start")
    await bot.send(ctx.alice, "/start")
    return ctx


@pytest.fixture
def no_errors_logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.ERROR)
    yield
    failed = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert failed == []


pytestmark = pytest.mark.usefixtures("well_behaved", "no_errors_logged")

TALLY = Tally()


async def run_corpus(bot: BotHarness, inputs: list[Input], corpus: list[Hostile]) -> Tally:
    ctx = await _ctx(bot)
    tally = Tally()
    for spec in inputs:
        armed: Snapshot | None = None
        for hostile in corpus:
            armed = await try_input(ctx, spec, hostile, tally, armed)
    return tally


async def test_hostile_texts_into_every_input(bot: BotHarness) -> None:
    tally = await run_corpus(bot, INPUTS, CORPUS)
    assert tally.refused and tally.stored and tally.echoed
    assert tally.markup_made, "an announcement's <b> is bold: entities are seen"
    _add(tally, "SQLite")


async def test_hostile_texts_outside_a_conversation_and_as_deep_links(bot: BotHarness) -> None:
    ctx = await _ctx(bot)
    tally = Tally()
    for hostile in CORPUS:
        for prefix in ("", "/start "):
            before = await ctx.snap()
            calls = await deliver(ctx, ctx.alice, hostile, prefix)
            after = await ctx.snap()
            check_replies(calls, hostile, f"{prefix or 'text'} × {hostile.name}")
            assert replies(calls)
            assert after == before
            tally.tried += 1
            tally.refused += 1
    tally.inputs |= {"free text", "/start payload"}
    _add(tally, "SQLite")


#: What PostgreSQL refuses (NUL bytes in text) or UTF-8 cannot hold, and the longest texts.
PG_CORPUS = [h for h in CORPUS if h.name in ("c0", "lone-surrogate", "not-utf8", "over-4096")]
PG_INPUTS = [i for i in INPUTS if i.name in ("comment", "search", "search-command", "display-name")]
PG_INPUTS += [
    i
    for i in INPUTS
    if i.name in ("proposal-title", "help-note", "goal-edit-title", "announcement")
]


async def test_hostile_texts_on_both_databases(fake: FakeTelegram, db_url: str) -> None:
    settings = make_settings(fake, db_url, **SETTINGS)
    async with BotHarness.running(fake, settings, with_content=False) as bot:
        tally = await run_corpus(bot, PG_INPUTS, PG_CORPUS)
    assert tally.stored
    _add(tally, "PostgreSQL" if db_url.startswith("postgresql") else "SQLite")


_RUNS: list[tuple[str, Tally]] = []


def _add(tally: Tally, backend: str) -> None:
    _RUNS.append((backend, tally))
    TALLY.tried += tally.tried
    TALLY.refused += tally.refused
    TALLY.stored += tally.stored
    TALLY.echoed += tally.echoed
    TALLY.inputs |= tally.inputs


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    yield
    for engine in _SYNC_ENGINES.values():
        engine.dispose()
    _SYNC_ENGINES.clear()
    if not TALLY.tried:
        return
    backends = sorted({b for b, _ in _RUNS})
    report(
        "hostile texts (tests/test_hostile.py)",
        f"{len(CORPUS)} hostile texts (HTML/Markdown injection, bidi, zero-width, combining, "
        f"ZWJ emoji, 4096/4097/astral lengths, C0/C1/NUL, lone surrogates, non-UTF-8 bytes)",
        f"{TALLY.tried} deliveries through {len(TALLY.inputs)} inputs on {', '.join(backends)}",
        f"{TALLY.refused} refused or ignored with a reply and nothing changed, "
        f"{TALLY.stored} stored as cleaned ({TALLY.echoed} echoed literally; "
        "no markup made from what residents typed)",
        "none crashed, logged an error, leaked a traceback or was refused by Telegram",
    )


def test_clean_user_text_drops_what_corrupts_a_view_and_keeps_emoji() -> None:
    """Regressions: lone surrogates crashed the database write (UnicodeEncodeError on
    SQLite), C1 controls and U+061C got through, emoji ZWJ sequences were split apart and
    combining floods were stored whole."""
    assert clean_user_text("vor \ud800 nach\udfff") == "vor  nach"
    assert clean_user_text("a\x85b\x9bc\u061cd\u180ee") == "abcde"
    family = "👨\u200d👩\u200d👧\u200d👦"
    assert clean_user_text(f"{family} 🏳️\u200d🌈 ❤️\u200d🔥") == f"{family} 🏳️\u200d🌈 ❤️\u200d🔥"
    assert clean_user_text("Zei\u200dchen \u200d👩 👩\u200d") == "Zeichen 👩 👩"
    assert clean_user_text("Z" + "\u0336" * 50 + "a") == "Z" + "\u0336" * COMBINING_MAX + "a"
    assert clean_user_text("e\u0301\u0302") == "é\u0302"  # a few marks are kept (NFC)
