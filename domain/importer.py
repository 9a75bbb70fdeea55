"""`todo-bot import FILE`: validate a YAML or JSON content file as a whole, then write it
all or nothing. Errors name the entry and the field."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    model_validator,
)

from domain.content import (
    ActionFieldData,
    ContentBundle,
    GoalData,
    HighlightData,
    ImportReport,
    ItemData,
    MilestoneData,
    PartnerData,
    RecordingData,
    SearchText,
    SessionData,
    SpeakerData,
)
from domain.text import DEFAULT_LANGUAGE, clean_user_text, fold
from storage.models import GOAL_STATUSES
from storage.uow import UnitOfWork

KEY_RE = re.compile(r"^[A-Za-z0-9-]{1,32}$")
LANGUAGE_RE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$")
DURATION_RE = re.compile(r"^(?:(\d{1,3}):)?([0-5]?\d):([0-5]\d)$")
GOAL_KEY_RE = re.compile(r"^Z-[0-9]{1,9}$")
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
#: Limits of a goal in the file.
GOAL_ITEMS_MAX = 50
GOAL_PARTNERS_MAX = 20
GOAL_MILESTONES_MAX = 30


class ImportFailed(Exception):
    """The file is not valid; nothing was written. `errors` are lines for the operator."""

    def __init__(self, errors: Sequence[str]) -> None:
        super().__init__(f"{len(errors)} error(s)")
        self.errors = list(errors)


# --------------------------------------------------------------------------- field types


def _key(value: Any) -> str:
    if not isinstance(value, str) or not KEY_RE.match(value):
        raise ValueError("a key is 1–32 characters of A-Z a-z 0-9 and '-'")
    return value


Key = Annotated[str, BeforeValidator(_key)]


def _texts(max_length: int) -> Any:
    def validate(value: Any) -> dict[str, str]:
        if isinstance(value, str):
            value = {DEFAULT_LANGUAGE: value}
        if not isinstance(value, Mapping):
            raise ValueError("expected a text or a mapping of language to text")
        texts: dict[str, str] = {}
        for lang, text in value.items():
            if not isinstance(lang, str) or not LANGUAGE_RE.match(lang):
                raise ValueError(f"{_shown(lang)} is not a language code such as de or en")
            if not isinstance(text, str):
                raise ValueError(f"the {lang} text must be a string")
            text = clean_user_text(text)
            if not text:
                raise ValueError(f"the {lang} text is empty")
            if len(text) > max_length:
                raise ValueError(
                    f"the {lang} text has {len(text)} characters, at most {max_length} are allowed"
                )
            texts[lang] = text
        if DEFAULT_LANGUAGE not in texts:
            raise ValueError(f"a German ({DEFAULT_LANGUAGE}) text is required")
        return texts

    return BeforeValidator(validate)


def _plain(max_length: int) -> Any:
    def validate(value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError("expected a text")
        text = clean_user_text(value)
        if not text:
            raise ValueError("must not be empty")
        if len(text) > max_length:
            raise ValueError(f"has {len(text)} characters, at most {max_length} are allowed")
        return text

    return BeforeValidator(validate)


def _seconds(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError('expected "HH:MM:SS" or a number of seconds')
    if isinstance(value, int | float):
        if value < 0 or value != value or value > 10**7:
            raise ValueError("seconds must be between 0 and 10,000,000")
        return round(value)
    if isinstance(value, str):
        match = DURATION_RE.match(value.strip())
        if match:
            hours, minutes, seconds = match.groups()
            return int(hours or 0) * 3600 + int(minutes) * 60 + int(seconds)
    raise ValueError('expected "HH:MM:SS" or a number of seconds')


Seconds = Annotated[int, BeforeValidator(_seconds)]


def _url(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("expected a URL")
    url = value.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or " " in url:
        raise ValueError("expected an http:// or https:// URL")
    if len(url) > 2000:
        raise ValueError("URL longer than 2000 characters")
    return url


Url = Annotated[str, BeforeValidator(_url)]


def _goal_key(value: Any) -> str:
    if not isinstance(value, str) or not GOAL_KEY_RE.match(value):
        raise ValueError("a goal key is Z- and a number, e.g. Z-3")
    return value


GoalKey = Annotated[str, BeforeValidator(_goal_key)]


def _day(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        raise ValueError("expected a date as YYYY-MM-DD, without a time")
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str) and DATE_RE.match(value.strip()):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ValueError("expected a date as YYYY-MM-DD")


Day = Annotated[dt.date, BeforeValidator(_day)]


def _percent(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
        raise ValueError("expected a whole number from 0 to 100")
    return value


Percent = Annotated[int, BeforeValidator(_percent)]


def _goal_status(value: Any) -> str:
    if not isinstance(value, str) or value not in GOAL_STATUSES:
        raise ValueError(
            f"unknown status {_shown(value)}, expected one of {', '.join(GOAL_STATUSES)}"
        )
    return value


GoalStatus = Annotated[str, BeforeValidator(_goal_status)]


# --------------------------------------------------------------------------- file schema


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _ActionFieldIn(_Strict):
    key: Key
    title: Annotated[dict[str, str], _texts(100)]


class _SpeakerIn(_Strict):
    name: Annotated[str, _plain(120)]
    role: Annotated[dict[str, str] | None, _texts(200)] = None


class _HighlightIn(_Strict):
    text: Annotated[dict[str, str], _texts(500)]
    at: Seconds | None = None


class _RecordingIn(_Strict):
    title: Annotated[dict[str, str] | None, _texts(200)] = None
    url: Url
    duration: Seconds | None = None


class _SessionIn(_Strict):
    key: Key
    title: Annotated[dict[str, str], _texts(200)]
    starts_at: dt.datetime
    ends_at: dt.datetime
    location: Annotated[str | None, _plain(200)] = None
    summary: Annotated[dict[str, str] | None, _texts(2000)] = None
    speakers: list[_SpeakerIn] = Field(default_factory=list, max_length=30)
    highlights: list[_HighlightIn] = Field(default_factory=list, max_length=20)
    recordings: list[_RecordingIn] = Field(default_factory=list, max_length=10)
    items: list[Key] = Field(default_factory=list, max_length=50)

    @model_validator(mode="after")
    def _check(self) -> _SessionIn:
        first = self.recordings[0] if self.recordings else None
        for n, highlight in enumerate(self.highlights):
            if highlight.at is None:
                continue
            if first is None:
                raise ValueError(
                    f"highlights[{n}].at points into a recording, but the session has none"
                )
            if first.duration is not None and highlight.at > first.duration:
                raise ValueError(f"highlights[{n}].at is after the end of the first recording")
        if len(set(self.items)) != len(self.items):
            raise ValueError("items lists a key twice")
        return self


class _ItemIn(_Strict):
    key: Key
    title: Annotated[dict[str, str], _texts(200)]
    description: Annotated[dict[str, str], _texts(2000)]
    action_field: Key


class _PartnerIn(_Strict):
    name: Annotated[str, _plain(200)]
    description: Annotated[dict[str, str] | None, _texts(500)] = None
    url: Url | None = None


class _MilestoneIn(_Strict):
    title: Annotated[dict[str, str], _texts(200)]
    due: Day | None = None
    done: StrictBool = False


class _GoalIn(_Strict):
    key: GoalKey
    title: Annotated[dict[str, str], _texts(200)]
    description: Annotated[dict[str, str], _texts(2000)]
    action_field: Key
    items: list[Key] = Field(min_length=1, max_length=GOAL_ITEMS_MAX)
    status: GoalStatus | None = None
    progress: Percent | None = None
    partners: list[_PartnerIn] = Field(default_factory=list, max_length=GOAL_PARTNERS_MAX)
    milestones: list[_MilestoneIn] = Field(default_factory=list, max_length=GOAL_MILESTONES_MAX)


class _FileIn(_Strict):
    meta: dict[str, Any] | None = None
    action_fields: list[_ActionFieldIn] = Field(default_factory=list)
    sessions: list[_SessionIn] = Field(default_factory=list)
    items: list[_ItemIn] = Field(default_factory=list)
    goals: list[_GoalIn] = Field(default_factory=list)


# --------------------------------------------------------------------------- parsing


class _Loader(yaml.SafeLoader):
    """yaml.safe_load's loader, stricter: a key given twice in one mapping is an error (not
    silently the last one), and a date or time that does not exist is a YAML error with its
    line (not a ValueError from the datetime module)."""

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # `<<: *base`: keys given here override the merged ones
                key = self.construct_object(key_node, deep=deep)
                try:
                    duplicate = key in seen
                    seen.add(key)
                except TypeError:
                    continue  # unhashable: the base class reports it
                if duplicate:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        f"found the key {_shown(key)} twice",
                        key_node.start_mark,
                    )
        return super().construct_mapping(node, deep=deep)  # type: ignore[arg-type]

    def construct_yaml_timestamp(self, node: yaml.Node) -> Any:
        try:
            return super().construct_yaml_timestamp(node)  # type: ignore[arg-type]
        except (ValueError, AttributeError, OverflowError) as exc:
            why = f" ({exc})" if isinstance(exc, ValueError) else ""
            problem = f"{_shown(node.value)} is no valid date or time{why}"
            raise yaml.constructor.ConstructorError(None, None, problem, node.start_mark) from None


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _Loader.construct_yaml_timestamp)


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"found the key {_shown(key)} twice in one object")
        result[key] = value
    return result


def load_file(path: Path) -> Any:
    """Read YAML or JSON (by extension; YAML is a superset, so anything else is YAML)."""
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ImportFailed([f"{path}: no such file"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ImportFailed([f"{path}: cannot read the file ({exc})"]) from None
    kind = "JSON" if path.suffix.lower() == ".json" else "YAML"
    try:
        if kind == "JSON":
            return json.loads(raw, object_pairs_hook=_json_object)
        return yaml.load(raw, Loader=_Loader)  # a SafeLoader
    except json.JSONDecodeError as exc:
        raise ImportFailed([f"{path}: line {exc.lineno}: invalid JSON: {exc.msg}"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ImportFailed([f"{path}: {where}invalid YAML: {problem}"]) from None
    except RecursionError:
        raise ImportFailed([f"{path}: invalid {kind}: nested too deeply"]) from None
    except (ValueError, TypeError, AttributeError, OverflowError) as exc:
        raise ImportFailed([f"{path}: invalid {kind}: {exc}"]) from None


def _shown(value: Any, limit: int = 40) -> str:
    """A value for an error line: its repr, cut short (a file may hold huge strings)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _entry_label(raw: Any, loc: Sequence[int | str]) -> str:
    """'items[3] (TD-04).title' from a pydantic error location."""
    parts: list[str] = []
    node = raw
    for n, step in enumerate(loc):
        if isinstance(step, int) and parts:
            parts[-1] += f"[{step}]"
            try:
                node = node[step]
            except (IndexError, KeyError, TypeError):
                node = None
            if n == 1 and isinstance(node, Mapping) and isinstance(node.get("key"), str):
                key = node["key"]
                shown = key if key.isprintable() and len(key) <= 32 else _shown(key)
                parts[-1] += f" ({shown})"
        elif isinstance(step, int):  # a key of the file's top level that is not a text
            keys = raw if isinstance(raw, Mapping) else {}
            parts.append(_shown(next((k for k in keys if k == step), step)))
            node = None
        else:
            parts.append(step if _FIELD_NAME.match(step) else _shown(step))
            node = node.get(step) if isinstance(node, Mapping) else None
    return ".".join(parts) or "file"


