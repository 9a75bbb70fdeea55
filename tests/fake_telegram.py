"""A fake Telegram Bot API server for tests.

:class:`FakeTelegram` speaks real HTTP on loopback (``aiohttp.web`` bound to
``127.0.0.1`` on a free port), so the real python-telegram-bot stack can talk to it::

    async with FakeTelegram() as fake:
        bot = Bot(fake.token, base_url=f"{fake.url}/bot", base_file_url=f"{fake.url}/file/bot")
        alice = fake.user(42)
        fake.send_message(alice, "/start")          # queue an update for getUpdates
        call = await fake.wait_for_method("sendMessage", chat_id=42)
        assert call.text == "Hello"

Every Bot API call the bot makes is recorded as an :class:`ApiCall` in
:attr:`FakeTelegram.calls`, with its parameters decoded into natural Python values.
The fake keeps the messages the bot sent per chat (edits and deletions applied), validates
requests the way Telegram does (HTML markup, lengths, inline keyboards, …) and supports
fault injection (:meth:`FakeTelegram.fail`, :meth:`FakeTelegram.block`, rate limits).

Everything runs in the event loop of the test; no threads are used.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import itertools
import json
import logging
import math
import re
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final
from urllib.parse import urlsplit

from aiohttp import web

__all__ = [
    "ApiCall",
    "FakeTelegram",
    "HtmlParseError",
    "TelegramApiError",
    "UploadedFile",
    "inline_buttons",
    "parse_html",
    "utf16_len",
    "visible_text",
]

log = logging.getLogger(__name__)

JSON = dict[str, Any]
Handler = Callable[[JSON], Any]

# --------------------------------------------------------------------------------------------
# Text helpers: UTF-16 length and Telegram's HTML subset
# --------------------------------------------------------------------------------------------


def utf16_len(text: str) -> int:
    """Length of ``text`` in UTF-16 code units (the unit Telegram uses for lengths/offsets)."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


class HtmlParseError(ValueError):
    """Raised by :func:`parse_html` for markup Telegram would reject."""


_SUPPORTED_TAGS: Final = frozenset(
    {
        "b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler",
        "a", "code", "pre", "blockquote", "tg-emoji",
    }
)  # fmt: skip
_TAG_ENTITY_TYPES: Final = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "span": "spoiler",
    "tg-spoiler": "spoiler",
    "a": "text_link",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
}
_NAMED_ENTITIES: Final = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_TAG_NAME_RE: Final = re.compile(r"[A-Za-z][A-Za-z0-9-]*")
_ATTR_NAME_RE: Final = re.compile(r"[A-Za-z0-9_-]+")
_UNQUOTED_VALUE_RE: Final = re.compile(r"[^\s>]+")
_ENTITY_RE: Final = re.compile(r"&(?:([A-Za-z]+)|#([0-9]+)|#[xX]([0-9a-fA-F]+));")
_TEXT_RE: Final = re.compile(r"[^<&]+")
_SPACE: Final = " \t\r\n"


@dataclass
class _OpenTag:
    name: str
    start: int  # UTF-16 offset in the visible text
    attrs: dict[str, str]
    language: str | None = None


def _byte_offset(html: str, pos: int) -> int:
    return len(html[:pos].encode("utf-8", "surrogatepass"))


def _decode_entity(html: str, pos: int) -> tuple[str, int]:
    """Decode the character reference starting at ``html[pos] == "&"``; return (char, end)."""
    m = _ENTITY_RE.match(html, pos)
    if m is None:
        raise HtmlParseError(
            f'Character "&" must start an HTML entity (use "&amp;") at byte offset '
            f"{_byte_offset(html, pos)}"
        )
    name, dec, hexa = m.groups()
    if name is not None:
        if name not in _NAMED_ENTITIES:
            raise HtmlParseError(
                f'Unsupported HTML entity "&{name};" at byte offset {_byte_offset(html, pos)}'
            )
        return _NAMED_ENTITIES[name], m.end()
    code = int(dec) if dec is not None else int(hexa, 16)
    if code == 0 or code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
        raise HtmlParseError(
            f"Invalid numeric HTML entity at byte offset {_byte_offset(html, pos)}"
        )
    return chr(code), m.end()


def _decode_attr_value(html: str, start: int, end: int) -> str:
    out: list[str] = []
    i = start
    while i < end:
        amp = html.find("&", i, end)
        if amp < 0:
            out.append(html[i:end])
            break
        out.append(html[i:amp])
        ch, i = _decode_entity(html, amp)
        if i > end:
            raise HtmlParseError(f"Unclosed HTML entity at byte offset {_byte_offset(html, amp)}")
        out.append(ch)
    return "".join(out)


def _skip_space(html: str, j: int) -> int:
    while j < len(html) and html[j] in _SPACE:
        j += 1
    return j


def _parse_attributes(html: str, j: int, tag: str, tag_pos: int) -> tuple[dict[str, str], int]:
    """Parse attributes of a start tag from ``j`` up to and including ``>``."""
    n = len(html)
    attrs: dict[str, str] = {}
    while True:
        j = _skip_space(html, j)
        if j >= n:
            raise HtmlParseError(f"Unclosed start tag at byte offset {_byte_offset(html, tag_pos)}")
        if html[j] == ">":
            return attrs, j + 1
        m = _ATTR_NAME_RE.match(html, j)
        if m is None:
            raise HtmlParseError(
                f'Empty attribute name in the tag "{tag}" at byte offset {_byte_offset(html, j)}'
            )
        name = m.group(0).lower()
        j = _skip_space(html, m.end())
        value = ""
        if j < n and html[j] == "=":
            j = _skip_space(html, j + 1)
            if j >= n:
                raise HtmlParseError(
                    f"Unclosed start tag at byte offset {_byte_offset(html, tag_pos)}"
                )
            if html[j] in "\"'":
                close = html.find(html[j], j + 1)
                if close < 0:
                    raise HtmlParseError(
                        f"Unclosed attribute value at byte offset {_byte_offset(html, j)}"
                    )
                value = _decode_attr_value(html, j + 1, close)
                j = close + 1
            else:
                mv = _UNQUOTED_VALUE_RE.match(html, j)
                if mv is None:
                    raise HtmlParseError(
                        f"Expected attribute value at byte offset {_byte_offset(html, j)}"
                    )
                value = _decode_attr_value(html, j, mv.end())
                j = mv.end()
        attrs[name] = value


def _validate_tag(html: str, tag: str, attrs: dict[str, str], pos: int) -> None:
    where = f"at byte offset {_byte_offset(html, pos)}"
    if tag == "span" and attrs.get("class") != "tg-spoiler":
        raise HtmlParseError(f'Tag "span" must have class "tg-spoiler" {where}')
    if tag == "a" and not attrs.get("href"):
        raise HtmlParseError(f'Tag "a" must have attribute "href" {where}')
    if tag == "tg-emoji" and not attrs.get("emoji-id", "").isdigit():
        raise HtmlParseError(f'Tag "tg-emoji" must have a numeric attribute "emoji-id" {where}')


def _close_entity(top: _OpenTag, end: int, stack: list[_OpenTag]) -> JSON | None:
    if top.name == "code" and stack and stack[-1].name == "pre":
        cls = top.attrs.get("class", "")
        if cls.startswith("language-"):
            stack[-1].language = cls[len("language-") :]
            return None
    length = end - top.start
    if length <= 0:
        return None
    entity: JSON = {"type": _TAG_ENTITY_TYPES[top.name], "offset": top.start, "length": length}
    if top.name == "a":
        entity["url"] = top.attrs["href"]
    elif top.name == "pre" and top.language:
        entity["language"] = top.language
    elif top.name == "blockquote" and "expandable" in top.attrs:
        entity["type"] = "expandable_blockquote"
    elif top.name == "tg-emoji":
        entity["custom_emoji_id"] = top.attrs["emoji-id"]
    return entity


def parse_html(html: str) -> tuple[str, list[JSON]]:
    """Parse Telegram's HTML subset strictly; return ``(visible_text, entities)``.

    Supported tags: b, strong, i, em, u, ins, s, strike, del, span (class="tg-spoiler" only),
    tg-spoiler, a (href required), code, pre (``<pre><code class="language-x">`` sets the
    language), blockquote (optional ``expandable``), tg-emoji (numeric emoji-id required).
    Tags are case-insensitive and must be properly nested and closed. A ``<`` that does not
    start a supported tag, or an ``&`` that is not one of ``&lt; &gt; &amp; &quot;`` or a
    numeric reference (``&#NN;`` / ``&#xHH;``), raises :class:`HtmlParseError`.
    Entity offsets/lengths are in UTF-16 code units; the text is *not* stripped.
    """
    parts: list[str] = []
    units = 0
    stack: list[_OpenTag] = []
    entities: list[JSON] = []
    i, n = 0, len(html)
    while i < n:
        ch = html[i]
        if ch == "<":
            if html.startswith("</", i):
                m = _TAG_NAME_RE.match(html, i + 2)
                j = _skip_space(html, m.end()) if m else i
                if m is None or j >= n or html[j] != ">":
                    raise HtmlParseError(
                        f"Unexpected end tag at byte offset {_byte_offset(html, i)}"
                    )
                name = m.group(0).lower()
                if not stack:
                    raise HtmlParseError(
                        f"Unexpected end tag at byte offset {_byte_offset(html, i)}"
                    )
                top = stack.pop()
                if top.name != name:
                    raise HtmlParseError(
                        f"Unmatched end tag at byte offset {_byte_offset(html, i)}, "
                        f'expected "</{top.name}>", found "</{name}>"'
                    )
                entity = _close_entity(top, units, stack)
                if entity is not None:
                    entities.append(entity)
                i = j + 1
                continue
            m = _TAG_NAME_RE.match(html, i + 1)
            name = m.group(0).lower() if m else ""
            if m is None or name not in _SUPPORTED_TAGS:
                raise HtmlParseError(
                    f'Unsupported start tag "{name}" at byte offset {_byte_offset(html, i)}'
                )
            attrs, j = _parse_attributes(html, m.end(), name, i)
            _validate_tag(html, name, attrs, i)
            stack.append(_OpenTag(name, units, attrs))
            i = j
            continue
        if ch == "&":
            text, i = _decode_entity(html, i)
        else:
            mt = _TEXT_RE.match(html, i)
            assert mt is not None
            text, i = mt.group(0), mt.end()
        parts.append(text)
        units += utf16_len(text)
    if stack:
        raise HtmlParseError(f'Can\'t find end tag corresponding to start tag "{stack[-1].name}"')
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return "".join(parts), entities


def visible_text(html: str) -> str:
    """The text a user sees for a ``parse_mode="HTML"`` text: tags removed, entities unescaped.

    Raises :class:`HtmlParseError` for markup Telegram would reject. Leading/trailing whitespace
    is kept (Telegram strips it from the stored message text; compare with ``.strip()``).
    """
    return parse_html(html)[0]


