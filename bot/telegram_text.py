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
    if _units(markup) <= limit:
        # The visible text is never longer than its markup (tags go, entities shrink).
        return markup
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


# --------------------------------------------------------------------------- validating HTML

#: Telegram's HTML subset (https://core.telegram.org/bots/api#html-style).
HTML_TAGS = frozenset(
    {
        "b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler",
        "a", "code", "pre", "blockquote", "tg-emoji",
    }
)  # fmt: skip
#: Tags that cannot hold other tags (except <pre><code class="language-…">).
_NO_CHILDREN = frozenset({"code", "pre", "tg-emoji"})
_LINK_SCHEMES = ("http://", "https://", "tg://")
_NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_ENTITY = re.compile(r"&(?:([A-Za-z]+)|#([0-9]{1,8})|#[xX]([0-9a-fA-F]{1,8}));")
_TAG_NAME = re.compile(r"[A-Za-z][A-Za-z0-9-]*")
_ATTR_NAME = re.compile(r"[A-Za-z0-9_-]+")
_UNQUOTED = re.compile(r"[^\s>\"'=<`]+")
_SPACE = " \t\r\n"


class _Invalid(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _entity_at(text: str, pos: int, end: int) -> int:
    """The end of the character reference at text[pos] == "&"."""
    match = _ENTITY.match(text, pos, end)
    if match is None:
        raise _Invalid("bad_entity")
    name, dec, hexa = match.groups()
    if name is not None:
        if name not in _NAMED_ENTITIES:
            raise _Invalid(f"bad_entity:&{name};")
        return match.end()
    code = int(dec) if dec is not None else int(hexa, 16)
    if code == 0 or code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
        raise _Invalid("bad_entity")
    return match.end()


def _attr_value(text: str, start: int, end: int) -> str:
    out, i = [], start
    while i < end:
        amp = text.find("&", i, end)
        if amp < 0:
            out.append(text[i:end])
            break
        out.append(text[i:amp])
        i = _entity_at(text, amp, end)
        out.append(html.unescape(text[amp:i]))
    return "".join(out)


def _start_tag(text: str, pos: int) -> tuple[str, dict[str, str], int]:
    """Parse the start tag at text[pos] == "<": (name, attributes, end)."""
    match = _TAG_NAME.match(text, pos + 1)
    if match is None:
        raise _Invalid("stray_lt")
    name = match.group(0).lower()
    if name not in HTML_TAGS:
        raise _Invalid(f"unsupported_tag:{name}")
    attrs: dict[str, str] = {}
    j, n = match.end(), len(text)
    while True:
        k = j
        while k < n and text[k] in _SPACE:
            k += 1
        if k >= n:
            raise _Invalid(f"unfinished_tag:{name}")
        if text[k] == ">":
            return name, attrs, k + 1
        if k == j:  # attributes must be separated from the name and from each other
            raise _Invalid(f"unfinished_tag:{name}")
        attr = _ATTR_NAME.match(text, k)
        if attr is None:
            raise _Invalid(f"unfinished_tag:{name}")
        key, j = attr.group(0).lower(), attr.end()
        value = ""
        k = j
        while k < n and text[k] in _SPACE:
            k += 1
        if k < n and text[k] == "=":
            k += 1
            while k < n and text[k] in _SPACE:
                k += 1
            if k < n and text[k] in "\"'":
                close = text.find(text[k], k + 1)
                if close < 0:
                    raise _Invalid(f"unfinished_tag:{name}")
                value, j = _attr_value(text, k + 1, close), close + 1
            else:
                bare = _UNQUOTED.match(text, k)
                if bare is None:
                    raise _Invalid(f"unfinished_tag:{name}")
                value, j = _attr_value(text, k, bare.end()), bare.end()
        attrs[key] = value


def _check_tag(name: str, attrs: dict[str, str], stack: list[tuple[str, dict[str, str]]]) -> None:
    if name == "span" and attrs.get("class") != "tg-spoiler":
        raise _Invalid("bad_span")
    if name == "a":
        href = attrs.get("href", "").strip()
        if not href.lower().startswith(_LINK_SCHEMES) or len(href) <= len("tg://"):
            raise _Invalid("bad_link")
    if name == "tg-emoji" and not attrs.get("emoji-id", "").isdigit():
        raise _Invalid("bad_emoji")
    if not stack:
        return
    parent = stack[-1][0]
    if parent == "pre" and name == "code":
        return
    if parent in _NO_CHILDREN:
        raise _Invalid(f"bad_nesting:{name}")
    if name in ("a", "blockquote") and any(open_name == name for open_name, _ in stack):
        raise _Invalid(f"bad_nesting:{name}")


def validate_html(text: str) -> str | None:
    """None if Telegram shows `text` with parse mode HTML, else a short reason as
    "code" or "code:detail", e.g. "unsupported_tag:div", "not_closed:b", "bad_entity".

    Codes: stray_lt (a "<" that starts no tag), unsupported_tag, unfinished_tag,
    unexpected_end (a closing tag without its opening tag), not_closed, bad_entity ("&" that
    is not &lt; &gt; &amp; &quot; or a numeric reference), bad_link (<a> without an http(s)://
    or tg:// href), bad_span (span without class="tg-spoiler"), bad_emoji (tg-emoji without a
    numeric emoji-id), bad_nesting (a tag inside code, pre or tg-emoji, a link inside a link,
    a quote inside a quote)."""
    stack: list[tuple[str, dict[str, str]]] = []
    i, n = 0, len(text)
    try:
        while i < n:
            ch = text[i]
            if ch == "&":
                i = _entity_at(text, i, n)
            elif ch == ">":
                i += 1  # Telegram accepts a bare ">"
            elif ch != "<":
                nxt = [p for p in (text.find("<", i), text.find("&", i)) if p >= 0]
                i = min(nxt) if nxt else n
            elif text.startswith("</", i):
                match = _TAG_NAME.match(text, i + 2)
                if match is None:
                    raise _Invalid("stray_lt")
                name = match.group(0).lower()
                j = match.end()
                while j < n and text[j] in _SPACE:
                    j += 1
                if j >= n or text[j] != ">":
                    raise _Invalid(f"unfinished_tag:{name}")
                if not stack or stack[-1][0] != name:
                    if any(open_name == name for open_name, _ in stack):
                        raise _Invalid(f"not_closed:{stack[-1][0]}")
                    raise _Invalid(f"unexpected_end:{name}")
                stack.pop()
                i = j + 1
            else:
                name, attrs, i = _start_tag(text, i)
                _check_tag(name, attrs, stack)
                stack.append((name, attrs))
    except _Invalid as problem:
        return problem.reason
    if stack:
        return f"not_closed:{stack[-1][0]}"
    return None
