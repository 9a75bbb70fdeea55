"""Bad input at scale, property-based (hypothesis): content files mutated every which way,
arbitrary and mangled callback data, arbitrary `/start` payloads and arbitrary texts into
every text the bot waits for. Each property says what must hold for *any* input: imported
or refused with an error naming the entry and field (a refusal changes nothing); parsed or
"invalid", never an exception; a normal screen or a clear message, never an error."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot import callbacks as cb
from domain.importer import ImportFailed, check_references, import_content, load_file, parse_content
from storage.uow import Database
from tests.conftest import TZ, content_raw
from tests.drills import report
from tests.harness import BotHarness, snapshot
from tests.test_hostile import (
    INPUTS,
    SETTINGS,
    TRY_AGAIN,
    Ctx,
    Hostile,
    Tally,
    check_replies,
    fast_snapshot,
    no_errors_logged,  # noqa: F401 (a fixture used below)
    replies,
    try_input,
)
from tests.test_hostile import _ctx as hostile_ctx
from tests.test_importer_goals import goal_entries

JSON = dict[str, Any]
COUNTS: dict[str, int] = {}
SECTIONS = ("action_fields", "sessions", "items", "goals")


def count(name: str, n: int = 1) -> None:
    COUNTS[name] = COUNTS.get(name, 0) + n


def base_document() -> JSON:
    raw: JSON = content_raw()
    raw["goals"] = goal_entries()
    return raw


BASE = base_document()

# --------------------------------------------------------------------------- strategies

#: Characters that make trouble: controls, bidi, zero-width, combining, surrogates, emoji
#: and what HTML and Markdown make something of.
NASTY = (
    "\x00\x01\x07\x1b\x7f\x85\x9b\t\n\r \u00a0\u2028\u202e\u202a\u2066\u2069\u200b\u200d"
    "\u200e\u061c\ufeff\u0301\u0336\u0489\ud800\udfff😀👩🏽\ufe0f🇩🇪ß𝔘<>&;*_[]()~`|\\\"'"
)
nasty_text = st.text(alphabet=st.sampled_from(NASTY) | st.characters(), max_size=40)
#: Lengths around every limit of the bot and of Telegram.
LIMIT_LENGTHS = (
    31, 32, 33, 100, 101, 119, 120, 121, 199, 200, 201, 499, 500, 501,
    999, 1000, 1001, 1999, 2000, 2001, 4096, 4097,
)  # fmt: skip
long_text = st.builds(
    lambda n, ch, tail: (ch * n)[: n - len(tail)] + tail,
    st.sampled_from(LIMIT_LENGTHS),
    st.sampled_from(["x", "ü", "😀", "\u200b", " ", "<b>", "e\u0301"]),
    st.text(max_size=3),
)
blank_text = st.text(alphabet=" \t\n\r\u2028\u00a0\u3000\u200b\ufeff\u202e", min_size=1)
#: A text the bot waits for (one starting with "/" is a command: not what is awaited).
any_text = st.one_of(st.text(max_size=60), nasty_text, long_text, blank_text).filter(
    lambda t: not t.startswith("/")
)

huge = st.integers(1000, 100_000).map(lambda n: "ä" * n)
junk: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    nasty_text,
    huge,
    st.dates(),
    st.datetimes(),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
    st.sampled_from(["de", "TD-01", "Z-1", "pflege", "2024-13-45", "01:99:00", "Z-", "https://"]),
)


def node_paths(doc: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """The path to every value in the document."""
    if isinstance(doc, dict):
        items: Any = doc.items()
    elif isinstance(doc, list):
        items = enumerate(doc)
    else:
        return
    for key, value in items:
        path = (*prefix, key)
        yield path
        yield from node_paths(value, path)


def at(doc: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        doc = doc[step]
    return doc


def blame_for(kind: str, path: tuple[Any, ...]) -> str | tuple[str, ...] | None:
    """Which entry an error must name when this one mutation makes the file invalid."""
    if kind == "unknown_top" or (len(path) == 1 and path[0] not in SECTIONS):
        return (str(path[0]), repr(path[0])) if kind != "drop" else None
    if path and path[0] in SECTIONS:
        if kind == "duplicate":
            return f"{path[0]}["
        if len(path) >= 3 and path[2] != "key":
            return f"{path[0]}[{path[1]}]"
        if len(path) == 2 and kind != "drop":
            return f"{path[0]}[{path[1]}]"
        if len(path) == 1 and kind != "drop":
            return path[0]
    return None


@st.composite
def mutated_documents(draw: st.DrawFn) -> tuple[JSON, list[tuple[str, tuple[Any, ...]]]]:
    """The valid sample with 1–3 mutations; returns it and (kind, path) of each."""
    doc = copy.deepcopy(BASE)
    done: list[tuple[str, tuple[Any, ...]]] = []
    for _ in range(draw(st.integers(1, 3))):
        paths = list(node_paths(doc))
        kind = draw(
            st.sampled_from(
                [
                    *("drop", "retype", "retype", "unicode", "unknown_field"),
                    *("unknown_top", "duplicate", "unknown_ref", "huge"),
                ]
            )
        )
        if kind == "unknown_top":
            key = draw(st.sampled_from(["extra", "Items", "goal", "sessions ", 1, None, True]))
            doc[key] = draw(junk)  # type: ignore[index]
            done.append((kind, (key,)))
            continue
        if kind == "duplicate":
            section = draw(st.sampled_from([s for s in SECTIONS if doc.get(s)] or ["items"]))
            entries = doc.get(section)
            if isinstance(entries, list) and entries:
                entries.append(copy.deepcopy(draw(st.sampled_from(entries))))
                done.append((kind, (section, len(entries) - 1)))
            continue
        if kind == "unknown_ref":
            section = draw(st.sampled_from(["goals", "sessions"]))
            entries = doc.get(section)
            if isinstance(entries, list) and entries:
                n = draw(st.integers(0, len(entries) - 1))
                entry = entries[n]
                if isinstance(entry, dict):
                    ref = draw(st.sampled_from(["TD-99", "td-01", "", "TD 01"]) | nasty_text)
                    refs = entry.get("items")
                    entry["items"] = [*(refs if isinstance(refs, list) else []), ref]
                    done.append((kind, (section, n, "items")))
            continue
        if not paths:
            continue
        path = draw(st.sampled_from(paths))
        parent, last = at(doc, path[:-1]), path[-1]
        if kind == "drop":
            del parent[last]
        elif kind in ("retype", "huge"):
            parent[last] = draw(huge if kind == "huge" else junk)
        elif kind == "unicode":
            value = parent[last]
            if not isinstance(value, str):
                continue
            where = draw(st.integers(0, len(value)))
            parent[last] = value[:where] + draw(nasty_text) + value[where:]
        elif kind == "unknown_field":
            target_path = path if isinstance(parent[last], dict) else path[:-1]
            target = at(doc, target_path)
            if not isinstance(target, dict):
                continue
            name = draw(st.sampled_from(["extra", "Key", "titel", "items "]))
            target[name] = draw(junk)
            path = (*target_path, name)
        done.append((kind, path))
    return doc, done


# --------------------------------------------------------------------------- importer

ERROR_LINE = re.compile(r"^(?P<label>\S[^\n]*?): (?P<message>\S[^\n]*)$")


def check_errors(raw: Any, errors: list[str], mutations: list[tuple[str, tuple[Any, ...]]]) -> None:
    """Every error is one line, `entry.field: what is wrong`, and not too long to read; one
    mutation that makes the file invalid is named."""
    assert errors
    tops = {str(k) for k in raw} | {repr(k) for k in raw} if isinstance(raw, dict) else set()
    for line in errors:
        match = ERROR_LINE.match(line)
        assert match, line
        label = match["label"]
        assert label == "file" or any(label.startswith(t) for t in tops), (label, tops)
        assert len(line) <= 300, line[:400]
    if len(mutations) == 1:
        blame = blame_for(*mutations[0])
        if blame is not None:
            assert any(line.startswith(blame) for line in errors), (blame, errors)


@settings(max_examples=300, deadline=None)
@given(mutated_documents())
def test_any_content_document_is_parsed_or_refused_naming_the_entry(
    case: tuple[JSON, list[tuple[str, tuple[Any, ...]]]],
) -> None:
    raw, mutations = case
    count("importer: documents parsed")
    try:
        bundle = parse_content(raw, TZ)
        errors = check_references(bundle, set(), set())
    except ImportFailed as failed:
        errors = failed.errors
    if errors:
        count("importer: documents refused")
        check_errors(raw, errors, mutations)
        return
    # Accepted: every entry of every section made it into the bundle, none dropped silently.
    for section in SECTIONS:
        assert len(getattr(bundle, section)) == len(raw.get(section) or []), section


def test_non_text_keys_and_huge_values_name_the_entry() -> None:
    """Regressions: a top-level key that is not a text crashed the error report
    (IndexError); a huge key or status was repeated whole in the error line."""
    with pytest.raises(ImportFailed) as failed:
        parse_content({1: "x", "items": []}, TZ)
    assert failed.value.errors == ["1: Keys should be strings"]
    raw = base_document()
    raw["items"][0]["key"] = "K" * 50_000
    raw["goals"][0]["status"] = "s" * 50_000
    with pytest.raises(ImportFailed) as failed:
        parse_content(raw, TZ)
    assert all(len(line) < 200 for line in failed.value.errors), failed.value.errors
    assert any(line.startswith("items[0] ('KKK") for line in failed.value.errors)
    assert any(
        line.startswith("goals[0] (Z-1).status: unknown status") for line in failed.value.errors
    )


YAML_TROUBLE = [
    (
        "a: 2024-13-45\n",
        "line 1: invalid YAML: '2024-13-45' is no valid date or time (month must be in 1..12)",
    ),
    ("a: !!timestamp soon\n", "line 1: invalid YAML: 'soon' is no valid date or time"),
    ("[" * 3000, "invalid YAML: nested too deeply"),
    ("items: []\nitems: []\n", "line 2: invalid YAML: found the key 'items' twice"),
    ("sessions:\n  - key: s01\n    key: s02\n", "line 3: invalid YAML: found the key 'key' twice"),
]


@pytest.mark.parametrize(("text", "error"), YAML_TROUBLE)
def test_yaml_that_python_cannot_build_is_refused_with_the_line(
    tmp_path: Path, text: str, error: str
) -> None:
    """Regressions: impossible dates (ValueError), bad timestamps (AttributeError) and deep
    nesting (RecursionError) escaped as exceptions; a key given twice silently kept the
    last value."""
    path = tmp_path / "content.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ImportFailed) as failed:
        load_file(path)
    assert failed.value.errors == [f"{path}: {error}"]


def test_yaml_merge_keys_still_override(tmp_path: Path) -> None:
    path = tmp_path / "content.yaml"
    path.write_text("base: &b {x: 1, y: 2}\nc:\n  <<: *b\n  x: 3\n", encoding="utf-8")
    assert load_file(path)["c"] == {"x": 3, "y": 2}


def test_json_key_given_twice_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "content.json"
    path.write_text('{"items": [], "items": []}', encoding="utf-8")
    with pytest.raises(ImportFailed) as failed:
        load_file(path)
    assert failed.value.errors == [
        f"{path}: invalid JSON: found the key 'items' twice in one object"
    ]


@settings(max_examples=100, deadline=None)
@given(mutated_documents(), st.sampled_from([".yaml", ".json"]))
def test_any_content_file_is_loaded_or_refused(
    tmp_path_factory: pytest.TempPathFactory,
    case: tuple[JSON, list[tuple[str, tuple[Any, ...]]]],
    suffix: str,
) -> None:
    """The same documents written as files (YAML may not hold lone surrogates, JSON no
    dates: then the file is simply written differently) load or are refused by line."""
    raw, _ = case
    path = tmp_path_factory.mktemp("file") / f"content{suffix}"
    try:
        if suffix == ".json":
            text = json.dumps(raw, default=str)
        else:
            text = yaml.safe_dump(raw, allow_unicode=True)
        path.write_text(text, encoding="utf-8", errors="surrogateescape")
    except (TypeError, ValueError, yaml.YAMLError, UnicodeError):
        path.write_bytes(b"\xff\xfe not UTF-8")
    count("importer: files loaded")
    try:
        loaded = load_file(path)
        parse_content(loaded, TZ)
    except ImportFailed as failed:
        assert failed.errors and all("\n" not in e for e in failed.errors)
        assert all(len(e) <= 300 + len(str(path)) for e in failed.errors)


@pytest.fixture
async def content_database(sqlite_url: str) -> Any:
    database = Database(sqlite_url)
    async with database.uow() as uow:
        await import_content(uow, base_document(), TZ)
    yield database
    await database.dispose()


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(mutated_documents())
async def test_refused_import_changes_nothing(
    content_database: Database, case: tuple[JSON, list[tuple[str, tuple[Any, ...]]]]
) -> None:
    raw, mutations = case
    before = await snapshot(content_database)
    count("importer: imports into the database")
    try:
        async with content_database.uow() as uow:
            report_ = await import_content(uow, raw, TZ)
    except ImportFailed as failed:
        count("importer: imports refused")
        check_errors(raw, failed.errors, mutations)
        assert await snapshot(content_database) == before
        return
    after = await snapshot(content_database)
    keys = {row[1] for row in after["items"]}
    assert {i["key"] for i in raw.get("items") or []} <= keys, report_


# --------------------------------------------------------------------------- callback data

ROUTES = [v for v in vars(cb).values() if isinstance(v, cb.Route)]


def valid_data(route: cb.Route) -> st.SearchStrategy[str]:
    return st.from_regex(route.regex, fullmatch=True)


any_valid_data = st.sampled_from(ROUTES).flatmap(valid_data)


@st.composite
def mangled(draw: st.DrawFn) -> str:
    """A valid callback data, then cut, extended, a character changed, or its bytes broken."""
    data = draw(any_valid_data)
    how = draw(st.sampled_from(["cut", "append", "replace", "insert", "bytes", "double"]))
    if how == "cut":
        return data[: draw(st.integers(0, max(len(data) - 1, 0)))]
    if how == "append":
        return data + draw(st.text(max_size=70))
    if how == "double":
        return data + ":" + data
    position = draw(st.integers(0, len(data)))
    char = draw(st.sampled_from(":0123456789aZ-_ \n\x00٣１😀\ud800") | st.characters())
    if how == "replace":
        return data[:position] + char + data[position + 1 :]
    if how == "insert":
        return data[:position] + char + data[position:]
    raw = bytearray(data.encode())
    if raw:
        raw[min(position, len(raw) - 1)] ^= draw(st.integers(1, 255))
    return raw.decode("utf-8", draw(st.sampled_from(["replace", "surrogateescape", "ignore"])))


def parse_everywhere(data: str) -> list[tuple[cb.Route, cb.Args]]:
    """Every route that takes this data; parsing anything else must only say "invalid"."""
    found = []
    for route in ROUTES:
        args = route.parse(data)
        assert args is None or isinstance(args, cb.Args)
        if args is not None:
            found.append((route, args))
    return found


@settings(max_examples=600, deadline=None)
@given(
    st.one_of(
        st.text(),
        st.binary(max_size=80).map(lambda b: b.decode("utf-8", "surrogateescape")),
        mangled(),
        st.none(),
    )
)
def test_any_callback_data_parses_or_is_invalid(data: str | None) -> None:
    count("callback data: arbitrary or mangled strings parsed")
    found = parse_everywhere(data) if data is not None else []
    # What is taken is taken exactly: it encodes back to the same data, within 64 bytes.
    for route, args in found:
        assert route.build(**args.values) == data
        assert data is not None and len(data.encode()) <= cb.MAX_BYTES
    # Origins and "Back" never fail, whatever an old keyboard carried.
    origin = cb.parse_origin(data or "")
    assert origin.kind in "LSMQGH"
    back = cb.back_data(data or "")
    assert parse_everywhere(back)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(ROUTES).flatmap(lambda r: st.tuples(st.just(r), valid_data(r))))
def test_every_encoded_callback_data_decodes_back_and_fits(case: tuple[cb.Route, str]) -> None:
    route, data = case
    count("callback data: encodings round-tripped")
    args = route.parse(data)
    assert args is not None
    try:
        encoded = route.build(**args.values)
    except ValueError:  # the codec's documented refusal: non-ASCII digits from the regex
        assert not data.isascii()
        return
    assert encoded == data
    assert len(encoded.encode()) <= cb.MAX_BYTES
    assert route.parse(encoded) == args


def test_the_longest_encodings_fit() -> None:
    """Every route with its widest arguments (9-digit ids, 4-digit pages, longest origin)."""
    widest = {
        r"\d{1,9}": "9" * 9,
        r"\d{1,4}": "9" * 4,
    }
    origin = "L999999999d9999"
    for route in ROUTES:
        values = {}
        for name in route.names:
            pattern = route.regex.pattern
            sub = re.search(rf"\(\?P<{name}>(.*?)\)(?::|\\Z)", pattern)
            assert sub is not None
            rx = sub.group(1)
            values[name] = widest.get(rx) or (origin if name == "origin" else None)
            if values[name] is None:
                candidates = [
                    "I999999999", "P9999", "F999999999", "Lde", "fields", "instant",
                    "planned", "-", "de", "a", "c", "t", "s", "1",
                ]  # fmt: skip
                values[name] = next(c for c in candidates if re.fullmatch(rx, c))
        data = route.build(**values)
        assert len(data.encode()) <= cb.MAX_BYTES, data
        count("callback data: widest encodings")


# --------------------------------------------------------------------------- the running bot


@pytest.fixture
def bot_settings() -> dict[str, Any]:
    return dict(SETTINGS)


deep_link_payloads = st.one_of(
    st.text(max_size=70),
    nasty_text,
    st.sampled_from(["item_", "session_", "goal_", "item_TD-0", "session_s0", "goal_Z-"]).flatmap(
        lambda p: st.text(max_size=40).map(lambda t: p + t)
    ),
    st.from_regex(cb.DEEP_LINK, fullmatch=True),
    st.sampled_from(
        ["item_TD-01", "item_td-01", "session_s02", "session_s03", "goal_Z-1", "item_TD-05 x"]
    ),
)

_next_user = iter(range(500_000, 600_000))
#: What the test content has: deep link key -> what its screen shows.
KNOWN_LINKS = {
    "item": {f"TD-0{n}": f"TD-0{n}" for n in range(1, 6)},
    "session": {"s01": "Auftakt", "s02": "Pflege im Quartier", "s03": "Straßenfest"},
}


@pytest.mark.usefixtures("well_behaved", "no_errors_logged")
@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(payload=deep_link_payloads)
async def test_any_start_payload_gets_a_screen_or_a_clear_message(
    bot: BotHarness, payload: str
) -> None:
    user = bot.user(next(_next_user), "de")
    before = await fast_snapshot(bot)
    calls = await bot.send(user, f"/start {payload}")
    after = await fast_snapshot(bot)
    count("deep links: /start payloads")

    check_replies(calls, Hostile("payload", payload), f"/start {payload!r}")
    shown = [c for c in replies(calls) if c.chat_id == user["id"]]
    assert shown, "no answer"
    last = shown[-1]
    assert last.reply_markup and last.buttons(), "a screen to go on from"
    args = f"/start {payload}".split()[1:]
    match = cb.DEEP_LINK.match(args[0]) if args else None
    text = last.visible_text or ""
    if not args:
        assert "Willkommen" in text, text
    elif match is not None and match["key"] in KNOWN_LINKS.get(match["kind"], {}):
        assert KNOWN_LINKS[match["kind"]][match["key"]] in text, text
    else:
        assert "Diesen Link kenne ich nicht" in text, text
    # Nothing changed but the new resident's own row, counted in its hour for /stats.
    own = ("residents", "resident_counts")
    assert {k: v for k, v in after.items() if k not in own} == {
        k: v for k, v in before.items() if k not in own
    }
    assert len(after["residents"]) - len(before["residents"]) == 1
    assert sum(n for _, n in after["resident_counts"]) == len(after["residents"])
    assert not any(t in text for t in TRY_AGAIN)


@pytest.mark.usefixtures("well_behaved", "no_errors_logged")
@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
async def test_any_text_into_every_awaited_input(bot: BotHarness, data: st.DataObject) -> None:
    """Arbitrary text (empty-ish, blank, over-long, controls …) into each text the bot waits
    for: stored as the domain cleans it, or refused with a reply and nothing changed (the
    checks of tests/test_hostile.py's try_input)."""
    ctx = _CTX.get(id(bot))
    if ctx is None:
        ctx = _CTX[id(bot)] = await hostile_ctx(bot)
    tally = Tally()
    for spec in INPUTS:
        text = data.draw(any_text, label=spec.name)
        await try_input(ctx, spec, Hostile("hypothesis", text), tally, None)
    # Every input took its text and either stored it (cleaned) or refused it, nothing else.
    assert tally.inputs == {spec.name for spec in INPUTS}
    assert tally.refused + tally.stored == tally.tried == len(INPUTS)
    count("text inputs: arbitrary texts", tally.tried)
    count("text inputs: refused, nothing changed", tally.refused)
    count("text inputs: stored as cleaned", tally.stored)
    COUNTS["text inputs: inputs"] = len(tally.inputs)


_CTX: dict[int, Ctx] = {}


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    yield
    if COUNTS:
        report(
            "property-based bad input (tests/test_properties.py)",
            *(f"{name}: {n}" for name, n in COUNTS.items()),
            "none raised anything but the documented refusal, none crashed or leaked",
        )