def _strip_text(text: str, entities: list[JSON]) -> tuple[str, list[JSON]]:
    """Strip surrounding whitespace like Telegram does and shift/clip entities accordingly."""
    stripped = text.strip()
    if stripped == text:
        return text, entities
    lead = utf16_len(text[: len(text) - len(text.lstrip())])
    total = utf16_len(stripped)
    result: list[JSON] = []
    for entity in entities:
        start = max(entity["offset"] - lead, 0)
        end = min(entity["offset"] + entity["length"] - lead, total)
        if end > start:
            result.append({**entity, "offset": start, "length": end - start})
    return stripped, result


# --------------------------------------------------------------------------------------------
# Inline keyboards
# --------------------------------------------------------------------------------------------


def inline_buttons(reply_markup: Any) -> list[list[JSON]]:
    """Rows of inline keyboard buttons of a reply_markup dict (``[]`` if none)."""
    if not isinstance(reply_markup, dict):
        return []
    rows = reply_markup.get("inline_keyboard")
    if not isinstance(rows, list):
        return []
    return [[b for b in row if isinstance(b, dict)] for row in rows if isinstance(row, list)]


def _flat_buttons(reply_markup: Any) -> Iterator[JSON]:
    for row in inline_buttons(reply_markup):
        yield from row


_BUTTON_ACTIONS: Final = (
    "url", "callback_data", "web_app", "login_url", "switch_inline_query",
    "switch_inline_query_current_chat", "switch_inline_query_chosen_chat", "copy_text",
    "callback_game", "pay",
)  # fmt: skip


def _valid_button_url(url: Any) -> bool:
    if not isinstance(url, str) or not url or any(c in url for c in " \t\r\n"):
        return False
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        return bool(parts.hostname)
    return scheme == "tg" and len(url) > len("tg://")


# --------------------------------------------------------------------------------------------
# Public data classes
# --------------------------------------------------------------------------------------------


class TelegramApiError(Exception):
    """An error answer of the Bot API. Raise it from custom handlers (:meth:`set_handler`)."""

    def __init__(self, error_code: int, description: str, parameters: JSON | None = None) -> None:
        super().__init__(f"{error_code} {description}")
        self.error_code = error_code
        self.description = description
        self.parameters = parameters
        #: Answered as text/html instead of :meth:`payload` (``FakeTelegram.fail(body=...)``).
        self.raw_body: str | None = None

    def payload(self) -> JSON:
        """The JSON body Telegram would send for this error."""
        body: JSON = {"ok": False, "error_code": self.error_code, "description": self.description}
        if self.parameters:
            body["parameters"] = dict(self.parameters)
        return body


def _bad(description: str) -> TelegramApiError:
    return TelegramApiError(400, f"Bad Request: {description}")


@dataclass
class UploadedFile:
    """A file uploaded via multipart/form-data."""

    field_name: str
    filename: str | None
    content_type: str | None
    data: bytes = field(repr=False)

    @property
    def size(self) -> int:
        """Size in bytes."""
        return len(self.data)


@dataclass
class ApiCall:
    """One Bot API request the bot made, with decoded parameters and the answer it got."""

    method: str
    """Method name as in the URL path, case preserved (e.g. ``"sendMessage"``)."""
    params: dict[str, Any]
    """Decoded parameters (JSON decoded, ints/bools converted; uploads as :class:`UploadedFile`)."""
    index: int
    """Position in :attr:`FakeTelegram.calls`."""
    response: Any
    """The ``result`` returned, or ``None`` on error."""
    error: dict[str, Any] | None
    """The error payload returned, if any."""
    files: dict[str, UploadedFile] = field(default_factory=dict)
    """All uploaded files of the request by multipart part name (also ``attach://`` targets)."""
    http_status: int = 200
    timestamp: float = 0.0
    """``time.time()`` when the answer was sent."""

    @property
    def ok(self) -> bool:
        """True if the call was answered successfully."""
        return self.error is None

    @property
    def error_code(self) -> int | None:
        """The error code of a failed call."""
        return None if self.error is None else self.error.get("error_code")

    @property
    def chat_id(self) -> int | str | None:
        """The ``chat_id`` parameter."""
        value = self.params.get("chat_id")
        return value if isinstance(value, int | str) else None

    @property
    def message_id(self) -> int | None:
        """``message_id`` parameter, else the ``message_id`` of the returned message."""
        value = self.params.get("message_id")
        if isinstance(value, int):
            return value
        if isinstance(self.response, dict) and isinstance(self.response.get("message_id"), int):
            return int(self.response["message_id"])
        return None

    @property
    def text(self) -> str | None:
        """The ``text`` parameter, else ``caption`` (raw, i.e. with HTML markup if any)."""
        for key in ("text", "caption"):
            value = self.params.get(key)
            if isinstance(value, str):
                return value
        return None

    @property
    def visible_text(self) -> str | None:
        """:attr:`text` as the user sees it (HTML parsed when ``parse_mode`` is HTML)."""
        text = self.text
        if text is None:
            return None
        pm = self.params.get("parse_mode")
        return visible_text(text) if isinstance(pm, str) and pm.lower() == "html" else text

    @property
    def reply_markup(self) -> dict[str, Any] | None:
        """The decoded ``reply_markup`` parameter."""
        value = self.params.get("reply_markup")
        return value if isinstance(value, dict) else None

    def buttons(self) -> list[list[dict[str, Any]]]:
        """Inline keyboard rows (``[]`` if none)."""
        return inline_buttons(self.reply_markup)

    def button_texts(self) -> list[str]:
        """Texts of all inline buttons, row by row."""
        return [str(b.get("text")) for b in _flat_buttons(self.reply_markup)]

    def callback_datas(self) -> list[str]:
        """callback_data of all inline buttons that have one."""
        return [
            b["callback_data"]
            for b in _flat_buttons(self.reply_markup)
            if isinstance(b.get("callback_data"), str)
        ]

    def url_buttons(self) -> dict[str, str]:
        """``{text: url}`` of all URL buttons."""
        return {
            str(b.get("text")): b["url"]
            for b in _flat_buttons(self.reply_markup)
            if isinstance(b.get("url"), str)
        }

    def summary(self) -> str:
        """One-line description for failure messages."""
        shown = {
            k: (v if not isinstance(v, str) or len(v) <= 80 else v[:77] + "...")
            for k, v in self.params.items()
        }
        outcome = "ok" if self.error is None else f"ERROR {self.error.get('error_code')} "
        if self.error is not None:
            outcome += str(self.error.get("description"))
        return f"#{self.index} {self.method} {shown} -> {outcome}"


# --------------------------------------------------------------------------------------------
# Parameter decoding
# --------------------------------------------------------------------------------------------

_STRING_FIELDS: Final = frozenset(
    {
        "text", "caption", "parse_mode", "caption_parse_mode", "callback_query_id",
        "inline_query_id", "shipping_query_id", "pre_checkout_query_id", "web_app_query_id",
        "inline_message_id", "business_connection_id", "message_effect_id", "file_id",
        "custom_emoji_id", "url", "secret_token", "ip_address", "description",
        "short_description", "name", "title", "emoji", "action", "language_code",
        "question", "explanation", "explanation_parse_mode", "question_parse_mode",
        "switch_pm_text", "switch_pm_parameter", "next_offset", "start_parameter", "payload",
        "provider_token", "provider_data", "currency", "invite_link", "query", "address",
        "foursquare_id", "foursquare_type", "google_place_id", "google_place_type",
        "phone_number", "first_name", "last_name", "vcard", "game_short_name",
        "error_message", "custom_title", "sticker_set_name", "performer", "photo", "document",
        "video", "audio", "voice", "animation", "video_note", "sticker", "thumbnail",
        "certificate", "icon_custom_emoji_id", "status", "format", "cover",
    }
)  # fmt: skip
_INT_FIELDS: Final = frozenset(
    {
        "chat_id", "message_id", "from_chat_id", "offset", "limit", "timeout", "user_id",
        "cache_time", "message_thread_id", "reply_to_message_id", "until_date", "duration",
        "width", "height", "length", "live_period", "heading", "proximity_alert_radius",
        "open_period", "close_date", "correct_option_id", "max_connections", "sender_chat_id",
        "max_tip_amount", "member_limit", "expire_date", "icon_color", "star_count",
        "subscription_period", "subscription_price", "direct_messages_topic_id",
        "video_start_timestamp", "score", "position",
    }
)  # fmt: skip
_FLOAT_FIELDS: Final = frozenset({"latitude", "longitude", "horizontal_accuracy"})
_JSON_FIELDS: Final = frozenset(
    {
        "reply_markup", "entities", "caption_entities", "commands", "scope", "allowed_updates",
        "media", "link_preview_options", "reply_parameters", "results", "button",
        "menu_button", "permissions", "options", "explanation_entities", "question_entities",
        "message_ids", "prices", "shipping_options", "reaction", "input_message_content",
        "suggested_tip_amounts", "stickers", "mask_position", "rights",
        "administrator_rights", "suggested_post_parameters", "checklist",
    }
)  # fmt: skip
_BOOL_FIELDS: Final = frozenset(
    {
        "drop_pending_updates", "revoke_messages", "for_channels", "creates_join_request",
        "allows_multiple_answers", "supports_streaming", "show_alert", "hide_url",
    }
)  # fmt: skip
_BOOL_PREFIXES: Final = (
    "can_", "is_", "has_", "disable_", "allow_", "need_", "send_", "only_", "show_",
    "protect_", "supports_",
)  # fmt: skip
_INT_RE: Final = re.compile(r"-?[0-9]+")


def _decode_value(name: str, value: str) -> Any:
    """Turn a raw string parameter into the natural Python value (see module docs)."""
    if name in _STRING_FIELDS:
        return value
    if name in _JSON_FIELDS or (value[:1] in ("{", "[") and name not in _INT_FIELDS):
        try:
            return json.loads(value)
        except ValueError:
            return value
    if (name in _INT_FIELDS or name.endswith("_id")) and _INT_RE.fullmatch(value):
        return int(value)
    if name in _FLOAT_FIELDS:
        try:
            return float(value)
        except ValueError:
            return value
    if (name in _BOOL_FIELDS or name.startswith(_BOOL_PREFIXES)) and value.lower() in (
        "true",
        "false",
    ):
        return value.lower() == "true"
    return value


def _normalize(name: str, value: Any) -> Any:
    return _decode_value(name, value) if isinstance(value, str) else value


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------

