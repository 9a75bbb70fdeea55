"""Keeping rendered HTML within Telegram's limits without breaking the markup."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

MESSAGE_LIMIT = 4096
CAPTION_LIMIT = 1024
ANSWER_LIMIT = 200
ELLIPSIS = "…"


def _units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


class _Tokens(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tokens: list[tuple[str, str, str]] = []  # (kind, raw, tag or text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tokens.append(("start", self.get_starttag_text() or f"<{tag}>", tag))

    def handle_endtag(self, tag: str) -> None:
        self.tokens.append(("end", f"</{tag}>", tag))

    def handle_data(self, data: str) -> None:
        self.tokens.append(("text", data, data))


def visible_length(markup: str) -> int:
    """Length of the text a user sees (tags removed, entities decoded), in UTF-16 units."""
    parser = _Tokens()
    parser.feed(markup)
    parser.close()
    return sum(_units(t[2]) for t in parser.tokens if t[0] == "text")


def truncate_html(markup: str, limit: int = MESSAGE_LIMIT) -> str:
    """Cut Telegram HTML so that its visible text has at most `limit` UTF-16 units, closing
    the tags left open. Short text comes back unchanged."""
    parser = _Tokens()
    parser.feed(markup)
    parser.close()
    if sum(_units(t[2]) for t in parser.tokens if t[0] == "text") <= limit:
        return markup
    budget = limit - _units(ELLIPSIS)
    out: list[str] = []
    open_tags: list[str] = []
    for kind, raw, value in parser.tokens:
        if kind == "start":
            out.append(raw)
            open_tags.append(value)
        elif kind == "end":
            out.append(raw)
            if value in open_tags:
                del open_tags[len(open_tags) - 1 - open_tags[::-1].index(value)]
        else:
            size = _units(value)
            if size <= budget:
                out.append(html.escape(value, quote=False))
                budget -= size
                continue
            cut = value
            while cut and _units(cut) > budget:
                # A character is 1 or 2 units: drop half the excess in characters at least.
                cut = cut[: max(0, len(cut) - max(1, (_units(cut) - budget + 1) // 2))]
            out.append(html.escape(cut.rstrip(), quote=False) + ELLIPSIS)
            break
    out.extend(f"</{tag}>" for tag in reversed(open_tags))
    return "".join(out)


def shorten(text: str, limit: int) -> str:
    """Plain text (button labels, callback answers) cut to `limit` characters."""
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + ELLIPSIS
