"""Text helpers without any Telegram or database knowledge."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping

DEFAULT_LANGUAGE = "de"
#: Languages the bot speaks; a resident's Telegram language picks one of them.
LANGUAGES = ("de", "en")

_SPACE = re.compile(r"\s+")
#: Emoji and the pictographs ZWJ sequences are made of (👩‍💻, 🏳️‍🌈, ❤️‍🔥).
_PICTOGRAPH = "\u2190-\u2bff\U0001f000-\U0001faff"
#: Characters that make text render misleadingly or that no text store takes: C0 and C1
#: controls (but tab and line breaks), bidi marks, embeddings, overrides and isolates,
#: zero-width characters, the byte order mark, and lone surrogates (JSON can carry
#: "\ud800", UTF-8 cannot store it). A zero-width joiner between two emoji (after an emoji,
#: its variation selector or skin tone) is kept: it joins them into one (👨‍👩‍👧).
_INVISIBLE = re.compile(
    f"(?!(?<=[{_PICTOGRAPH}\ufe0f])\u200d(?=[{_PICTOGRAPH}]))"
    "[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f\u061c\u180e\u200b-\u200f"
    "\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff\ud800-\udfff]"
)
#: Combining marks after one character beyond this many are dropped: no script needs more,
#: and a flood of them ("Zalgo" text) spills over the lines around it in a moderator's view.
COMBINING_MAX = 8


def fold(text: str) -> str:
    """Case- and accent-insensitive form for searching: "Straße" and "STRASSE" both give
    "strasse", "Fachkräfte" and "FACHKRAFTE" both give "fachkrafte"."""
    folded = unicodedata.normalize("NFKD", text.casefold())
    stripped = "".join(ch for ch in folded if not unicodedata.combining(ch))
    return _SPACE.sub(" ", unicodedata.normalize("NFC", stripped)).strip()


def search_words(query: str, *, max_words: int = 8) -> list[str]:
    """The distinct folded words of a search query (at most `max_words`)."""
    words: list[str] = []
    for word in fold(query).split(" "):
        word = word.strip(".,;:!?\"'()[]{}<>«»„“”")
        if word and word not in words:
            words.append(word)
    return words[:max_words]


def pick(texts: Mapping[str, str] | None, language: str) -> str:
    """The text in `language`, falling back to German, then to any text there is."""
    if not texts:
        return ""
    for lang in (language, DEFAULT_LANGUAGE):
        value = texts.get(lang)
        if value:
            return value
    return next((v for v in texts.values() if v), "")


def language_for(code: str | None) -> str:
    """Telegram's `language_code` → the bot's language: German for `de`, English otherwise."""
    if code and code.lower().split("-")[0] == "de":
        return "de"
    return "en"


def clean_user_text(text: str) -> str:
    """Strip invisible and control characters (keeps newlines and tabs), combining marks
    beyond `COMBINING_MAX` in a row, and outer blanks."""
    visible = _INVISIBLE.sub("", text)
    return _cap_combining(unicodedata.normalize("NFC", visible)).strip()


def _cap_combining(text: str) -> str:
    if text.isascii():
        return text
    kept: list[str] = []
    run = 0
    for ch in text:
        if unicodedata.category(ch) in ("Mn", "Me"):
            run += 1
            if run > COMBINING_MAX:
                continue
        else:
            run = 0
        kept.append(ch)
    return "".join(kept)


def checked_text(text: str, limit: int, *, one_line: bool) -> tuple[str, str | None, int]:
    """A typed text cleaned (`one_line`: whitespace folded to single spaces), with the
    problem "empty" or "too_long" (at most `limit` characters) or None, and its length."""
    cleaned = clean_user_text(text)
    if one_line:
        cleaned = " ".join(cleaned.split())
    if not cleaned:
        return cleaned, "empty", 0
    if len(cleaned) > limit:
        return cleaned, "too_long", len(cleaned)
    return cleaned, None, len(cleaned)