_MEDIA_KINDS: Final = (
    "photo", "document", "video", "audio", "voice", "animation", "sticker", "video_note",
)  # fmt: skip
_DEFAULT_MIME: Final = {
    "photo": "image/jpeg",
    "document": "application/octet-stream",
    "video": "video/mp4",
    "audio": "audio/mpeg",
    "voice": "audio/ogg",
    "animation": "video/mp4",
    "sticker": "image/webp",
    "video_note": "video/mp4",
}
_FILE_ID_PREFIX: Final = {
    "photo": "AgAC",
    "document": "BQAC",
    "video": "BAAC",
    "audio": "CQAC",
    "voice": "AwAC",
    "animation": "CgAC",
    "sticker": "CAAC",
    "video_note": "DQAC",
}


@dataclass
class FileRecord:
    """A file the fake knows (uploaded by the bot, sent by URL, registered, or seen in updates)."""

    file_id: str
    file_unique_id: str
    kind: str
    data: bytes | None = field(default=None, repr=False)
    filename: str | None = None
    mime_type: str | None = None
    url: str | None = None
    photo_sizes: list[JSON] | None = None
    file_path: str | None = None


# --------------------------------------------------------------------------------------------
# The fake server
# --------------------------------------------------------------------------------------------

_MESSAGE_KEYS: Final = (
    "message", "edited_message", "channel_post", "edited_channel_post", "business_message",
    "edited_business_message",
)  # fmt: skip
_CHAT_ACTIONS: Final = frozenset(
    {
        "typing", "upload_photo", "record_video", "upload_video", "record_voice",
        "upload_voice", "upload_document", "choose_sticker", "find_location",
        "record_video_note", "upload_video_note",
    }
)  # fmt: skip
_TRUE_METHODS: Final = frozenset(
    {
        "pinchatmessage", "unpinchatmessage", "unpinallchatmessages", "setmessagereaction",
        "leavechat", "banchatmember", "unbanchatmember", "restrictchatmember",
        "promotechatmember", "setchattitle", "setchatdescription", "setchatpermissions",
        "approvechatjoinrequest", "declinechatjoinrequest", "answerinlinequery",
        "setmydefaultadministratorrights", "setchatphoto", "deletechatphoto",
    }
)  # fmt: skip
_ACCESS_PREFIXES: Final = ("send", "edit", "copy", "forward")
_RATE_LIMITED_PREFIXES: Final = ("send", "copymessage", "forwardmessage")
_NOT_MODIFIED: Final = (
    "message is not modified: specified new message content and reply markup are exactly the "
    "same as a current content and reply markup of the message"
)
_QUERY_TOO_OLD: Final = "query is too old and response timeout expired or query ID is invalid"
_PATH_RE: Final = re.compile(r"/bot([^/]*)/([A-Za-z][A-Za-z0-9_]*)/?")
_FILE_PATH_RE: Final = re.compile(r"/file/bot([^/]*)/(.+)")


@dataclass
class _FailRule:
    method: str  # lower-case
    error_code: int
    description: str
    chat_id: int | str | None
    times: int | None
    parameters: JSON | None
    body: str | None = None  # answered as text/html instead of Telegram's JSON


