"""Units without a database: text helpers, callback data, HTML truncation, settings."""

from __future__ import annotations

import html

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from bot import callbacks as cb
from bot.settings import ConfigError, Settings, load_settings, normalise_database_url
from bot.telegram_text import ELLIPSIS, truncate_html
from domain.text import clean_user_text, fold, language_for, pick, search_words
from tests.fake_telegram import parse_html, utf16_len, visible_text

# --------------------------------------------------------------------------- domain.text


@pytest.mark.parametrize(
    ("text", "folded"),
    [
        ("Straße", "strasse"),
        ("STRASSE", "strasse"),
        ("Fachkräfte", "fachkrafte"),
        ("FACHKRÄFTE", "fachkrafte"),
        ("Ärztliche  Versorgung\n", "arztliche versorgung"),
        ("Ayşe Demir", "ayse demir"),
        ("ﬁnanzen", "finanzen"),  # compatibility ligature
    ],
)
def test_fold(text: str, folded: str) -> None:
    assert fold(text) == folded


def test_search_words() -> None:
    assert search_words("  Pflege, PFLEGE!  (Straße) ") == ["pflege", "strasse"]
    assert search_words("„Lotsen“ im Stadtteil?") == ["lotsen", "im", "stadtteil"]
    assert search_words("... !!! ") == []
    assert search_words(" ".join(f"w{n}" for n in range(20))) == [f"w{n}" for n in range(8)]
    # LIKE wildcards are kept as words (the repository escapes them).
    assert search_words("100% a_b") == ["100%", "a_b"]


def test_pick_fallback_chain() -> None:
    both = {"de": "Hallo", "en": "Hello"}
    assert pick(both, "en") == "Hello"
    assert pick(both, "de") == "Hallo"
    assert pick(both, "tr") == "Hallo"  # German is the fallback
    assert pick({"de": "Hallo"}, "en") == "Hallo"
    assert pick({"de": "Hallo", "en": ""}, "en") == "Hallo"  # an empty translation is none
    assert pick({"en": "Hello"}, "de") == "Hello"  # then any text there is
    assert pick({"uk": "Привіт"}, "en") == "Привіт"
    assert pick({}, "de") == ""
    assert pick(None, "de") == ""


@pytest.mark.parametrize(
    ("code", "language"),
    [
        ("de", "de"),
        ("de-AT", "de"),
        ("de-CH", "de"),
        ("DE", "de"),
        ("en", "en"),
        ("en-GB", "en"),
        ("tr", "en"),
        ("uk", "en"),
        ("ar", "en"),
        ("deu", "en"),
        ("", "en"),
        (None, "en"),
    ],
)
def test_language_for(code: str | None, language: str) -> None:
    assert language_for(code) == language


def test_clean_user_text() -> None:
    assert clean_user_text("abc\u202edef") == "abcdef"  # right-to-left override
    assert clean_user_text("a\u200bb\u200cc\u200dd\u2060e\ufeff") == "abcde"  # zero-width
    assert clean_user_text("a\u0000b\u0007c\u001bd\u007f") == "abcd"  # controls
    assert clean_user_text("  Zeile 1\nZeile 2\r\n\tZeile 3  ") == "Zeile 1\nZeile 2\r\n\tZeile 3"
    assert clean_user_text("\u200b \n ") == ""
    assert clean_user_text("Cafe\u0301") == "Café"  # NFC
    assert clean_user_text("مرحبا 😀 Привіт") == "مرحبا 😀 Привіт"


# --------------------------------------------------------------------------- callbacks

ROUTES = {name: value for name, value in vars(cb).items() if isinstance(value, cb.Route)}
LONGEST_ORIGINS = ["L999999999d9999", "S999999999", "M9999", "Q9999", "G999999999", "H"]
MAXIMAL = {
    "iid": 999_999_999,
    "sid": 999_999_999,
    "fid": 999_999_999,
    "cid": 999_999_999,
    "page": 9999,
    "on": 1,
    "sort": "d",
    "lang": "de",
    "decision": "r",
    "clear": "-",
    "mode": "instant",
    "draft": 999_999_999,
    "aud": "F999999999",
    "bid": 999_999_999,
    "pid": 999_999_999,
    "oid": 999_999_999,
    "kind": "h",
    "gid": 999_999_999,
    "via": "I999999999",
    "what": "l",
    "status": "planned",
    "mid": 999_999_999,
}


