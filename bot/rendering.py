"""Every word the bot says comes from `templates/<language>/`: one `.html` template per
message (autoescaped, for Telegram's HTML parse mode) and `labels.txt` with the short texts
(buttons, answers, command menu) as Jinja macros."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from babel import Locale
from babel.dates import format_date, format_datetime, format_time
from babel.numbers import format_decimal
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

import templates as templates_package
from bot.telegram_text import MESSAGE_LIMIT, shorten, truncate_html
from domain.text import DEFAULT_LANGUAGE, LANGUAGES
from domain.views import Author

TEMPLATES_DIR = Path(templates_package.__file__).resolve().parent
_BLANK_LINES = re.compile(r"\n{3,}")
BABEL_LOCALES = {"de": "de_DE", "en": "en_GB"}


def _locale(language: str) -> str:
    return BABEL_LOCALES.get(language, language)


def duration(seconds: int | None) -> str:
    if seconds is None:
        return ""
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Renderer:
    def __init__(self, tz: ZoneInfo, directory: Path = TEMPLATES_DIR) -> None:
        self.tz = tz
        self.directory = directory
        self.env = Environment(
            loader=FileSystemLoader(str(directory)),
            autoescape=select_autoescape(enabled_extensions=("html",), default=False),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=False,
            # Templates ship with the package and do not change while the bot runs: no
            # stat() of the template file on every message.
            auto_reload=False,
        )
        self.env.globals["duration"] = duration
        self.env.globals["fmt"] = self._format
        self._globals_cache: dict[str, dict[str, Any]] = {}

    def _format(self, value: dt.datetime, pattern: str, language: str) -> str:
        """Date/time in the bot's time zone with a CLDR pattern (for labels.txt)."""
        return format_datetime(
            value.astimezone(self.tz), pattern, locale=_locale(language), tzinfo=self.tz
        )

    def warm_up(self) -> int:
        """Compile every template now (tens of milliseconds each the first time), so that
        no update and no broadcast waits for it later. Returns how many there are."""
        names = self.env.list_templates(extensions=["html", "txt"])
        for name in names:
            self.env.get_template(name)
        for language in LANGUAGES:
            self._globals(language)
        return len(names)

    @property
    def languages(self) -> tuple[str, ...]:
        return LANGUAGES

    def _globals(self, language: str) -> dict[str, Any]:
        cached = self._globals_cache.get(language)
        if cached is None:
            cached = self._globals_cache[language] = self._make_globals(language)
        return cached

    def _make_globals(self, language: str) -> dict[str, Any]:
        locale = _locale(language)
        labels = self.labels(language)
        plural_form = Locale.parse(locale).plural_form

        def plural(n: int, one: str, other: str) -> str:
            return one if plural_form(n) == "one" else other

        def author(a: Author) -> str:
            return a.display_name or str(labels.pseudonym(a.pseudonym))

        def local(value: dt.datetime) -> dt.datetime:
            return value.astimezone(self.tz)

        return {
            "lang": language,
            "labels": labels,
            "num": lambda n: _number(n, locale),
            "date": lambda d, f="medium": format_date(
                local(d) if isinstance(d, dt.datetime) else d, f, locale=locale
            ),
            "time": lambda d, f="short": format_time(local(d), f, locale=locale, tzinfo=self.tz),
            "datetime": lambda d, f="medium": format_datetime(
                local(d), f, locale=locale, tzinfo=self.tz
            ),
            "plural": plural,
            "author": author,
            "local": local,
        }

    def render(self, name: str, language: str, /, **context: Any) -> str:
        """The message `name` in `language` (German if that language lacks it), within
        Telegram's message length."""
        language = language if language in LANGUAGES else DEFAULT_LANGUAGE
        template = self.env.get_template(f"{language}/{name}.html")
        text = template.render(**self._globals(language), **context)
        text = _BLANK_LINES.sub("\n\n", text.strip())
        return truncate_html(text, MESSAGE_LIMIT)

    def labels(self, language: str) -> Any:
        """The macros of `<language>/labels.txt`: `labels(lang).support()` etc."""
        return _labels_module(self.env, language if language in LANGUAGES else DEFAULT_LANGUAGE)

    def label(self, language: str, name: str, *args: Any, limit: int = 4096) -> str:
        macro: Callable[..., Any] = getattr(self.labels(language), name)
        return shorten(str(macro(*args)), limit)


@lru_cache(maxsize=4096)
def _number(n: Any, locale: str) -> str:
    """A number in the locale's notation (Babel's format_decimal parses the locale's
    pattern every call: it was 4 % of the bot's CPU per update; the same counts recur)."""
    return str(format_decimal(n, locale=locale))


@lru_cache(maxsize=16)
def _labels_module(env: Environment, language: str) -> Any:
    return env.get_template(f"{language}/labels.txt").module
