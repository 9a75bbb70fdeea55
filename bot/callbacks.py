"""Callback data: short, strictly parsed, at most 64 bytes.

Every button's data names one route and its arguments (`sup:17:1:L0s0` = set support of
item 17 to 1, coming from the item list of all fields sorted by support, page 0). State-
changing buttons carry the state they set, never "toggle", so a double tap or a replayed
update leaves what the resident meant. Anything that does not parse is stale or forged and
changes nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_BYTES = 64

_ID = r"\d{1,9}"
_PAGE = r"\d{1,4}"
_FLAG = r"[01]"
_SORT = r"[snd]"
#: Where an item card was opened from, so that "Back" returns there:
#: L<field id><sort><page> item list (field 0 = all) · S<session id> session card ·
#: M<page> my items · Q<page> search results · G<goal id> goal card · H main menu.
ORIGIN = rf"(?:L{_ID}{_SORT}{_PAGE}|S{_ID}|M{_PAGE}|Q{_PAGE}|G{_ID}|H)"
#: Where a goal card was opened from: P<page> goals menu · I<item id> item card · H main menu.
GOAL_VIA = rf"(?:P{_PAGE}|I{_ID}|H)"

SORT_CODES = {"s": "support", "n": "new", "d": "discussed"}
SORT_LETTERS = {v: k for k, v in SORT_CODES.items()}


@dataclass(frozen=True)
class Args:
    values: dict[str, str]

    def number(self, name: str) -> int:
        return int(self.values[name])

    def text(self, name: str) -> str:
        return self.values[name]

    def flag(self, name: str) -> bool:
        return self.values[name] == "1"


class Route:
    def __init__(self, verb: str, *fields: tuple[str, str]) -> None:
        self.verb = verb
        self.names = tuple(name for name, _ in fields)
        body = "".join(f":(?P<{name}>{rx})" for name, rx in fields)
        self.regex = re.compile(rf"^{re.escape(verb)}{body}\Z", re.ASCII)

    def build(self, **values: object) -> str:
        data = ":".join([self.verb, *(str(values[name]) for name in self.names)])
        if len(data.encode()) > MAX_BYTES or not self.regex.match(data):
            raise ValueError(f"invalid callback data {data!r}")
        return data

    def parse(self, data: str | None) -> Args | None:
        match = self.regex.match(data or "")
        return Args(match.groupdict()) if match else None


MENU = Route("m")
NOOP = Route("x")
SESSIONS = Route("sl", ("page", _PAGE))
SESSION = Route("s", ("sid", _ID))
ITEMS_MENU = Route("if")
ITEMS = Route("il", ("fid", _ID), ("sort", _SORT), ("page", _PAGE))
ITEM = Route("i", ("iid", _ID), ("origin", ORIGIN))
SUPPORT = Route("sup", ("iid", _ID), ("on", _FLAG), ("origin", ORIGIN))
FOLLOW = Route("fol", ("iid", _ID), ("on", _FLAG), ("origin", ORIGIN))
COMMENT = Route("c", ("iid", _ID), ("origin", ORIGIN))
COMMENTS = Route("cl", ("iid", _ID), ("page", _PAGE), ("origin", ORIGIN))
CANCEL = Route("cx")
SEARCH_PROMPT = Route("qs")
SEARCH = Route("q", ("page", _PAGE))
MY_ITEMS = Route("my", ("page", _PAGE))
SETTINGS = Route("st")
LANGUAGE_MENU = Route("stl")
LANGUAGE = Route("stl", ("lang", r"[a-z]{2}"))
DIGEST = Route("std", ("on", _FLAG))
NOTIFY_MENU = Route("stm")
NOTIFY = Route("stm", ("mode", r"instant|digest|off"))
NAME_PROMPT = Route("stn")
NAME_CLEAR = Route("stn", ("clear", r"-"))
#: Moderators decide: a = approve (reported comment: restore), r = reject (asks for an
#: optional reason; reported comment: remove), b = ban the author (and reject).
MODERATE = Route("mod", ("decision", r"[arb]"), ("cid", _ID))
MODERATE_PROPOSAL = Route("mop", ("decision", r"[arb]"), ("pid", _ID))
MODERATE_REPORTED = Route("moh", ("decision", r"[arb]"), ("cid", _ID))
#: Reject without a reason: c comment, p proposal, h reported comment; `oid` its id.
NO_REASON = Route("mnr", ("kind", r"[cph]"), ("oid", _ID))
#: Report an approved comment (from page `page` of its item's comments).
REPORT = Route("rp", ("cid", _ID), ("page", _PAGE), ("origin", ORIGIN))
#: A resident's proposal: start it, choose its action field, send it.
PROPOSE = Route("pp")
PROPOSAL_FIELD = Route("ppf", ("draft", _ID), ("fid", _ID))
PROPOSAL_SEND = Route("pps", ("draft", _ID))
#: A moderator's announcement draft (`draft` tells an old keyboard from the current one).
#: Audience codes: all · L<language> · F<field id> · I<item id> · item (ask for the key) ·
#: fields (choose one) · menu (the audience menu).
BROADCAST_AUDIENCE = Route(
    "bca", ("draft", _ID), ("aud", rf"all|item|fields|menu|L[a-z]{{2}}|F{_ID}|I{_ID}")
)
BROADCAST_SEND = Route("bcs", ("draft", _ID))
BROADCAST_SCHEDULE = Route("bct", ("draft", _ID))
BROADCAST_CONFIRM = Route("bcc", ("draft", _ID))
#: Cancel a queued or scheduled broadcast.
BROADCAST_STOP = Route("bcx", ("bid", _ID))
#: Goals: the menu (page), a goal card, follow (the state it sets), "I want to help" (asks
#: for an optional note), send the offer without a note, withdraw the offer.
GOALS = Route("gol", ("page", _PAGE))
GOAL = Route("go", ("gid", _ID), ("via", GOAL_VIA))
GOAL_FOLLOW = Route("gof", ("gid", _ID), ("on", _FLAG), ("via", GOAL_VIA))
GOAL_HELP = Route("goh", ("gid", _ID), ("via", GOAL_VIA))
GOAL_HELP_SEND = Route("gos", ("gid", _ID), ("via", GOAL_VIA))
GOAL_HELP_WITHDRAW = Route("gow", ("gid", _ID), ("via", GOAL_VIA))
#: Moderators' goal editing (`/goal new`, `/goal Z-3`): the goal's card; for a new goal
#: (`draft` tells an old keyboard from the current one) its action field and Create; an
#: edit button (t title · d description · f action field · i items · s status · a add a
#: partner · p remove a partner · m add a milestone · l milestones), and the changes made
#: with buttons: action field, status, remove partner `pid`, set milestone `mid` done (1)
#: or not (0), remove milestone `mid`.
GOAL_ADMIN = Route("ga", ("gid", _ID))
GOAL_ADMIN_FIELD = Route("gan", ("draft", _ID), ("fid", _ID))
GOAL_ADMIN_CREATE = Route("gac", ("draft", _ID))
GOAL_EDIT = Route("gae", ("gid", _ID), ("what", r"[tdfisapml]"))
GOAL_EDIT_FIELD = Route("gaf", ("gid", _ID), ("fid", _ID))
GOAL_EDIT_STATUS = Route("gas", ("gid", _ID), ("status", r"planned|active|paused|done"))
GOAL_EDIT_PARTNER = Route("gap", ("gid", _ID), ("pid", _ID))
GOAL_EDIT_MILESTONE = Route("gam", ("gid", _ID), ("mid", _ID), ("on", _FLAG))
GOAL_EDIT_MILESTONE_REMOVE = Route("gar", ("gid", _ID), ("mid", _ID))


def item_list_origin(field_id: int, sort: str, page: int) -> str:
    return f"L{field_id}{SORT_LETTERS.get(sort, sort)}{page}"


@dataclass(frozen=True)
class Origin:
    kind: str  # "L" | "S" | "M" | "Q" | "G" | "H"
    field_id: int = 0
    sort: str = "support"
    page: int = 0
    session_id: int = 0
    goal_id: int = 0


_ORIGIN_PARTS = re.compile(
    rf"^(?:L(?P<fid>{_ID})(?P<sort>{_SORT})(?P<lpage>{_PAGE})"
    rf"|S(?P<sid>{_ID})|M(?P<mpage>{_PAGE})|Q(?P<qpage>{_PAGE})|G(?P<gid>{_ID})|H)$"
)


def parse_origin(origin: str) -> Origin:
    match = _ORIGIN_PARTS.match(origin)
    if not match:
        return Origin("H")
    if match["fid"] is not None:
        return Origin("L", int(match["fid"]), SORT_CODES[match["sort"]], int(match["lpage"]))
    if match["sid"] is not None:
        return Origin("S", session_id=int(match["sid"]))
    if match["mpage"] is not None:
        return Origin("M", page=int(match["mpage"]))
    if match["qpage"] is not None:
        return Origin("Q", page=int(match["qpage"]))
    if match["gid"] is not None:
        return Origin("G", goal_id=int(match["gid"]))
    return Origin("H")


def back_data(origin: str) -> str:
    """The callback data that returns to where the item card was opened from."""
    o = parse_origin(origin)
    if o.kind == "L":
        return ITEMS.build(fid=o.field_id, sort=SORT_LETTERS[o.sort], page=o.page)
    if o.kind == "S":
        return SESSION.build(sid=o.session_id)
    if o.kind == "M":
        return MY_ITEMS.build(page=o.page)
    if o.kind == "Q":
        return SEARCH.build(page=o.page)
    if o.kind == "G":
        return GOAL.build(gid=o.goal_id, via="P0")
    return MENU.build()


#: Deep link payloads: /start item_TD-07, /start session_s01, /start goal_Z-3.
DEEP_LINK = re.compile(r"^(?P<kind>item|session|goal)_(?P<key>[A-Za-z0-9-]{1,32})$")