@pytest.mark.parametrize("name", sorted(ROUTES))
@pytest.mark.parametrize("origin", LONGEST_ORIGINS)
def test_every_route_fits_in_64_bytes(name: str, origin: str) -> None:
    route = ROUTES[name]
    values = {field: MAXIMAL.get(field, origin) for field in route.names}
    assert set(route.names) <= {*MAXIMAL, "origin"}, "new field: add a maximal value above"
    data = route.build(**values)
    assert len(data.encode()) <= cb.MAX_BYTES
    args = route.parse(data)
    assert args is not None
    assert args.values == {k: str(v) for k, v in values.items()}


def test_build_refuses_invalid_values() -> None:
    with pytest.raises(ValueError):
        cb.ITEM.build(iid=1_000_000_000, origin="H")
    with pytest.raises(ValueError):
        cb.SUPPORT.build(iid=1, on=2, origin="H")
    with pytest.raises(ValueError):
        cb.ITEM.build(iid=1, origin="X1")


@pytest.mark.parametrize(
    "data",
    [
        "sup:1:2:L0s0",  # support is 0 or 1
        "sup:abc:1:H",
        "sup:1:1",
        "sup:1:1:H:extra",
        "sup:-1:1:H",
        "mod:a:1;drop",
        "mod:x:1",
        "i:1234567890:H",  # id longer than 9 digits
        "il:1:s:12345",  # page longer than 4 digits
        "il:1:x:0",  # unknown sort
        "i:1:L1s",  # origin without page
        "i:1:Z1",
        "zzz:1",
        "delete:1",
        "SUP:1:1:H",
        " sup:1:1:H",
        "sup:1:1:H\n",
        "m\n",
        "i:١٢:H",  # Arabic-Indic digits are not ids
        "stl:DE",
        "",
        None,
    ],
)
def test_parse_rejects_forged_data(data: str | None) -> None:
    assert [name for name, route in ROUTES.items() if route.parse(data)] == []


def test_parse_reads_arguments() -> None:
    args = cb.SUPPORT.parse("sup:17:1:L3d2")
    assert args is not None
    assert (args.number("iid"), args.flag("on"), args.text("origin")) == (17, True, "L3d2")
    args = cb.MODERATE.parse("mod:r:42")
    assert args is not None and args.text("decision") == "r" and args.number("cid") == 42


@pytest.mark.parametrize(
    ("origin", "back"),
    [
        ("L0s0", "il:0:s:0"),
        ("L12d3", "il:12:d:3"),
        ("L999999999n9999", "il:999999999:n:9999"),
        ("S5", "s:5"),
        ("M2", "my:2"),
        ("Q7", "q:7"),
        ("G3", "go:3:P0"),
        ("H", "m"),
        ("", "m"),
        ("garbage", "m"),
    ],
)
def test_back_data(origin: str, back: str) -> None:
    assert cb.back_data(origin) == back
    # The button it makes goes somewhere the bot understands.
    assert any(route.parse(back) for route in ROUTES.values())


def test_item_list_origin_round_trips() -> None:
    origin = cb.item_list_origin(4, "discussed", 12)
    assert origin == "L4d12"
    assert cb.parse_origin(origin) == cb.Origin("L", 4, "discussed", 12)
    assert cb.back_data(origin) == cb.ITEMS.build(fid=4, sort="d", page=12)


CALLBACK_ALPHABET = "0123456789:;-_ mqsuplifoxrcdtaynHLSMQZ١\n"


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=40) | st.text(alphabet=CALLBACK_ALPHABET, max_size=24))
@example("sup:1:1:H\n")
@example("i:١:H")
def test_parse_never_raises_and_round_trips(data: str) -> None:
    for route in ROUTES.values():
        args = route.parse(data)
        if args is not None:
            assert route.build(**args.values) == data
            assert len(data.encode()) <= cb.MAX_BYTES


# --------------------------------------------------------------------------- truncate_html


def test_short_text_is_unchanged() -> None:
    markup = '<b>Fachkräfte</b> &amp; <a href="https://example.org/?a=1&amp;b=2">Link</a> 😀'
    assert truncate_html(markup, 20) == markup
    assert truncate_html("", 10) == ""