class FakeTelegram:
    """A fake Telegram Bot API server on ``127.0.0.1`` (see module docstring).

    Attributes of interest:

    * ``url`` – ``"http://127.0.0.1:<port>"`` once started; API calls go to
      ``f"{url}/bot{token}/{method}"``, file downloads to ``f"{url}/file/bot{token}/{path}"``.
    * ``calls`` – every :class:`ApiCall`, in the order they were answered.
    * ``updates`` – every update ever added (history); ``confirmed_update_id`` – highest id
      confirmed by a getUpdates offset.
    * ``webhook``, ``commands`` (``{(scope_json, language_code): [...]}``), ``descriptions``,
      ``short_descriptions``, ``bot_names`` (per language code), ``menu_buttons`` (per chat id,
      ``None`` = default), ``allowed_updates`` (last value sent with getUpdates).
    * ``answered_callback_ids`` and ``callback_answers`` (id -> answerCallbackQuery params).
    * ``stats`` – ``{"calls": {method: n}, "errors": {code: n}, "rate_limited": n}``.
    * ``call_delay``, ``rate_limit``, ``per_chat_rate_limit`` – see :meth:`__init__`.
    """

    def __init__(
        self,
        *,
        token: str = "123456:TEST-fake-token-abcdefghijklmnopqrstuv",
        bot_id: int = 123456,
        bot_username: str = "todo_test_bot",
        bot_first_name: str = "to:DO Bot",
        strict_initiation: bool = True,
        call_delay: float = 0.0,
    ) -> None:
        """Create the fake; call :meth:`start` (or use ``async with``) to serve.

        ``strict_initiation``: answer 403 "bot can't initiate conversation with a user" for
        private chats whose user never sent an update (and 400 "chat not found" for unknown
        group/channel chats) unless registered with :meth:`allow_chat`.
        ``call_delay``: seconds every method call (except getUpdates) waits before answering.
        """
        self.token = token
        self.bot_id = bot_id
        self.bot_username = bot_username
        self.bot_first_name = bot_first_name
        self.strict_initiation = strict_initiation
        self.call_delay = call_delay
        self.rate_limit: tuple[int, float] | None = None
        """(max_calls, window_seconds) over send*/copyMessage/forwardMessage across all chats."""
        self.per_chat_rate_limit: tuple[int, float] | None = None
        """Like :attr:`rate_limit`, counted per ``chat_id``."""
        self.url = ""
        self.calls: list[ApiCall] = []
        self.updates: list[JSON] = []
        self.confirmed_update_id = 0
        self.webhook: JSON | None = None
        self.commands: dict[tuple[str, str], list[JSON]] = {}
        self.descriptions: dict[str, str] = {}
        self.short_descriptions: dict[str, str] = {}
        self.bot_names: dict[str, str] = {}
        self.menu_buttons: dict[int | None, JSON] = {}
        self.allowed_updates: list[str] | None = None
        self.answered_callback_ids: list[str] = []
        self.callback_answers: dict[str, JSON] = {}
        self.stats: dict[str, Any] = {"calls": Counter(), "errors": Counter(), "rate_limited": 0}
        self.internal_errors: list[BaseException] = []
        """Unexpected exceptions inside the fake (bugs); re-raised by :meth:`stop`."""

        self._pending: list[JSON] = []
        self._next_update_id = 1
        self._fetched_ids: set[int] = set()
        self._issued_callbacks: dict[str, int] = {}  # callback id -> update id
        self._delivered_callbacks: list[str] = []
        self._callback_counter = itertools.count(1)
        self._users: dict[int, JSON] = {}
        self._chats: dict[int, JSON] = {}
        self._known_chats: set[int] = set()
        self._usernames: dict[str, int] = {}
        self._blocked: set[int] = set()
        self._store: dict[int, dict[int, JSON]] = defaultdict(dict)
        self._next_message_id: dict[int, int] = defaultdict(lambda: 1)
        self._files: dict[str, FileRecord] = {}
        self._files_by_path: dict[str, FileRecord] = {}
        self._file_counter = itertools.count(1)
        self._media_group_counter = itertools.count(1)
        self._channel_counter = itertools.count(1)
        self._fail_rules: list[_FailRule] = []
        self._rate_global: deque[float] = deque()
        self._rate_chat: dict[int | str, deque[float]] = defaultdict(deque)
        self._handlers: dict[str, Handler] = {}
        self._raw_bytes: dict[int, dict[str, bytes]] = {}
        """update id -> placeholder -> raw bytes in getUpdates' body (:meth:`add_raw_update`)."""
        self._changed = asyncio.Event()
        self._poll_generation = 0
        self._waiting_polls = 0
        self._stopping = False
        self._gone = False
        self._port = 0
        self._in_flight = 0
        self._runner: web.AppRunner | None = None

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Start serving on 127.0.0.1 with a free port; sets :attr:`url`."""
        if self._runner is not None:
            return
        self._stopping = False
        self._gone = False
        self._runner = await self._serve(0)
        host, port = self._runner.addresses[0][:2]
        self._port = int(port)
        self.url = f"http://{host}:{port}"

    async def _serve(self, port: int) -> web.AppRunner:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port, reuse_address=True)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        return runner

    @property
    def gone(self) -> bool:
        """True between :meth:`go_away` and :meth:`come_back`."""
        return self._gone

    async def go_away(self) -> None:
        """Telegram is unreachable: stop listening, so that every request (new connections
        and kept-alive ones alike) fails with "connection refused" until :meth:`come_back`.

        Calls being handled at this moment finish and are answered (waiting long polls
        return at once with what is pending); they are in :attr:`calls` as usual. Nothing
        that arrives while the fake is gone reaches it or is recorded. :attr:`url` stays
        the same. Safe to call when already gone.
        """
        if self._gone or self._runner is None:
            return
        self._gone = True
        self._notify()  # long polls return now
        runner, self._runner = self._runner, None
        await runner.cleanup()  # closes the listening socket and every connection

    async def come_back(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Listen again on the same port (SO_REUSEADDR) after :meth:`go_away`.

        Retries for up to ``timeout`` seconds should the port be busy for a moment (an
        outgoing connection of this machine may have been given the freed port)."""
        if not self._gone:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                self._runner = await self._serve(self._port)
                break
            except OSError:
                if loop.time() > deadline:
                    raise
                await asyncio.sleep(0.05)
        self._gone = False
        self._notify()

    async def stop(self) -> None:
        """Stop serving. Pending long polls return ``[]`` immediately.

        Raises the first internal error of the fake (a bug in the fake), if any occurred.
        """
        self._stopping = True
        self._gone = False
        self._notify()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        if self.internal_errors:
            raise RuntimeError("FakeTelegram had internal errors") from self.internal_errors[0]

    async def __aenter__(self) -> FakeTelegram:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self.stop()
        except RuntimeError:
            if exc is None:
                raise

    # ---------------------------------------------------------------- waiting

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:  # noqa: ASYNC109
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            event = self._changed
            if predicate():
                return True
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except TimeoutError:
                return predicate()

    def _recent_calls_text(self, limit: int = 25) -> str:
        relevant = [c for c in self.calls if c.method.lower() != "getupdates"]
        lines = [c.summary() for c in relevant[-limit:]]
        skipped = len(self.calls) - len(relevant)
        header = f"Recent calls ({len(relevant)} total, {skipped} getUpdates not shown):"
        return "\n  ".join([header, *lines]) if lines else header + " none"

    async def wait_for_call(
        self,
        predicate: Callable[[ApiCall], bool],
        *,
        since: int = 0,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> ApiCall:
        """Wait for the first call at index >= ``since`` matching ``predicate``.

        Event-based (no polling). Raises AssertionError listing recent calls on timeout.
        """
        found: list[ApiCall] = []
        pos = since

        def check() -> bool:
            nonlocal pos
            while pos < len(self.calls):
                call = self.calls[pos]
                pos += 1
                if predicate(call):
                    found.append(call)
                    return True
            return False

        if await self._wait_until(check, timeout):
            return found[0]
        raise AssertionError(
            f"No matching API call within {timeout}s (since={since}).\n" + self._recent_calls_text()
        )

    async def wait_for_method(
        self,
        method: str,
        *,
        chat_id: int | str | None = None,
        since: int = 0,
        timeout: float = 5.0,  # noqa: ASYNC109
        ok: bool | None = None,
    ) -> ApiCall:
        """Wait for a call of ``method`` (case-insensitive), optionally for ``chat_id`` and
        with the given outcome (``ok=True`` successful only, ``False`` failed only)."""
        lower = method.lower()

        def match(call: ApiCall) -> bool:
            return (
                call.method.lower() == lower
                and (chat_id is None or call.chat_id == chat_id)
                and (ok is None or call.ok == ok)
            )

        return await self.wait_for_call(match, since=since, timeout=timeout)

    @property
    def waiting_polls(self) -> int:
        """Number of getUpdates requests currently waiting (long polling)."""
        return self._waiting_polls

    async def wait_until_polling(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Wait until a getUpdates long poll is waiting (the bot is idle, ready for updates)."""
        if not await self._wait_until(lambda: self._waiting_polls > 0, timeout):
            raise AssertionError(
                f"No long poll waiting within {timeout}s.\n" + self._recent_calls_text()
            )

    @property
    def in_flight(self) -> int:
        """Calls (other than getUpdates) being handled right now, not yet answered."""
        return self._in_flight

    async def wait_until_idle(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Wait until no call (other than a long poll) is being handled, e.g. until the
        requests a killed client left behind have been answered (and recorded)."""
        if not await self._wait_until(lambda: self._in_flight == 0, timeout):
            raise AssertionError(
                f"{self._in_flight} calls still in flight after {timeout}s.\n"
                + self._recent_calls_text()
            )

    def calls_of(self, method: str, chat_id: int | None = None, since: int = 0) -> list[ApiCall]:
        """Calls of ``method`` (case-insensitive) from index ``since``, optionally per chat."""
        lower = method.lower()
        return [
            c
            for c in self.calls[since:]
            if c.method.lower() == lower and (chat_id is None or c.chat_id == chat_id)
        ]

    async def wait_until_fetched(self, update_id: int, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Wait until the update was delivered by getUpdates (or confirmed)."""
        ok = await self._wait_until(
            lambda: update_id in self._fetched_ids or update_id <= self.confirmed_update_id,
            timeout,
        )
        if not ok:
            raise AssertionError(
                f"Update {update_id} not fetched within {timeout}s.\n" + self._recent_calls_text()
            )

    async def wait_until_confirmed(self, update_id: int, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Wait until a getUpdates offset confirmed the update (the bot fetched the next batch)."""
        if not await self._wait_until(lambda: update_id <= self.confirmed_update_id, timeout):
            raise AssertionError(
                f"Update {update_id} not confirmed within {timeout}s.\n" + self._recent_calls_text()
            )

    # ---------------------------------------------------------------- updates

    def add_update(self, update: JSON) -> int:
        """Queue an update for getUpdates; assigns a fresh ``update_id`` if missing.

        Registers users/chats (for strict initiation), stores user messages, records callback
        query ids and file ids found in the update, and wakes a waiting long poll.
        """
        if "update_id" not in update:
            update["update_id"] = self._next_update_id
        update_id = int(update["update_id"])
        self._next_update_id = max(self._next_update_id, update_id + 1)
        self._register_update(update)
        self.updates.append(update)
        if update_id > self.confirmed_update_id:
            self._pending.append(update)
            self._pending.sort(key=lambda u: int(u["update_id"]))
        self._notify()
        return update_id

    def add_raw_update(self, update: JSON, raw: dict[str, bytes]) -> int:
        """Like :meth:`add_update`, but in the JSON body getUpdates sends, every placeholder
        (a key of ``raw``, written into a string of the update) is replaced by its raw bytes
        as they are: ``rb"\\ud800"`` puts an escaped lone surrogate into the JSON, ``b"\\xff"``
        a byte that is not UTF-8. Placeholders must be ASCII without JSON escapes and unique
        to this update. The fake itself (registration, stored messages) sees the update with
        the placeholders; only the bytes on the wire change."""
        for placeholder in raw:
            if not placeholder.isascii() or json.dumps(placeholder)[1:-1] != placeholder:
                raise ValueError(f"placeholder {placeholder!r} must be plain ASCII")
        update_id = self.add_update(update)
        self._raw_bytes[update_id] = dict(raw)
        return update_id

    def update(self, update_id: int) -> JSON | None:
        """The update with that id from :attr:`updates`."""
        return next((u for u in self.updates if u.get("update_id") == update_id), None)

    @property
    def pending_updates(self) -> list[JSON]:
        """Updates not yet confirmed by an offset."""
        return list(self._pending)

    def _register_user(self, user: Any) -> None:
        if isinstance(user, dict) and isinstance(user.get("id"), int):
            self._users[user["id"]] = dict(user)
            if not user.get("is_bot"):
                self._known_chats.add(user["id"])

    def _register_chat(self, chat: Any) -> None:
        if isinstance(chat, dict) and isinstance(chat.get("id"), int):
            self._chats[chat["id"]] = dict(chat)
            self._known_chats.add(chat["id"])
            if isinstance(chat.get("username"), str):
                self._usernames[chat["username"].lower()] = chat["id"]

    def _register_update(self, update: JSON) -> None:
        for key, value in update.items():
            if not isinstance(value, dict):
                continue
            self._register_user(value.get("from"))
            self._register_chat(value.get("chat"))
            if key == "callback_query" and isinstance(value.get("message"), dict):
                self._register_chat(value["message"].get("chat"))
            if key in _MESSAGE_KEYS:
                self._store_incoming(value, edited=key.startswith("edited"))
            elif key == "callback_query" and isinstance(value.get("id"), str):
                self._issued_callbacks[value["id"]] = int(update["update_id"])
            elif key == "my_chat_member":
                status = (value.get("new_chat_member") or {}).get("status")
                chat_id = (value.get("chat") or {}).get("id")
                if isinstance(chat_id, int) and status in ("kicked", "left"):
                    self._blocked.add(chat_id)
                elif isinstance(chat_id, int) and status in ("member", "administrator"):
                    self._blocked.discard(chat_id)
        self._register_files(update)

    def _store_incoming(self, message: JSON, *, edited: bool) -> None:
        chat = message.get("chat") or {}
        chat_id, message_id = chat.get("id"), message.get("message_id")
        if not isinstance(chat_id, int) or not isinstance(message_id, int):
            return
        self._next_message_id[chat_id] = max(self._next_message_id[chat_id], message_id + 1)
        if edited and message_id in self._store[chat_id]:
            self._store[chat_id][message_id].update(copy.deepcopy(message))
        else:
            self._store[chat_id][message_id] = copy.deepcopy(message)

    def _register_files(self, obj: Any, kind: str = "file") -> None:
        if isinstance(obj, dict):
            file_id = obj.get("file_id")
            if isinstance(file_id, str) and file_id not in self._files:
                unique = obj.get("file_unique_id")
                self._files[file_id] = FileRecord(
                    file_id=file_id,
                    file_unique_id=unique if isinstance(unique, str) else f"u{file_id}",
                    kind=kind,
                    filename=obj.get("file_name"),
                    mime_type=obj.get("mime_type"),
                )
            for key, value in obj.items():
                self._register_files(value, key if key in _MEDIA_KINDS else kind)
        elif isinstance(obj, list):
            for value in obj:
                self._register_files(value, kind)

    def _take_message_id(self, chat_id: int) -> int:
        message_id = self._next_message_id[chat_id]
        self._next_message_id[chat_id] = message_id + 1
        return message_id

    # ---------------------------------------------------------------- update builders

    def user(
        self,
        user_id: int,
        *,
        first_name: str = "Test",
        language_code: str | None = "de",
        username: str | None = None,
        is_bot: bool = False,
        last_name: str | None = None,
    ) -> JSON:
        """A User dict."""
        user: JSON = {"id": user_id, "is_bot": is_bot, "first_name": first_name}
        if last_name is not None:
            user["last_name"] = last_name
        if username is not None:
            user["username"] = username
        if language_code is not None:
            user["language_code"] = language_code
        return user

    @staticmethod
    def private_chat(user: JSON) -> JSON:
        """The private Chat dict of a user."""
        chat: JSON = {"id": user["id"], "type": "private", "first_name": user.get("first_name")}
        for key in ("last_name", "username"):
            if key in user:
                chat[key] = user[key]
        return chat

    def message_update(
        self,
        user: JSON,
        text: str | None = None,
        *,
        chat: JSON | None = None,
        entities: list[JSON] | None = None,
        extra: JSON | None = None,
        edited: bool = False,
        message_id: int | None = None,
    ) -> JSON:
        """A ``message`` (or ``edited_message``) update from ``user``.

        ``chat`` defaults to the user's private chat. A text starting with ``/`` gets a
        bot_command entity unless ``entities`` is given. ``extra`` is merged into the message
        (e.g. ``{"sticker": {...}}`` with text None). ``message_id`` defaults to the chat's next
        id (shared with the bot's messages, as in Telegram).
        """
        chat = chat if chat is not None else self.private_chat(user)
        if message_id is None:
            message_id = self._take_message_id(int(chat["id"]))
        now = int(time.time())
        message: JSON = {"message_id": message_id, "from": user, "chat": chat, "date": now}
        if text is not None:
            message["text"] = text
            if entities is None and text.startswith("/"):
                command = text.split(maxsplit=1)[0] if text.strip() else text
                entities = [{"type": "bot_command", "offset": 0, "length": utf16_len(command)}]
        if entities:
            message["entities"] = entities
        if edited:
            message["edit_date"] = now
        if extra:
            message.update(extra)
        return {("edited_message" if edited else "message"): message}

    def callback_update(
        self, user: JSON, data: str, *, message_id: int, chat_id: int | None = None
    ) -> JSON:
        """A ``callback_query`` update with a fresh id pressing a button of ``message_id``.

        ``message`` is the stored message as the bot last left it (text, reply_markup) if the
        fake knows it, else a minimal message from the bot.
        """
        chat_id = chat_id if chat_id is not None else int(user["id"])
        stored = self._store.get(chat_id, {}).get(message_id)
        if stored is not None:
            message = copy.deepcopy(stored)
        else:
            message = {
                "message_id": message_id,
                "from": self._bot_user(),
                "chat": self._chat_dict(chat_id),
                "date": int(time.time()),
            }
        callback_id = str(4_000_000_000_000_000_000 + next(self._callback_counter))
        return {
            "callback_query": {
                "id": callback_id,
                "from": user,
                "message": message,
                "chat_instance": str(abs(chat_id) * 7 + 1_000_000_000_000),
                "data": data,
            }
        }

    def channel_post_update(self, chat_id: int, text: str, *, title: str = "Channel") -> JSON:
        """A ``channel_post`` update in channel ``chat_id``."""
        chat = {"id": chat_id, "type": "channel", "title": title}
        return {
            "channel_post": {
                "message_id": self._take_message_id(chat_id),
                "sender_chat": chat,
                "chat": chat,
                "date": int(time.time()),
                "text": text,
            }
        }

    def group_message_update(
        self,
        user: JSON,
        chat_id: int,
        text: str,
        *,
        chat_type: str = "supergroup",
        title: str = "Group",
    ) -> JSON:
        """A ``message`` update from ``user`` in a group chat."""
        chat = {"id": chat_id, "type": chat_type, "title": title}
        return self.message_update(user, text, chat=chat)

    def send_message(self, user: JSON, text: str | None = None, **kwargs: Any) -> int:
        """:meth:`message_update` + :meth:`add_update`; returns the update id."""
        return self.add_update(self.message_update(user, text, **kwargs))

    def send_callback(
        self, user: JSON, data: str, *, message_id: int, chat_id: int | None = None
    ) -> int:
        """:meth:`callback_update` + :meth:`add_update`; returns the update id."""
        return self.add_update(
            self.callback_update(user, data, message_id=message_id, chat_id=chat_id)
        )

    def send_channel_post(self, chat_id: int, text: str) -> int:
        """:meth:`channel_post_update` + :meth:`add_update`; returns the update id."""
        return self.add_update(self.channel_post_update(chat_id, text))

    def send_group_message(self, user: JSON, chat_id: int, text: str, **kwargs: Any) -> int:
        """:meth:`group_message_update` + :meth:`add_update`; returns the update id."""
        return self.add_update(self.group_message_update(user, chat_id, text, **kwargs))

    def press_button(
        self,
        user: JSON,
        button_text: str,
        *,
        chat_id: int | None = None,
        message_id: int | None = None,
    ) -> int:
        """Press the inline button labelled ``button_text`` (a callback_data button) on
        ``message_id`` or, by default, the newest bot message in the chat having such a
        button. Returns the update id. Raises AssertionError if there is no such button."""
        chat_id = chat_id if chat_id is not None else int(user["id"])
        candidates = self.messages(chat_id)
        if message_id is not None:
            candidates = [m for m in candidates if m["message_id"] == message_id]
        available: list[str] = []
        for message in reversed(candidates):
            for button in _flat_buttons(message.get("reply_markup")):
                available.append(str(button.get("text")))
                if button.get("text") == button_text and "callback_data" in button:
                    return self.send_callback(
                        user,
                        button["callback_data"],
                        message_id=message["message_id"],
                        chat_id=chat_id,
                    )
        raise AssertionError(
            f"No callback button {button_text!r} in chat {chat_id}; buttons: {available}"
        )

    # ---------------------------------------------------------------- state queries

    def all_messages(self, chat_id: int) -> list[JSON]:
        """All stored messages of the chat (the bot's and users'), ordered by message_id."""
        chat = self._store.get(chat_id, {})
        return [copy.deepcopy(chat[k]) for k in sorted(chat)]

    def messages(self, chat_id: int) -> list[JSON]:
        """Messages currently in the chat sent by the bot (after edits/deletions), in order."""
        return [
            m for m in self.all_messages(chat_id) if (m.get("from") or {}).get("id") == self.bot_id
        ]

    def last_message(self, chat_id: int) -> JSON | None:
        """The newest message of the bot in the chat."""
        messages = self.messages(chat_id)
        return messages[-1] if messages else None

    def get_message(self, chat_id: int, message_id: int) -> JSON | None:
        """A stored message (copy) or None."""
        message = self._store.get(chat_id, {}).get(message_id)
        return copy.deepcopy(message) if message is not None else None

    def unanswered_callbacks(self) -> list[str]:
        """Callback query ids delivered via getUpdates but never answered."""
        answered = set(self.answered_callback_ids)
        return [c for c in self._delivered_callbacks if c not in answered]

    def commands_for(self, scope: JSON | None = None, language_code: str = "") -> list[JSON]:
        """Commands set for that scope (default: BotCommandScopeDefault) and language."""
        return list(self.commands.get((self._scope_key(scope), language_code), []))

    def file_data(self, file_id: str) -> bytes | None:
        """Bytes of a known file (uploaded or registered)."""
        record = self._files.get(file_id)
        return record.data if record is not None else None

    # ---------------------------------------------------------------- configuration

    def allow_chat(self, chat_id: int | str, *, title: str | None = None) -> int:
        """Allow sending to a chat under strict initiation; ``"@name"`` registers a channel
        username. Returns the numeric chat id."""
        if isinstance(chat_id, str):
            username = chat_id.lstrip("@")
            numeric = self._usernames.get(username.lower())
            if numeric is None:
                numeric = -1_000_000_000_000 - next(self._channel_counter)
                self._usernames[username.lower()] = numeric
                self._chats[numeric] = {
                    "id": numeric,
                    "type": "channel",
                    "title": title or username,
                    "username": username,
                }
            chat_id = numeric
        elif title is not None:
            self._chats[chat_id] = {**self._chat_dict(chat_id), "title": title}
        self._known_chats.add(chat_id)
        return chat_id

    def block(self, chat_id: int) -> None:
        """From now on every send/edit to that chat answers 403 bot was blocked by the user."""
        self._blocked.add(chat_id)

    def unblock(self, chat_id: int) -> None:
        """Undo :meth:`block`."""
        self._blocked.discard(chat_id)

    def fail(
        self,
        method: str,
        *,
        error_code: int,
        description: str,
        chat_id: int | None = None,
        times: int | None = 1,
        retry_after: int | None = None,
        parameters: JSON | None = None,
        body: str | None = None,
    ) -> None:
        """Make the next ``times`` calls (None = forever) of ``method`` (case-insensitive; for
        that chat if given) answer with HTTP ``error_code`` and that description;
        ``retry_after`` adds ``parameters.retry_after`` (PTB raises RetryAfter).

        ``method="*"`` matches every method, getUpdates included (Telegram answering 500 or
        502 to everything for a while). ``body``: answer this text as ``text/html`` instead
        of Telegram's JSON (the HTML error page of a proxy in front of the Bot API); the call
        is recorded with the same ``error`` either way."""
        params = dict(parameters or {})
        if retry_after is not None:
            params["retry_after"] = retry_after
        self._fail_rules.append(
            _FailRule(method.lower(), error_code, description, chat_id, times, params or None, body)
        )

    def clear_failures(self) -> None:
        """Remove all rules added by :meth:`fail`."""
        self._fail_rules.clear()

    def set_handler(self, method: str, handler: Handler | None) -> None:
        """Override (or add) a method: ``handler(params)`` returns the result (may be a
        coroutine) or raises :class:`TelegramApiError`. ``None`` removes the override."""
        if handler is None:
            self._handlers.pop(method.lower(), None)
        else:
            self._handlers[method.lower()] = handler

    def register_file(
        self,
        data: bytes,
        *,
        kind: str = "document",
        filename: str | None = None,
        mime_type: str | None = None,
    ) -> JSON | list[JSON]:
        """Create a file (e.g. for a user's message via ``extra``) and return its object:
        a PhotoSize list for ``kind="photo"``, else a Document/Audio/... dict."""
        record = self._new_file(kind, data=data, filename=filename, mime_type=mime_type)
        result: JSON | list[JSON] = self._media_object(record, kind)
        return result

    # ---------------------------------------------------------------- HTTP

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        file_match = _FILE_PATH_RE.fullmatch(path)
        if file_match is not None:
            return self._serve_file(*file_match.groups())
        match = _PATH_RE.fullmatch(path)
        if match is None:
            return web.json_response(TelegramApiError(404, "Not Found").payload(), status=404)
        token, method = match.groups()
        call = ApiCall(method=method, params={}, index=-1, response=None, error=None)
        raw_body: str | None = None
        counted = method.lower() != "getupdates"
        self._in_flight += counted
        try:
            call.params, call.files = await self._read_params(request)
            await self._process(call, token)
        except TelegramApiError as exc:
            call.error = exc.payload()
            raw_body = exc.raw_body
        except asyncio.CancelledError:  # cut off (the server went away): never answered
            self._in_flight -= counted
            counted = False
            self._notify()
            raise
        except Exception as exc:  # a bug in the fake: surface it
            log.exception("FakeTelegram internal error in %s", method)
            self.internal_errors.append(exc)
            call.error = TelegramApiError(500, f"Internal Server Error: {exc!r}").payload()
        finally:
            self._in_flight -= counted
        response = self._finish(call)
        if raw_body is not None:
            return web.Response(text=raw_body, status=call.http_status, content_type="text/html")
        return response

    def _finish(self, call: ApiCall) -> web.Response:
        call.index = len(self.calls)
        call.timestamp = time.time()
        self.stats["calls"][call.method] += 1
        if call.error is not None:
            call.response = None
            call.http_status = int(call.error["error_code"])
            self.stats["errors"][call.http_status] += 1
            body: JSON = call.error
        else:
            body = {"ok": True, "result": call.response}
        self.calls.append(call)
        self._notify()
        raw = self._raw_replacements(call)
        if raw:
            data = json.dumps(body).encode("ascii")
            for placeholder, replacement in raw.items():
                data = data.replace(placeholder.encode("ascii"), replacement)
            return web.Response(body=data, status=call.http_status, content_type="application/json")
        return web.json_response(body, status=call.http_status)

    def _raw_replacements(self, call: ApiCall) -> dict[str, bytes]:
        """The raw bytes of :meth:`add_raw_update` for the updates this getUpdates returns."""
        if not self._raw_bytes or call.method.lower() != "getupdates":
            return {}
        if call.error is not None or not isinstance(call.response, list):
            return {}
        raw: dict[str, bytes] = {}
        for update in call.response:
            raw.update(self._raw_bytes.get(int(update.get("update_id", 0)), {}))
        return raw

    def _serve_file(self, token: str, file_path: str) -> web.Response:
        if token != self.token:
            return web.json_response(TelegramApiError(401, "Unauthorized").payload(), status=401)
        record = self._files_by_path.get(file_path)
        if record is None:
            return web.json_response(TelegramApiError(404, "Not Found").payload(), status=404)
        return web.Response(
            body=record.data or b"", content_type=record.mime_type or "application/octet-stream"
        )

    async def _read_params(self, request: web.Request) -> tuple[JSON, dict[str, UploadedFile]]:
        params: JSON = {}
        files: dict[str, UploadedFile] = {}
        for key, value in request.query.items():
            params[key] = _normalize(key, value)
        if request.can_read_body:
            ctype = request.content_type
            if ctype == "application/json":
                try:
                    body = await request.json()
                except ValueError as exc:
                    raise _bad("can't parse JSON object") from exc
                if not isinstance(body, dict):
                    raise _bad("can't parse JSON object")
                for key, value in body.items():
                    params[key] = _normalize(key, value)
            elif ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
                form = await request.post()
                for key, field_value in form.items():
                    if isinstance(field_value, web.FileField):
                        files[key] = UploadedFile(
                            field_name=key,
                            filename=field_value.filename,
                            content_type=field_value.content_type,
                            data=field_value.file.read(),
                        )
                    elif isinstance(field_value, bytes | bytearray):
                        params[key] = _normalize(key, bytes(field_value).decode("utf-8"))
                    else:
                        params[key] = _normalize(key, field_value)
        for key, upload in files.items():
            params.setdefault(key, upload)
        return params, files

    async def _process(self, call: ApiCall, token: str) -> None:
        if token != self.token:
            raise TelegramApiError(401, "Unauthorized")
        lower = call.method.lower()
        custom = self._handlers.get(lower)
        builtin = getattr(self, f"_api_{lower}", None)
        if custom is None and builtin is None and lower not in _TRUE_METHODS:
            raise TelegramApiError(404, "Not Found")
        if lower != "getupdates" and self.call_delay > 0:
            await asyncio.sleep(self.call_delay)
        params = call.params
        self._check_faults(lower, params)
        if lower.startswith(_ACCESS_PREFIXES) or "chat_id" in params:
            self._check_access(lower, params)
        self._check_rate(lower, params)
        if custom is not None:
            result = custom(params)
            if inspect.isawaitable(result):
                result = await result
        elif builtin is not None:
            result = builtin(params, call.files)
            if inspect.isawaitable(result):
                result = await result
        else:
            result = True
        call.response = result

    # ---------------------------------------------------------------- checks

    def _check_faults(self, lower: str, params: JSON) -> None:
        for rule in self._fail_rules:
            if rule.method not in ("*", lower):
                continue
            if rule.chat_id is not None and params.get("chat_id") != rule.chat_id:
                continue
            if rule.times is not None:
                rule.times -= 1
                if rule.times <= 0:
                    self._fail_rules.remove(rule)
            error = TelegramApiError(rule.error_code, rule.description, rule.parameters)
            error.raw_body = rule.body
            raise error

    def _resolve_chat(self, chat_id: Any) -> int:
        if isinstance(chat_id, int) and not isinstance(chat_id, bool):
            return chat_id
        if isinstance(chat_id, str) and chat_id.startswith("@"):
            numeric = self._usernames.get(chat_id[1:].lower())
            if numeric is None:
                if self.strict_initiation:
                    raise _bad("chat not found")
                numeric = self.allow_chat(chat_id)
            return numeric
        if chat_id is None or chat_id == "":
            raise _bad("chat_id is empty")
        raise _bad("chat not found")

    def _check_access(self, lower: str, params: JSON) -> None:
        if "chat_id" not in params:
            return
        chat_id = self._resolve_chat(params["chat_id"])
        if chat_id in self._blocked and lower.startswith(_ACCESS_PREFIXES):
            raise TelegramApiError(403, "Forbidden: bot was blocked by the user")
        if self.strict_initiation and chat_id not in self._known_chats:
            if chat_id > 0 and lower.startswith(_ACCESS_PREFIXES):
                raise TelegramApiError(
                    403, "Forbidden: bot can't initiate conversation with a user"
                )
            raise _bad("chat not found")

    def _check_rate(self, lower: str, params: JSON) -> None:
        if not lower.startswith(_RATE_LIMITED_PREFIXES):
            return
        now = asyncio.get_running_loop().time()
        windows: list[tuple[deque[float], int, float]] = []
        if self.rate_limit is not None:
            windows.append((self._rate_global, *self.rate_limit))
        chat_id = params.get("chat_id")
        if self.per_chat_rate_limit is not None and isinstance(chat_id, int | str):
            windows.append((self._rate_chat[chat_id], *self.per_chat_rate_limit))
        for times, max_calls, window in windows:
            while times and times[0] <= now - window:
                times.popleft()
            if len(times) >= max_calls:
                retry_after = max(1, math.ceil(times[0] + window - now))
                self.stats["rate_limited"] += 1
                raise TelegramApiError(
                    429,
                    f"Too Many Requests: retry after {retry_after}",
                    {"retry_after": retry_after},
                )
        for times, _, _ in windows:
            times.append(now)

    # ---------------------------------------------------------------- helpers

    def _bot_user(self) -> JSON:
        return {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": self.bot_first_name,
            "username": self.bot_username,
        }

    def _chat_dict(self, chat_id: int) -> JSON:
        known = self._chats.get(chat_id)
        if known is not None:
            return dict(known)
        if chat_id > 0:
            user = self._users.get(chat_id, {})
            chat: JSON = {"id": chat_id, "type": "private"}
            chat["first_name"] = user.get("first_name", "User")
            if "username" in user:
                chat["username"] = user["username"]
            return chat
        return {"id": chat_id, "type": "supergroup", "title": "Group"}

    def _require_chat(self, params: JSON) -> int:
        if "chat_id" not in params:
            raise _bad("chat_id is empty")
        return self._resolve_chat(params["chat_id"])

    def _require_message_id(self, params: JSON, key: str = "message_id") -> int:
        value = params.get(key)
        if not isinstance(value, int):
            raise _bad("message identifier is not specified")
        return value

    def _is_bot_message(self, message: JSON) -> bool:
        return (message.get("from") or {}).get("id") == self.bot_id

    def _format_text(
        self,
        params: JSON,
        key: str,
        *,
        parse_mode_key: str,
        entities_key: str,
        limit: int,
        too_long: str,
        required: bool,
    ) -> tuple[str, list[JSON]]:
        raw = params.get(key)
        if raw is None:
            raw = ""
        if not isinstance(raw, str):
            raw = str(raw)
        parse_mode = params.get(parse_mode_key)
        entities: list[JSON] = []
        if isinstance(parse_mode, str) and parse_mode:
            mode = parse_mode.lower()
            if mode == "html":
                try:
                    text, entities = parse_html(raw)
                except HtmlParseError as exc:
                    raise _bad(f"can't parse entities: {exc}") from exc
            elif mode in ("markdown", "markdownv2"):
                text = raw  # not parsed by the fake
            else:
                raise _bad("unsupported parse_mode")
        else:
            text = raw
            given = params.get(entities_key)
            if isinstance(given, list):
                entities = [e for e in given if isinstance(e, dict)]
        text, entities = _strip_text(text, entities)
        if required and not text:
            raise _bad("message text is empty")
        if utf16_len(text) > limit:
            raise _bad(too_long)
        return text, entities

    def _message_text(self, params: JSON) -> tuple[str, list[JSON]]:
        return self._format_text(
            params,
            "text",
            parse_mode_key="parse_mode",
            entities_key="entities",
            limit=4096,
            too_long="message is too long",
            required=True,
        )

    def _caption(self, params: JSON) -> tuple[str, list[JSON]]:
        return self._format_text(
            params,
            "caption",
            parse_mode_key="parse_mode",
            entities_key="caption_entities",
            limit=1024,
            too_long="message caption is too long",
            required=False,
        )

    def _check_markup(self, markup: Any) -> JSON | None:
        """Validate reply_markup; return it if it is an inline keyboard (echoed in messages)."""
        if markup is None:
            return None
        if not isinstance(markup, dict):
            raise _bad("can't parse reply keyboard markup JSON object")
        if "inline_keyboard" not in markup:
            return None  # reply keyboards etc. are accepted but not part of the Message
        rows = markup["inline_keyboard"]
        if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
            raise _bad(
                'can\'t parse inline keyboard markup: field "inline_keyboard" must be an '
                "Array of Arrays"
            )
        for row in rows:
            for button in row:
                if not isinstance(button, dict) or not isinstance(button.get("text"), str):
                    raise _bad(
                        'can\'t parse inline keyboard button: Field "text" must be of type String'
                    )
                if not any(k in button for k in _BUTTON_ACTIONS):
                    raise _bad("BUTTON_TYPE_INVALID")
                if "callback_data" in button:
                    data = button["callback_data"]
                    if not isinstance(data, str) or not data or len(data.encode()) > 64:
                        raise _bad("BUTTON_DATA_INVALID")
                if "url" in button and not _valid_button_url(button["url"]):
                    raise _bad("BUTTON_URL_INVALID")
        return copy.deepcopy(markup)

    def _reply_target(self, chat_id: int, params: JSON) -> JSON | None:
        reply = params.get("reply_parameters")
        allow = bool(params.get("allow_sending_without_reply"))
        message_id: Any = None
        if isinstance(reply, dict):
            message_id = reply.get("message_id")
            allow = allow or bool(reply.get("allow_sending_without_reply"))
        elif params.get("reply_to_message_id") is not None:
            message_id = params["reply_to_message_id"]
        if message_id is None:
            return None
        target = (
            self._store.get(chat_id, {}).get(message_id) if isinstance(message_id, int) else None
        )
        if target is None:
            if allow:
                return None
            raise _bad("message to be replied not found")
        target = copy.deepcopy(target)
        target.pop("reply_to_message", None)
        return target

    def _new_message(self, chat_id: int, params: JSON) -> JSON:
        message: JSON = {
            "message_id": 0,
            "from": self._bot_user(),
            "chat": self._chat_dict(chat_id),
            "date": int(time.time()),
        }
        if isinstance(params.get("message_thread_id"), int):
            message["message_thread_id"] = params["message_thread_id"]
        reply_to = self._reply_target(chat_id, params)
        if reply_to is not None:
            message["reply_to_message"] = reply_to
        return message

    def _save(self, chat_id: int, message: JSON, markup: JSON | None) -> JSON:
        if markup is not None:
            message["reply_markup"] = markup
        message["message_id"] = self._take_message_id(chat_id)
        self._store[chat_id][message["message_id"]] = message
        return copy.deepcopy(message)

    # ---------------------------------------------------------------- files

    def _new_file(
        self,
        kind: str,
        *,
        data: bytes | None = None,
        filename: str | None = None,
        mime_type: str | None = None,
        url: str | None = None,
    ) -> FileRecord:
        n = next(self._file_counter)
        prefix = _FILE_ID_PREFIX.get(kind, "BQAC")
        record = FileRecord(
            file_id=f"{prefix}FakeFile{n:06d}{kind.replace('_', '')}",
            file_unique_id=f"AQAD{n:06d}",
            kind=kind,
            data=data,
            filename=filename,
            mime_type=mime_type or _DEFAULT_MIME.get(kind, "application/octet-stream"),
            url=url,
        )
        self._files[record.file_id] = record
        if kind == "photo":
            size = len(data) if data is not None else None
            sizes: list[JSON] = []
            for i, dim in enumerate((90, 320, 800)):
                size_id = record.file_id if dim == 800 else f"{record.file_id}s{i}"
                photo: JSON = {
                    "file_id": size_id,
                    "file_unique_id": f"{record.file_unique_id}{i}",
                    "width": dim,
                    "height": dim,
                }
                if size is not None:
                    photo["file_size"] = size if dim == 800 else max(1, size * i // 3)
                sizes.append(photo)
                self._files[size_id] = record
            record.photo_sizes = sizes
        return record

    def _media_object(self, record: FileRecord, kind: str) -> Any:
        base: JSON = {"file_id": record.file_id, "file_unique_id": record.file_unique_id}
        if record.data is not None:
            base["file_size"] = len(record.data)
        if kind == "photo":
            if record.photo_sizes is not None:
                return copy.deepcopy(record.photo_sizes)
            return [{**base, "width": 800, "height": 800}]
        if kind == "sticker":
            return {**base, "type": "regular", "width": 512, "height": 512,
                    "is_animated": False, "is_video": False}  # fmt: skip
        if kind in ("video", "animation"):
            base.update(width=640, height=360, duration=1)
        elif kind in ("audio", "voice"):
            base["duration"] = 1
        elif kind == "video_note":
            base.update(length=240, duration=1)
        if kind in ("document", "video", "animation", "audio") and record.filename:
            base["file_name"] = record.filename
        if kind != "video_note" and record.mime_type:
            base["mime_type"] = record.mime_type
        return base

    def _resolve_media(
        self, kind: str, value: Any, files: dict[str, UploadedFile], param: str
    ) -> FileRecord:
        if isinstance(value, str) and value.startswith("attach://"):
            upload = files.get(value[len("attach://") :])
            if upload is None:
                raise _bad(f"file for {param} not found in the request (attach://)")
            value = upload
        if isinstance(value, UploadedFile):
            if not value.data:
                raise _bad("file must be non-empty")
            return self._new_file(
                kind, data=value.data, filename=value.filename, mime_type=value.content_type
            )
        if not isinstance(value, str) or not value:
            raise _bad(f"there is no {param} in the request")
        record = self._files.get(value)
        if record is not None:
            return record
        if re.match(r"https?://", value, re.IGNORECASE):
            name = urlsplit(value).path.rsplit("/", 1)[-1] or None
            return self._new_file(kind, filename=name, url=value)
        raise _bad("wrong file identifier/HTTP URL specified")

    # ---------------------------------------------------------------- API methods

    def _api_getme(self, params: JSON, files: dict[str, UploadedFile]) -> JSON:
        return {
            **self._bot_user(),
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    def _api_logout(self, params: JSON, files: dict[str, UploadedFile]) -> bool:
        return True

    def _api_close(self, params: JSON, files: dict[str, UploadedFile]) -> bool:
        return True

    def _confirm(self, offset: Any) -> None:
        if not isinstance(offset, int) or offset == 0:
            return
        if offset < 0:
            keep = self._pending[offset:]
            dropped = self._pending[: len(self._pending) - len(keep)]
        else:
            keep = [u for u in self._pending if int(u["update_id"]) >= offset]
            dropped = [u for u in self._pending if int(u["update_id"]) < offset]
            self.confirmed_update_id = max(self.confirmed_update_id, offset - 1)
        for update in dropped:
            self.confirmed_update_id = max(self.confirmed_update_id, int(update["update_id"]))
        self._pending = keep
        self._notify()

    async def _api_getupdates(self, params: JSON, files: dict[str, UploadedFile]) -> list[JSON]:
        if self.webhook is not None and self.webhook.get("url"):
            raise TelegramApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        limit = params.get("limit")
        limit = min(max(limit, 1), 100) if isinstance(limit, int) else 100
        try:
            timeout = max(float(params.get("timeout") or 0), 0.0)
        except (TypeError, ValueError):
            timeout = 0.0
        allowed = params.get("allowed_updates")
        if isinstance(allowed, list):
            self.allowed_updates = allowed
        self._confirm(params.get("offset"))
        self._poll_generation += 1
        generation = self._poll_generation
        if not self._pending and timeout > 0 and not self._stopping and not self._gone:
            self._waiting_polls += 1
            self._notify()
            try:
                await self._wait_until(
                    lambda: (
                        bool(self._pending)
                        or self._stopping
                        or self._gone
                        or self._poll_generation != generation
                    ),
                    timeout,
                )
            finally:
                self._waiting_polls -= 1
                self._notify()
        if self._poll_generation != generation:
            raise TelegramApiError(
                409,
                "Conflict: terminated by other getUpdates request; make sure that only one bot "
                "instance is running",
            )
        batch = self._pending[:limit]
        for update in batch:
            self._fetched_ids.add(int(update["update_id"]))
            query = update.get("callback_query")
            if isinstance(query, dict) and query.get("id") not in self._delivered_callbacks:
                self._delivered_callbacks.append(str(query.get("id")))
        return copy.deepcopy(batch)

    def _api_setwebhook(self, params: JSON, files: dict[str, UploadedFile]) -> bool:
        url = params.get("url")
        if not isinstance(url, str):
            raise _bad("bad webhook: URL must be specified")
        if url and not url.lower().startswith("https://"):
            raise _bad("bad webhook: An HTTPS URL must be provided for webhook")
        if params.get("drop_pending_updates"):
            self._drop_pending()
        if not url:
            self.webhook = None
            return True
        self.webhook = {
            "url": url,
            "secret_token": params.get("secret_token"),
            "allowed_updates": params.get("allowed_updates"),
            "max_connections": params.get("max_connections", 40),
            "ip_address": params.get("ip_address"),
            "has_custom_certificate": "certificate" in params,
        }
        return True

    def _drop_pending(self) -> None:
        for update in self._pending:
            self.confirmed_update_id = max(self.confirmed_update_id, int(update["update_id"]))
        self._pending = []
        self._notify()

    def _api_deletewebhook(self, params: JSON, files: dict[str, UploadedFile]) -> bool:
        if params.get("drop_pending_updates"):
            self._drop_pending()
        self.webhook = None
        return True

    def _api_getwebhookinfo(self, params: JSON, files: dict[str, UploadedFile]) -> JSON:
        hook = self.webhook or {}
        info: JSON = {
            "url": hook.get("url", ""),
            "has_custom_certificate": bool(hook.get("has_custom_certificate", False)),
            "pending_update_count": len(self._pending),
        }
        if hook:
            info["max_connections"] = hook.get("max_connections") or 40
            if hook.get("allowed_updates") is not None:
                info["allowed_updates"] = hook["allowed_updates"]
            if hook.get("ip_address"):
                info["ip_address"] = hook["ip_address"]
        return info

    @staticmethod
    def _scope_key(scope: Any) -> str:
        return json.dumps(scope if isinstance(scope, dict) else {"type": "default"}, sort_keys=True)

    def _api_setmycommands(self, params: JSON, files: dict[str, UploadedFile]) -> bool:
        commands = params.get("commands")
        if not isinstance(commands, list):
            raise _bad("can't parse commands JSON object")
        if len(commands) > 100:
            raise _bad("too many commands")
        for command in commands:
            if not isinstance(command, dict):
                raise _bad("can't parse BotCommand JSON object")
            name = command.get("command")
            if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9_]{1,32}", name):
                raise _bad("BOT_COMMAND_INVALID")
            desc = command.get("description")
            if not isinstance(desc, str) or not 1 <= len(desc.strip()) <= 256:
                raise _bad("command description is empty" if not desc else
                           "command description is too long")  # fmt: skip
        key = (self._scope_key(params.get("scope")), str(params.get("language_code") or ""))
        if commands:
            self.commands[key] = copy.deepcopy(commands)
        else:
            self.commands.pop(key, None)
        return True

    def _api_deletemycommands(self, params: JSON, files: dict[str, UploadedFile]) -> bool:
        key = (self._scope_key(params.get("scope")), str(params.get("language_code") or ""))
        self.commands.pop(key, None)
        return True

    def _api_getmycommands(self, params: JSON, files: dict[str, UploadedFile]) -> list[JSON]:
        key = (self._scope_key(params.get("scope")), str(params.get("language_code") or ""))
        return copy.deepcopy(self.commands.get(key, []))

    def _set_localized(self, store: dict[str, str], params: JSON, key: str, limit: int) -> bool:
        value = params.get(key) or ""
        if not isinstance(value, str):
            value = str(value)
        if len(value) > limit:
            raise _bad(f"{key} is too long")
        lang = str(params.get("language_code") or "")
        if value:
            store[lang] = value
        else:
            store.pop(lang, None)
        return True

    def _api_setmydescription(self, params: JSON, files: dict[str, UploadedFile]) -> bool:
        return self._set_localized(self.descriptions, params, "description", 512)

    def _api_getmydescription(self, params: JSON, files: dict[str, UploadedFile]) -> JSON:
        lang = str(params.get("language_code") or "")
        return {"description": self.descriptions.get(lang, self.descriptions.get("", ""))}

    def _api_setmyshortdescription(self, params: JSON, files: dict[str, UploadedFile]) -> bool:
        return self._set_localized(self.short_descriptions, params, "short_description", 120)

    def _api_getmyshortdescription(self, params: JSON, files: dict[str, UploadedFile]) -> JSON:
        lang = str(params.get("language_code") or "")
        return {
            "short_description": self.short_descriptions.get(
                lang, self.short_descriptions.get("", "")
            )
        }

    def _api_setmyname(self, params: JSON, files: dict[str, UploadedFile]) -> bool:
        return self._set_localized(self.bot_names, params, "name", 64)

    def _api_getmyname(self, params: JSON, files: dict[str, UploadedFile]) -> JSON:
        lang = str(params.get("language_code") or "")
        return {"name": self.bot_names.get(lang, self.bot_names.get("", self.bot_first_name))}

    def _api_setchatmenubutton(self, params: JSON, files: dict[str, UploadedFile]) -> bool:
        button = params.get("menu_button")
        if button is not None and (not isinstance(button, dict) or "type" not in button):
            raise _bad("can't parse menu button JSON object")
        chat_id = params.get("chat_id")
        key = chat_id if isinstance(chat_id, int) else None
        self.menu_buttons[key] = copy.deepcopy(button) if button else {"type": "default"}
        return True

    def _api_getchatmenubutton(self, params: JSON, files: dict[str, UploadedFile]) -> JSON:
        chat_id = params.get("chat_id")
        button = self.menu_buttons.get(chat_id if isinstance(chat_id, int) else None)
        if button is None or button.get("type") == "default":
            button = self.menu_buttons.get(None)
        if button is None or button.get("type") == "default":
            button = {"type": "commands"}
        return copy.deepcopy(button)

    def _api_getchat(self, params: JSON, files: dict[str, UploadedFile]) -> JSON:
        chat_id = self._require_chat(params)
        if chat_id not in self._known_chats and self.strict_initiation:
            raise _bad("chat not found")
        return {
            **self._chat_dict(chat_id),
            "accent_color_id": 0,
            "max_reaction_count": 11,
            "accepted_gift_types": {
                "unlimited_gifts": False,
                "limited_gifts": False,
                "unique_gifts": False,
                "premium_subscription": False,
                "gifts_from_channels": False,
            },
        }

    def _api_getchatmember(self, params: JSON, files: dict[str, UploadedFile]) -> JSON:
        self._require_chat(params)
        user_id = params.get("user_id")
        if not isinstance(user_id, int):
            raise _bad("user_id is empty" if user_id is None else "invalid user_id specified")
        if user_id == self.bot_id:
            return {"status": "member", "user": self._bot_user()}
        user = self._users.get(user_id)
        if user is None:
            raise _bad("user not found")
        return {"status": "member", "user": dict(user)}

    def _api_getfile(self, params: JSON, files: dict[str, UploadedFile]) -> JSON:
        file_id = params.get("file_id")
        record = self._files.get(file_id) if isinstance(file_id, str) else None
        if record is None:
            raise _bad("invalid file_id")
        if record.file_path is None:
            ext = ""
            if record.filename and "." in record.filename:
                ext = "." + record.filename.rsplit(".", 1)[1]
            record.file_path = f"{record.kind}s/file_{record.file_unique_id}{ext}"
            self._files_by_path[record.file_path] = record
        result: JSON = {
            "file_id": file_id,
            "file_unique_id": record.file_unique_id,
            "file_path": record.file_path,
        }
        if record.data is not None:
            result["file_size"] = len(record.data)
        return result

    def _api_sendmessage(self, params: JSON, files: dict[str, UploadedFile]) -> JSON:
        chat_id = self._require_chat(params)
        text, entities = self._message_text(params)
        markup = self._check_markup(params.get("reply_markup"))
        message = self._new_message(chat_id, params)
        message["text"] = text
        if entities:
            message["entities"] = entities
        return self._save(chat_id, message, markup)

    def _send_media(self, kind: str, params: JSON, files: dict[str, UploadedFile]) -> JSON:
        chat_id = self._require_chat(params)
        caption, caption_entities = self._caption(params)
        markup = self._check_markup(params.get("reply_markup"))
        record = self._resolve_media(kind, params.get(kind), files, kind)
        message = self._new_message(chat_id, params)
        message[kind] = self._media_object(record, kind)
        if caption and kind not in ("sticker", "video_note"):
            message["caption"] = caption
            if caption_entities:
                message["caption_entities"] = caption_entities
        if params.get("has_spoiler"):
            message["has_media_spoiler"] = True
        return self._save(chat_id, message, markup)

    def _api_sendphoto(self, params: JSON, files: dict[str, UploadedFile]) -> JSON:
        return self._send_media("photo", params, files)

    def _api_senddocument(self, params: JSON, files: dict[str, UploadedFile]) -> JSON:
        return self._send_media("document", params, files)

    def _api_sendvideo(self, params: JSON, files: dict[str, UploadedFile]) -> JSON:
        return self._send_media("video", params, files)

    def _api_sendaudio(self, params: JSON, files: dict[str, UploadedFile]) -> JSON:
        return self._send_media("audio", params, files)

    def _api_sendvoice(self, params: JSON, files: dict[str, UploadedFile]) -> JSON:
        return self._send_media("voice", params, files)

    def _api_sendanimation(self, params: JSON, files: dict[str, UploadedFile]) -> JSON:
        return self._send_media("animation", params, files)

    def _api_sendsticker(self, params: JSON, files: dict[str, UploadedFile]) -> JSON:
        return self._send_media("sticker", params, files)

    def _api_sendvideonote(self, params: JSON, files: dict[str, UploadedFile]) -> JSON:
        return self._send_media("video_note", params, files)

    def _api_sendmediagroup(self, params: JSON, files: dict[str, UploadedFile]) -> list[JSON]:
        chat_id = self._require_chat(params)
        media = params.get("media")
        if not isinstance(media, list) or not 2 <= len(media) <= 10:
            raise _bad("wrong number of media in the album; must be between 2 and 10")
        group_id = str(10_000_000_000_000_000 + next(self._media_group_counter))
        prepared: list[tuple[str, FileRecord, JSON]] = []
        for item in media:
            kind = item.get("type") if isinstance(item, dict) else None
            if kind not in ("photo", "video", "document", "audio"):
                raise _bad("can't parse InputMedia: media type is invalid")
            assert isinstance(item, dict) and isinstance(kind, str)
            record = self._resolve_media(kind, item.get("media"), files, "media")
            caption_params = {
                "caption": item.get("caption"),
                "parse_mode": item.get("parse_mode"),
                "caption_entities": item.get("caption_entities"),
            }
            prepared.append((kind, record, caption_params))
        results = []
        for kind, record, caption_params in prepared:
            caption, caption_entities = self._caption(caption_params)
            message = self._new_message(chat_id, params)
            message["media_group_id"] = group_id
            message[kind] = self._media_object(record, kind)
            if caption:
                message["caption"] = caption
                if caption_entities:
                    message["caption_entities"] = caption_entities
            results.append(self._save(chat_id, message, None))
        return results

    def _api_sendchataction(self, params: JSON, files: dict[str, UploadedFile]) -> bool:
        self._require_chat(params)
        if params.get("action") not in _CHAT_ACTIONS:
            raise _bad("wrong parameter action in request")
        return True

    def _source_message(self, params: JSON, not_found: str) -> JSON:
        from_chat = self._resolve_chat(params.get("from_chat_id"))
        message_id = self._require_message_id(params)
        source = self._store.get(from_chat, {}).get(message_id)
        if source is None:
            raise _bad(not_found)
        return source

    _CONTENT_KEYS: Final = (
        "text", "entities", "caption", "caption_entities", "has_media_spoiler", *_MEDIA_KINDS,
    )  # fmt: skip

    def _api_copymessage(self, params: JSON, files: dict[str, UploadedFile]) -> JSON:
        chat_id = self._require_chat(params)
        source = self._source_message(params, "message to copy not found")
        markup = self._check_markup(params.get("reply_markup"))
        message = self._new_message(chat_id, params)
        for key in self._CONTENT_KEYS:
            if key in source:
                message[key] = copy.deepcopy(source[key])
        if "caption" in params:
            message.pop("caption", None)
            message.pop("caption_entities", None)
            caption, caption_entities = self._caption(params)
            if caption:
                message["caption"] = caption
                if caption_entities:
                    message["caption_entities"] = caption_entities
        saved = self._save(chat_id, message, markup)
        return {"message_id": saved["message_id"]}

    def _api_forwardmessage(self, params: JSON, files: dict[str, UploadedFile]) -> JSON:
        chat_id = self._require_chat(params)
        source = self._source_message(params, "message to forward not found")
        message = self._new_message(chat_id, {})
        for key in self._CONTENT_KEYS:
            if key in source:
                message[key] = copy.deepcopy(source[key])
        source_chat = source.get("chat") or {}
        if source_chat.get("type") == "channel":
            origin: JSON = {"type": "channel", "chat": source_chat,
                            "message_id": source["message_id"]}  # fmt: skip
        else:
            origin = {"type": "user", "sender_user": source.get("from")}
        origin["date"] = source.get("date", int(time.time()))
        message["forward_origin"] = origin
        return self._save(chat_id, message, None)

    def _editable(self, params: JSON) -> tuple[int, JSON]:
        chat_id = self._require_chat(params)
        message_id = self._require_message_id(params)
        message = self._store.get(chat_id, {}).get(message_id)
        if message is None:
            raise _bad("message to edit not found")
        if not self._is_bot_message(message):
            raise _bad("message can't be edited")
        return chat_id, message

    def _apply_edit(self, message: JSON, changes: JSON, markup: JSON | None) -> JSON:
        current = {k: message.get(k) for k in changes}
        if current == changes and message.get("reply_markup") == markup:
            raise _bad(_NOT_MODIFIED)
        for key, value in changes.items():
            if value in (None, [], ""):
                message.pop(key, None)
            else:
                message[key] = value
        if markup is None:
            message.pop("reply_markup", None)
        else:
            message["reply_markup"] = markup
        message["edit_date"] = int(time.time())
        return copy.deepcopy(message)

    def _api_editmessagetext(self, params: JSON, files: dict[str, UploadedFile]) -> JSON | bool:
        text, entities = self._message_text(params)
        markup = self._check_markup(params.get("reply_markup"))
        if params.get("inline_message_id"):
            return True
        _, message = self._editable(params)
        if "text" not in message:
            raise _bad("there is no text in the message to edit")
        return self._apply_edit(message, {"text": text, "entities": entities or None}, markup)

    def _api_editmessagecaption(self, params: JSON, files: dict[str, UploadedFile]) -> JSON | bool:
        caption, entities = self._caption(params)
        markup = self._check_markup(params.get("reply_markup"))
        if params.get("inline_message_id"):
            return True
        _, message = self._editable(params)
        if "text" in message:
            raise _bad("there is no caption in the message to edit")
        changes = {"caption": caption or None, "caption_entities": entities or None}
        return self._apply_edit(message, changes, markup)

    def _api_editmessagereplymarkup(
        self, params: JSON, files: dict[str, UploadedFile]
    ) -> JSON | bool:
        markup = self._check_markup(params.get("reply_markup"))
        if params.get("inline_message_id"):
            return True
        _, message = self._editable(params)
        return self._apply_edit(message, {}, markup)

    def _api_deletemessage(self, params: JSON, files: dict[str, UploadedFile]) -> bool:
        chat_id = self._require_chat(params)
        message_id = self._require_message_id(params)
        if self._store.get(chat_id, {}).pop(message_id, None) is None:
            raise _bad("message to delete not found")
        return True

    def _api_deletemessages(self, params: JSON, files: dict[str, UploadedFile]) -> bool:
        chat_id = self._require_chat(params)
        ids = params.get("message_ids")
        if not isinstance(ids, list) or not 1 <= len(ids) <= 100:
            raise _bad("message_ids must be a non-empty array of at most 100 identifiers")
        for message_id in ids:
            self._store.get(chat_id, {}).pop(message_id, None)
        return True

    def _api_answercallbackquery(self, params: JSON, files: dict[str, UploadedFile]) -> bool:
        query_id = params.get("callback_query_id")
        if not isinstance(query_id, str) or not query_id:
            raise _bad("QUERY_ID_INVALID")
        if query_id not in self._issued_callbacks or query_id in self.answered_callback_ids:
            raise _bad(_QUERY_TOO_OLD)
        text = params.get("text")
        if isinstance(text, str) and len(text) > 200:
            raise _bad("MESSAGE_TOO_LONG")
        self.answered_callback_ids.append(query_id)
        self.callback_answers[query_id] = dict(params)
        return True
