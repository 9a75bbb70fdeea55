"""Templates render with trim_blocks: the newline after a block tag is dropped. A tag at the
end of a line of text would glue that line to the next one ("Wochenrückblick: an🔔 …")."""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.rendering import TEMPLATES_DIR, Renderer

#: A line that has text and ends with a block tag (`{% … %}`), where the tag does not keep
#: its newline (`+%}`).
_GLUING = re.compile(r"\S.*\{%-?[^%]*[^+]%\}$")
_TAG_ONLY = re.compile(r"^\s*(\{%.*?%\}\s*)+$")


def gluing_lines(text: str) -> list[tuple[int, str]]:
    lines = text.split("\n")
    found = []
    for number, (line, following) in enumerate(itertools.pairwise(lines), start=1):
        if _TAG_ONLY.match(line) or line.lstrip().startswith("{#"):
            continue
        if _GLUING.search(line) and following.strip() and not following.lstrip().startswith("{%"):
            found.append((number, line))
    return found


@pytest.mark.parametrize(
    "path", sorted(p for p in TEMPLATES_DIR.glob("*/*.html")), ids=lambda p: p.name
)
def test_no_line_is_glued_to_the_next(path: Path) -> None:
    assert gluing_lines(path.read_text(encoding="utf-8")) == []


def test_the_check_finds_a_glued_line_and_the_fix_keeps_it_apart() -> None:
    glued = "Digest: {% if on %}on{% else %}off{% endif %}\nNext line"
    kept = "Digest: {% if on %}on{% else %}off{% endif +%}\nNext line"
    assert gluing_lines(glued) == [(1, glued.split("\n")[0])]
    assert gluing_lines(kept) == []
    env = Renderer(ZoneInfo("Europe/Berlin")).env
    assert env.from_string(glued).render(on=True) == "Digest: onNext line"
    assert env.from_string(kept).render(on=True) == "Digest: on\nNext line"