def test_long_text_is_cut_with_tags_closed() -> None:
    markup = "<b>Titel</b>\n<i>" + "Wort " * 100 + "</i>" + "<b>danach</b>"
    result = truncate_html(markup, 50)
    text, entities = parse_html(result)  # valid Telegram HTML
    assert utf16_len(text) <= 50
    assert text.endswith(ELLIPSIS)
    assert text.startswith("Titel\nWort Wort")
    assert "danach" not in text
    assert result.endswith("</i>")
    assert [e["type"] for e in entities] == ["bold", "italic"]


def test_cut_keeps_escapes_and_nested_tags() -> None:
    markup = (
        '<b>A &lt;b&gt; &amp; <a href="https://x.org/?q=1&amp;r=2"><i>' + "z" * 50 + "</i></a></b>"
    )
    result = truncate_html(markup, 20)
    text, entities = parse_html(result)
    assert text == "A <b> & " + "z" * 11 + ELLIPSIS
    assert {e["type"] for e in entities} == {"bold", "text_link", "italic"}
    assert [e["url"] for e in entities if e["type"] == "text_link"] == ["https://x.org/?q=1&r=2"]


def test_astral_characters_count_as_two_units() -> None:
    markup = "😀" * 10  # 10 characters, 20 UTF-16 units
    assert truncate_html(markup, 20) == markup
    for limit in (19, 16, 15, 11, 2):
        text = visible_text(truncate_html(markup, limit))
        assert utf16_len(text) <= limit
        assert text.endswith(ELLIPSIS)
        kept = text.removesuffix(ELLIPSIS)
        assert kept == "😀" * len(kept)
        assert utf16_len(kept) >= limit - 2  # nothing cut that would have fitted
    assert utf16_len(visible_text(truncate_html("a" + "😀" * 10, 4))) <= 4


TAGS = ["b", "i", 'a href="https://example.org/?a=1&amp;b=2"']
PIECES = ["a", "ß", " ", "\n", "😀", "&amp;", "&lt;", "&gt;", "&quot;", '"', "Wort "]


@st.composite
def telegram_html(draw: st.DrawFn, depth: int = 0) -> str:
    parts = []
    for _ in range(draw(st.integers(0, 5))):
        if depth < 3 and draw(st.booleans()):
            tag = draw(st.sampled_from(TAGS))
            inner = draw(telegram_html(depth + 1))  # type: ignore[call-arg]
            parts.append(f"<{tag}>{inner}</{tag.split()[0]}>")
        else:
            parts.append("".join(draw(st.lists(st.sampled_from(PIECES), max_size=8))))
    return "".join(parts)


@settings(max_examples=300, deadline=None)
@given(telegram_html(), st.integers(1, 40))
def test_truncate_html_property(markup: str, limit: int) -> None:
    original = visible_text(markup)
    result = truncate_html(markup, limit)
    text = visible_text(result)  # raises if Telegram would reject it
    assert utf16_len(text) <= limit
    if utf16_len(original) <= limit:
        assert result == markup
    else:
        assert text.endswith(ELLIPSIS)
        kept = text.removesuffix(ELLIPSIS)
        assert original.startswith(kept)
        # Nothing is cut that would have fitted (apart from trailing blanks, and half of an
        # astral character that cannot be split).
        end = len(kept)
        while end < len(original) and original[end].isspace():
            end += 1
        assert utf16_len(original[:end]) >= limit - 2


def test_truncated_plain_text_is_escaped() -> None:
    result = truncate_html(html.escape("<script> & " * 20, quote=False), 15)
    assert visible_text(result) == "<script> & <sc" + ELLIPSIS


# --------------------------------------------------------------------------- settings