#: A field name shown as it is in an error line; anything else (an unknown field called
#: "\n" or "a: b") is shown quoted.
_FIELD_NAME = re.compile(r"^[A-Za-z0-9_\-\[\]]{1,40}\Z")


def _format_errors(raw: Any, exc: ValidationError) -> list[str]:
    lines = []
    for error in exc.errors():
        loc = [p for p in error["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown field"
        elif error["type"] == "missing":
            message = "required field is missing"
        lines.append(f"{_entry_label(raw, loc)}: {message}")
    return lines


def _with_zone(value: dt.datetime, tz: ZoneInfo) -> dt.datetime:
    return value.replace(tzinfo=tz) if value.tzinfo is None else value


def _search_texts(
    title: Mapping[str, str], description: Mapping[str, str]
) -> dict[str, SearchText]:
    languages = set(title) | set(description)
    result = {}
    for lang in sorted(languages):
        result[lang] = SearchText(
            title=fold(title.get(lang) or title[DEFAULT_LANGUAGE]),
            body=fold(description.get(lang) or description[DEFAULT_LANGUAGE]),
        )
    return result


def parse_content(raw: Any, tz: ZoneInfo) -> ContentBundle:
    """Validate the whole structure; raise ImportFailed listing every error found."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ImportFailed(
            ["file: expected a mapping with action_fields, sessions, items and goals"]
        )
    try:
        content = _FileIn.model_validate(raw)
    except ValidationError as exc:
        raise ImportFailed(_format_errors(raw, exc)) from None

    errors: list[str] = []
    keyed: list[tuple[str, list[str]]] = [
        ("action_fields", [f.key for f in content.action_fields]),
        ("sessions", [s.key for s in content.sessions]),
        ("items", [i.key for i in content.items]),
        ("goals", [g.key for g in content.goals]),
    ]
    for kind, keys in keyed:
        seen: dict[str, int] = {}
        for n, key in enumerate(keys):
            if key in seen:
                errors.append(f"{kind}[{n}] ({key}).key: duplicate key, also {kind}[{seen[key]}]")
            seen.setdefault(key, n)
    for n, goal in enumerate(content.goals):
        listed: dict[str, int] = {}
        for m, key in enumerate(goal.items):
            if key in listed:
                errors.append(
                    f"goals[{n}] ({goal.key}).items[{m}]: {key} is listed twice, "
                    f"also items[{listed[key]}]"
                )
            listed.setdefault(key, m)
    if errors:
        raise ImportFailed(errors)

    sessions = []
    for n, s in enumerate(content.sessions):
        starts, ends = _with_zone(s.starts_at, tz), _with_zone(s.ends_at, tz)
        if ends < starts:
            errors.append(f"sessions[{n}] ({s.key}).ends_at: before starts_at")
        sessions.append(
            SessionData(
                key=s.key,
                title=s.title,
                summary=s.summary,
                location=s.location,
                starts_at=starts.astimezone(dt.UTC),
                ends_at=ends.astimezone(dt.UTC),
                speakers=tuple(SpeakerData(name=p.name, role=p.role) for p in s.speakers),
                highlights=tuple(HighlightData(text=h.text, at_seconds=h.at) for h in s.highlights),
                recordings=tuple(
                    RecordingData(title=r.title or s.title, url=r.url, duration_seconds=r.duration)
                    for r in s.recordings
                ),
                item_keys=tuple(s.items),
            )
        )
    if errors:
        raise ImportFailed(errors)
    return ContentBundle(
        action_fields=tuple(
            ActionFieldData(key=f.key, title=f.title, position=n)
            for n, f in enumerate(content.action_fields)
        ),
        sessions=tuple(sessions),
        items=tuple(
            ItemData(
                key=i.key,
                title=i.title,
                description=i.description,
                action_field_key=i.action_field,
                search=_search_texts(i.title, i.description),
            )
            for i in content.items
        ),
        goals=tuple(
            GoalData(
                key=g.key,
                title=g.title,
                description=g.description,
                action_field_key=g.action_field,
                item_keys=tuple(g.items),
                status=g.status,
                progress=g.progress,
                partners=tuple(
                    PartnerData(name=p.name, description=p.description, url=p.url)
                    for p in g.partners
                ),
                milestones=tuple(
                    MilestoneData(title=m.title, due_on=m.due, done=m.done) for m in g.milestones
                ),
            )
            for g in content.goals
        ),
    )


def check_references(
    bundle: ContentBundle, known_fields: set[str], known_items: set[str]
) -> list[str]:
    """References may point into the file or at what the database already has."""
    fields = known_fields | {f.key for f in bundle.action_fields}
    items = known_items | {i.key for i in bundle.items}
    errors = []
    for n, item in enumerate(bundle.items):
        if item.action_field_key not in fields:
            errors.append(
                f"items[{n}] ({item.key}).action_field: unknown action field "
                f"{item.action_field_key!r}"
            )
    for n, session in enumerate(bundle.sessions):
        for m, key in enumerate(session.item_keys):
            if key not in items:
                errors.append(f"sessions[{n}] ({session.key}).items[{m}]: unknown item {key!r}")
    for n, goal in enumerate(bundle.goals):
        if goal.action_field_key not in fields:
            errors.append(
                f"goals[{n}] ({goal.key}).action_field: unknown action field "
                f"{goal.action_field_key!r}"
            )
        for m, key in enumerate(goal.item_keys):
            if key not in items:
                errors.append(f"goals[{n}] ({goal.key}).items[{m}]: unknown item {key!r}")
    return errors


async def import_content(uow: UnitOfWork, raw: Any, tz: ZoneInfo) -> ImportReport:
    """Validate and write; on any error nothing is written. Items newly linked to a goal
    (a goal formed, or items added to one) become "adopted" with a dated history entry
    (if they were open or in review), and their followers are told once each."""
    bundle = parse_content(raw, tz)
    async with uow.write():
        known_fields, _, known_items = await uow.content_writer.existing_keys()
        errors = check_references(bundle, known_fields, known_items)
        if errors:
            raise ImportFailed(errors)
        report = await uow.content_writer.apply(bundle)
        if report.goal_links:
            # Imported here: goal editing (domain.goal_admin) uses this module's validators.
            from domain.goal_admin import items_linked

            for links in report.goal_links:
                linked = await items_linked(
                    uow,
                    links.goal_id,
                    links.key,
                    links.item_ids,
                    formed=links.formed,
                    known_item_ids=links.known_item_ids,
                )
                report.notified += linked.notified
                report.adopted.extend(linked.adopted)
        return report