SETTING_VARIABLES = [
    "TELEGRAM_BOT_TOKEN",
    "TELEGRAM_API_URL",
    "DATABASE_URL",
    "ADMIN_IDS",
    "MODERATION_CHAT_ID",
    "TIMEZONE",
    "UPDATE_CONCURRENCY",
    "LOG_LEVEL",
]


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No setting comes from the environment unless the test sets it."""
    for name in SETTING_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch


def make(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg, arg-type]


def test_admin_ids_are_parsed(env: pytest.MonkeyPatch) -> None:
    assert make().admin_ids == frozenset()
    env.setenv("ADMIN_IDS", "1, 2,3")
    assert make().admin_ids == frozenset({1, 2, 3})
    env.setenv("ADMIN_IDS", " 42 ; 7, ")
    assert make().admin_ids == frozenset({42, 7})
    env.setenv("ADMIN_IDS", "")
    assert make().admin_ids == frozenset()


def test_bad_admin_ids_are_refused(env: pytest.MonkeyPatch) -> None:
    env.setenv("ADMIN_IDS", "1, zwei")
    with pytest.raises(ValidationError, match="ADMIN_IDS must be comma-separated"):
        make()
    with pytest.raises(ConfigError) as failed:
        load_settings(_env_file=None)
    message = str(failed.value)
    assert message.startswith("ADMIN_IDS") and "\n" not in message


@pytest.mark.parametrize(
    ("url", "normalised"),
    [
        ("postgresql://u:p@db:5432/todo", "postgresql+asyncpg://u:p@db:5432/todo"),
        ("postgres://u@db/todo", "postgresql+asyncpg://u@db/todo"),
        ("postgresql+psycopg2://u@db/todo", "postgresql+asyncpg://u@db/todo"),
        ("postgresql+asyncpg://u@db/todo", "postgresql+asyncpg://u@db/todo"),
        ("sqlite:///var/bot.sqlite3", "sqlite+aiosqlite:///var/bot.sqlite3"),
        ("sqlite:////abs/bot.sqlite3", "sqlite+aiosqlite:////abs/bot.sqlite3"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("  sqlite:///x.db\n", "sqlite+aiosqlite:///x.db"),
    ],
)
def test_database_url_normalisation(env: pytest.MonkeyPatch, url: str, normalised: str) -> None:
    assert normalise_database_url(url) == normalised
    env.setenv("DATABASE_URL", url)
    settings_ = make()
    assert settings_.database_url == normalised
    assert settings_.is_sqlite == normalised.startswith("sqlite")


def test_default_database_is_sqlite(env: pytest.MonkeyPatch) -> None:
    assert make().database_url.startswith("sqlite+aiosqlite:///")


@pytest.mark.parametrize(
    "token",
    [None, "", "no-colon-here", "123456:short", "abc:" + "A" * 35, "123:" + "A" * 30 + "!"],
)
def test_require_token_refuses_missing_and_malformed(
    env: pytest.MonkeyPatch, token: str | None
) -> None:
    if token is not None:
        env.setenv("TELEGRAM_BOT_TOKEN", token)
    with pytest.raises(ConfigError) as failed:
        make().require_token()
    message = str(failed.value)
    assert "TELEGRAM_BOT_TOKEN" in message
    assert "\n" not in message
    if token:
        assert token not in message  # the secret is not echoed


def test_require_token_accepts_a_botfather_token(env: pytest.MonkeyPatch) -> None:
    token = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
    env.setenv("TELEGRAM_BOT_TOKEN", f" {token} ")
    assert make().require_token() == token
    assert token not in repr(make())


def test_other_settings_are_validated(env: pytest.MonkeyPatch) -> None:
    env.setenv("TIMEZONE", "Mars/Olympus")
    with pytest.raises(ConfigError, match="TIMEZONE"):
        load_settings(_env_file=None)
    env.setenv("TIMEZONE", "Europe/Berlin")
    env.setenv("TELEGRAM_API_URL", "http://localhost:8081/")
    env.setenv("MODERATION_CHAT_ID", "")
    loaded = make()
    assert loaded.telegram_api_url == "http://localhost:8081"
    assert loaded.moderation_chat_id is None
    assert loaded.tz.key == "Europe/Berlin"


def test_current_send_rate_is_measured_between_scrapes() -> None:
    from bot.metrics import Metrics

    metrics = Metrics()
    assert metrics._current_rate(100.0, 0) == 0.0, "nothing to compare with yet"
    assert metrics._current_rate(110.0, 250) == 25.0
    assert metrics._current_rate(112.0, 250) == 0.0, "idle"
    assert metrics._current_rate(113.0, 10) == 0.0, "a restarted sender starts from 0"
