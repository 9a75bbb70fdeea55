"""Domain logic on both databases: supporting, following, residents, comments and their
moderation, my items, search, item lists and sessions."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select, update

from domain import comments, items, residents, sessions
from domain.comments import CommentProblem
from domain.importer import import_content
from domain.views import Author
from storage.models import COMMENT_MAX, Comment, Item, Resident, Support
from storage.uow import Database
from tests.conftest import TZ

TODAY = dt.date(2024, 6, 10)


async def new_resident(database: Database, telegram_id: int, language: str = "de") -> int:
    async with database.uow() as uow:
        return (await residents.enter(uow, telegram_id, language, TODAY)).id


async def item_id(database: Database, key: str) -> int:
    async with database.uow() as uow:
        found = await items.item_id_for_key(uow, key)
    assert found is not None
    return found


async def support_counts(database: Database, item: int) -> tuple[int, int]:
    """(counter on the item, true number of supports)."""
    async with database.uow() as uow:
        counter = (
            await uow.session.execute(select(Item.support_count).where(Item.id == item))
        ).scalar_one()
        return counter, await uow.engagement.support_count(item)


async def count_rows(database: Database, model: type[object]) -> int:
    async with database.uow() as uow:
        return (await uow.session.execute(select(func.count()).select_from(model))).scalar_one()


async def set_counts(database: Database, by_key: dict[str, tuple[int, int]]) -> None:
    """Give items (support_count, comment_count) directly, for sorting tests."""
    async with database.uow() as uow, uow.write():
        for key, (supports, comment_count) in by_key.items():
            await uow.session.execute(
                update(Item)
                .where(Item.key == key)
                .values(support_count=supports, comment_count=comment_count)
            )


# --------------------------------------------------------------------------- supporting


async def test_support_is_set_not_toggle(content: Database) -> None:
    resident = await new_resident(content, 1)
    item = await item_id(content, "TD-01")

    async with content.uow() as uow:
        first = await items.set_support(uow, resident, item, True)
        # The card in the same unit of work (as the handler renders it) shows the new count.
        card = await items.item_card(uow, resident, item, "de")
    assert first == items.EngagementChange(changed=True, followed=True)
    assert card is not None and card.supporters == 1 and card.supporting and card.following
    assert await support_counts(content, item) == (1, 1)

    async with content.uow() as uow:
        second = await items.set_support(uow, resident, item, True)
    assert second is not None and second.changed is False and second.followed is False
    assert await support_counts(content, item) == (1, 1)

    async with content.uow() as uow:
        withdrawn = await items.set_support(uow, resident, item, False)
        again = await items.set_support(uow, resident, item, False)
        card = await items.item_card(uow, resident, item, "de")
        state = await uow.engagement.state(resident, item)
    assert withdrawn is not None and withdrawn.changed is True
    assert again is not None and again.changed is False
    assert card is not None and card.supporters == 0 and not card.supporting
    # Withdrawing support keeps following the item.
    assert state.following and not state.supporting
    assert await support_counts(content, item) == (0, 0)


async def test_supporting_an_unknown_item_changes_nothing(content: Database) -> None:
    resident = await new_resident(content, 1)
    async with content.uow() as uow:
        assert await items.set_support(uow, resident, 999_999, True) is None
        assert await items.set_follow(uow, resident, 999_999, True) is None
    assert await count_rows(content, Support) == 0


async def test_supporting_an_already_followed_item_reports_no_new_follow(
    content: Database,
) -> None:
    resident = await new_resident(content, 1)
    item = await item_id(content, "TD-02")
    async with content.uow() as uow:
        followed = await items.set_follow(uow, resident, item, True)
        change = await items.set_support(uow, resident, item, True)
    assert followed == items.EngagementChange(changed=True, followed=True)
    assert change == items.EngagementChange(changed=True, followed=False)


async def test_concurrent_supports_of_one_resident_count_once(content: Database) -> None:
    resident = await new_resident(content, 1)
    item = await item_id(content, "TD-03")

    async def press() -> items.EngagementChange | None:
        async with content.uow() as uow:
            return await items.set_support(uow, resident, item, True)

    results = await asyncio.gather(*(press() for _ in range(10)))

    assert sum(1 for r in results if r is not None and r.changed) == 1
    assert await support_counts(content, item) == (1, 1)
    assert await count_rows(content, Support) == 1


async def test_concurrent_supports_of_many_residents_all_count(content: Database) -> None:
    people = [await new_resident(content, 100 + n) for n in range(20)]
    item = await item_id(content, "TD-04")

    async def press(resident: int) -> None:
        async with content.uow() as uow:
            await items.set_support(uow, resident, item, True)

    await asyncio.gather(*(press(r) for r in people))
    assert await support_counts(content, item) == (20, 20)


# --------------------------------------------------------------------------- residents


async def test_concurrent_first_contact_creates_one_resident(content: Database) -> None:
    async def first_contact() -> residents.ResidentInfo:
        async with content.uow() as uow:
            return await residents.enter(uow, 555, "de-AT", TODAY)

    results = await asyncio.gather(*(first_contact() for _ in range(10)))

    assert len({r.id for r in results}) == 1
    assert sum(r.is_new for r in results) == 1  # welcomed once
    assert {r.language for r in results} == {"de"}
    assert await count_rows(content, Resident) == 1


async def test_pseudonyms_are_unique(content: Database) -> None:
    async with content.uow() as uow:
        infos = [await residents.enter(uow, 2000 + n, "en", TODAY) for n in range(30)]
    pseudonyms = [i.author.pseudonym for i in infos]
    assert len(set(pseudonyms)) == 30
    assert all(1000 <= p <= 9_999_999 for p in pseudonyms)


async def test_pseudonym_collision_draws_again(
    content: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    draws: Iterator[int] = iter([4242, 4242, 4242, 5353])
    monkeypatch.setattr("storage.repositories._PSEUDONYMS.randint", lambda low, high: next(draws))
    first = await new_resident(content, 1)
    second = await new_resident(content, 2)
    async with content.uow() as uow:
        a, b = await uow.residents.get(first), await uow.residents.get(second)
    assert a is not None and b is not None
    assert (a.pseudonym, b.pseudonym) == (4242, 5353)


# --------------------------------------------------------------------------- comments


async def comment_rows(database: Database) -> list[Comment]:
    async with database.uow() as uow:
        return list((await uow.session.execute(select(Comment))).scalars())


async def test_comment_without_start_is_not_stored(content: Database) -> None:
    resident = await new_resident(content, 1)
    async with content.uow() as uow:
        outcome = await comments.submit_comment(uow, resident, "Hallo")
    assert outcome.problem is CommentProblem.NOT_AWAITED
    assert await comment_rows(content) == []


async def test_comment_is_stored_pending_and_follows_item(content: Database) -> None:
    resident = await new_resident(content, 1)
    item = await item_id(content, "TD-01")
    async with content.uow() as uow:
        assert await comments.start_comment(uow, resident, item, "L0s0")
        outcome = await comments.submit_comment(uow, resident, "  Gute Idee!\nUnbedingt.  ")
        state = await uow.engagement.state(resident, item)
        still_awaiting = await comments.awaiting(uow, resident)
    assert outcome.problem is None
    assert (outcome.item_id, outcome.origin, outcome.followed) == (item, "L0s0", True)
    [row] = await comment_rows(content)
    assert (row.id, row.status) == (outcome.comment_id, "pending")
    assert row.text == "Gute Idee!\nUnbedingt."
    assert state.following
    assert still_awaiting is None
    # A second text is not another comment.
    async with content.uow() as uow:
        again = await comments.submit_comment(uow, resident, "Noch was")
    assert again.problem is CommentProblem.NOT_AWAITED


@pytest.mark.parametrize(
    ("text", "problem", "length"),
    [
        ("", CommentProblem.EMPTY, 0),
        ("   \n\t ", CommentProblem.EMPTY, 0),
        ("\u200b\u202e", CommentProblem.EMPTY, 0),
        ("x" * (COMMENT_MAX + 1), CommentProblem.TOO_LONG, COMMENT_MAX + 1),
    ],
    ids=["empty", "whitespace", "invisible", "too-long"],
)
async def test_refused_comment_is_not_stored_and_still_awaited(
    content: Database, text: str, problem: CommentProblem, length: int
) -> None:
    resident = await new_resident(content, 1)
    item = await item_id(content, "TD-02")
    async with content.uow() as uow:
        await comments.start_comment(uow, resident, item, "H")
        refused = await comments.submit_comment(uow, resident, text)
        assert refused.problem is problem
        assert refused.length == length
        assert await comments.awaiting(uow, resident) == (
            comments.AWAITING_COMMENT,
            {"item_id": item, "origin": "H"},
        )
    assert await comment_rows(content) == []

    async with content.uow() as uow:
        accepted = await comments.submit_comment(uow, resident, "Jetzt richtig")
    assert accepted.problem is None
    assert [c.text for c in await comment_rows(content)] == ["Jetzt richtig"]


async def test_comment_of_exactly_the_maximum_length_is_accepted(content: Database) -> None:
    resident = await new_resident(content, 1)
    item = await item_id(content, "TD-02")
    text = "ä" * (COMMENT_MAX - 1) + "😀"
    async with content.uow() as uow:
        await comments.start_comment(uow, resident, item, "H")
        outcome = await comments.submit_comment(uow, resident, text)
    assert outcome.problem is None
    [row] = await comment_rows(content)
    assert row.text == text


async def test_one_start_gives_one_comment_under_concurrency(content: Database) -> None:
    resident = await new_resident(content, 1)
    item = await item_id(content, "TD-03")
    async with content.uow() as uow:
        await comments.start_comment(uow, resident, item, "H")

    async def submit(text: str) -> comments.CommentOutcome:
        async with content.uow() as uow:
            return await comments.submit_comment(uow, resident, text)

    outcomes = await asyncio.gather(submit("eins"), submit("zwei"))

    assert sorted(o.problem is None for o in outcomes) == [False, True]
    assert [o.problem for o in outcomes if o.problem] == [CommentProblem.NOT_AWAITED]
    assert len(await comment_rows(content)) == 1


async def write_comment(database: Database, resident: int, item: int, text: str) -> int:
    async with database.uow() as uow:
        await comments.start_comment(uow, resident, item, "H")
        outcome = await comments.submit_comment(uow, resident, text)
    assert outcome.comment_id is not None
    return outcome.comment_id


async def comment_count(database: Database, item: int) -> int:
    async with database.uow() as uow:
        return (
            await uow.session.execute(select(Item.comment_count).where(Item.id == item))
        ).scalar_one()


async def test_concurrent_decisions_first_one_wins(content: Database) -> None:
    resident = await new_resident(content, 1)
    item = await item_id(content, "TD-01")
    comment = await write_comment(content, resident, item, "Strittig")

    async def decide(approve: bool, moderator: int) -> comments.Decision | None:
        async with content.uow() as uow:
            return await comments.decide(uow, comment, approve, moderator, f"M{moderator}", "de")

    results = await asyncio.gather(decide(True, 900001), decide(False, 900002))

    assert all(r is not None for r in results)
    winners = [r for r in results if r is not None and r.won]
    assert len(winners) == 1
    final = {r.comment.status for r in results if r is not None}
    assert len(final) == 1  # both moderators see the same outcome
    [status] = final
    assert status == winners[0].comment.status
    assert winners[0].comment.decided_by in ("M900001", "M900002")
    assert all(r.author_telegram_id == 1 for r in results if r is not None)
    assert await comment_count(content, item) == (1 if status == "approved" else 0)
    async with content.uow() as uow:
        page = await comments.approved_comments(uow, item, "de", 0)
    assert page.total == (1 if status == "approved" else 0)


async def test_rejected_comments_do_not_count(content: Database) -> None:
    resident = await new_resident(content, 1)
    item = await item_id(content, "TD-01")
    rejected = await write_comment(content, resident, item, "Spam")
    approved = await write_comment(content, resident, item, "Gut")
    async with content.uow() as uow:
        r = await comments.decide(uow, rejected, False, 900001, "Mod", "de")
        a = await comments.decide(uow, approved, True, 900001, "Mod", "de")
        late = await comments.decide(uow, rejected, True, 900002, "Other", "de")
        page = await comments.approved_comments(uow, item, "de", 0)
        card = await items.item_card(uow, resident, item, "de")
    assert r is not None and r.won and r.comment.status == "rejected"
    assert a is not None and a.won and a.comment.status == "approved"
    assert late is not None and not late.won and late.comment.status == "rejected"
    assert [c.text for c in page.entries] == ["Gut"]
    assert card is not None and card.comments == 1
    assert await comment_count(content, item) == 1


async def test_approved_comments_show_author_newest_first_paginated(content: Database) -> None:
    item = await item_id(content, "TD-05")
    anna = await new_resident(content, 1)
    anonymous = await new_resident(content, 2)
    async with content.uow() as uow:
        assert await residents.set_display_name(uow, anna, "  Anna  ") == "Anna"
        stored = await uow.residents.get(anonymous)
        assert stored is not None
        info = residents.ResidentInfo.of(stored)
    pseudonym = info.author.pseudonym
    ids = []
    for n in range(7):
        ids.append(await write_comment(content, anna if n % 2 else anonymous, item, f"K{n}"))
    pending = await write_comment(content, anna, item, "noch nicht freigegeben")
    async with content.uow() as uow:
        for comment in ids:
            await comments.decide(uow, comment, True, 900001, "Mod", "de")

    async with content.uow() as uow:
        pages = [await comments.approved_comments(uow, item, "de", p) for p in range(3)]
        beyond = await comments.approved_comments(uow, item, "de", 99)
    assert [p.total for p in pages] == [7, 7, 7]
    assert pages[0].pages == 3
    assert [[c.text for c in p.entries] for p in pages] == [
        ["K6", "K5", "K4"],
        ["K3", "K2", "K1"],
        ["K0"],
    ]
    assert pages[0].entries[0].author == Author(None, pseudonym)
    assert pages[0].entries[1].author == Author("Anna", pages[0].entries[1].author.pseudonym)
    assert beyond.page == 2 and [c.text for c in beyond.entries] == ["K0"]
    assert pending not in {c.id for p in pages for c in p.entries}


# --------------------------------------------------------------------------- my items


async def test_my_items_lists_followed_supported_and_commented(content: Database) -> None:
    resident = await new_resident(content, 1)
    other = await new_resident(content, 2)
    td = {k: await item_id(content, k) for k in ("TD-01", "TD-02", "TD-03", "TD-04")}
    async with content.uow() as uow:
        await items.set_follow(uow, resident, td["TD-01"], True)
        await items.set_support(uow, resident, td["TD-02"], True)
        await items.set_follow(uow, resident, td["TD-02"], False)
        await items.set_support(uow, other, td["TD-04"], True)
    await write_comment(content, resident, td["TD-03"], "Meinung")
    async with content.uow() as uow:
        await items.set_follow(uow, resident, td["TD-03"], False)
        page = await items.my_items(uow, resident, "en", 0)
        nothing = await items.my_items(uow, 999, "en", 0)

    flags = {e.summary.key: (e.following, e.supporting, e.commented) for e in page.entries}
    assert flags == {
        "TD-01": (True, False, False),
        "TD-02": (False, True, False),
        "TD-03": (False, False, True),
    }
    assert page.total == 3
    assert page.entries[0].summary.title == "Training centre for green-tech jobs"
    assert nothing.total == 0 and nothing.entries == []


# --------------------------------------------------------------------------- search


async def search_keys(database: Database, query: str, language: str = "de") -> list[str]:
    async with database.uow() as uow:
        page = await items.search(uow, language, query, 0)
    return [e.key for e in page.entries]


@pytest.mark.parametrize(
    ("query", "language", "expected"),
    [
        ("STRASSE", "de", ["TD-04"]),
        ("straße", "de", ["TD-04"]),
        ("Strasse", "en", ["TD-04"]),
        ("fachkrafte", "de", ["TD-01"]),
        ("FACHKRÄFTE", "de", ["TD-01"]),
        ("pflege", "de", ["TD-02", "TD-03"]),
        ("ÄRZTLICHE", "de", ["TD-05"]),
        ("<sicher>", "de", ["TD-05"]),
        ("training", "en", ["TD-01", "TD-04"]),
        ("lotsen", "en", ["TD-03"]),  # German words work for English users too
        ("training", "de", []),  # English-only words do not match for German users
        ("pflege lotsen", "de", ["TD-03"]),  # every word must match
        ("pflege nirgendwo", "de", []),
        ("%", "de", []),
        ("_", "de", []),
        ("pfleg_", "de", []),
        ("stra%e", "de", []),
        ("  ...  ", "de", []),
    ],
)
async def test_search(content: Database, query: str, language: str, expected: list[str]) -> None:
    assert await search_keys(content, query, language) == expected


async def test_search_ranks_title_matches_first(content: Database) -> None:
    # TD-04 mentions "training" only in its description, TD-01 in its title.
    await set_counts(content, {"TD-04": (9, 0)})
    assert await search_keys(content, "training", "en") == ["TD-01", "TD-04"]
    # Among equal title matches the most supported comes first.
    await set_counts(content, {"TD-03": (5, 0)})
    assert await search_keys(content, "pflege") == ["TD-03", "TD-02"]


async def test_search_paginates(content: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(items, "ITEMS_PER_PAGE", 1)
    async with content.uow() as uow:
        second = await items.search(uow, "de", "pflege", 1)
        clamped = await items.search(uow, "de", "pflege", 50)
    assert (second.total, second.pages, [e.key for e in second.entries]) == (2, 2, ["TD-03"])
    assert clamped.page == 1


# --------------------------------------------------------------------------- item lists


async def list_keys(
    database: Database, sort: items.ItemSort, page: int = 0, field: int | None = None
) -> list[str]:
    async with database.uow() as uow:
        result = await items.list_items(uow, "de", field, sort, page)
    return [e.key for e in result.entries]


async def test_list_items_sorts(content: Database) -> None:
    await set_counts(content, {"TD-03": (5, 0), "TD-01": (2, 0), "TD-05": (0, 3), "TD-02": (0, 1)})
    assert await list_keys(content, "support") == ["TD-03", "TD-01", "TD-05", "TD-02", "TD-04"]
    assert await list_keys(content, "discussed") == ["TD-05", "TD-02", "TD-03", "TD-01", "TD-04"]

    async with content.uow() as uow:
        await import_content(
            uow,
            {
                "items": [
                    {"key": "TD-06", "title": "Neu", "description": "Neu", "action_field": "pflege"}
                ]
            },
            TZ,
        )
    assert (await list_keys(content, "new"))[:2] == ["TD-06", "TD-05"]


async def test_list_items_filters_by_field_and_hides_merged(content: Database) -> None:
    async with content.uow() as uow:
        fields = {f.key: f for f in await items.action_fields(uow, "en")}
        async with uow.write():
            await uow.session.execute(
                update(Item).where(Item.key == "TD-03").values(status="merged")
            )
    assert fields["pflege"].title == "Valuing care work"
    assert (fields["pflege"].items, fields["fachkraefte"].items) == (3, 2)
    assert await list_keys(content, "support", field=fields["pflege"].id) == ["TD-02", "TD-05"]
    assert "TD-03" not in await list_keys(content, "support")
    assert await search_keys(content, "lotsen") == []


async def test_list_items_paginates_and_clamps(
    content: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(items, "ITEMS_PER_PAGE", 2)
    async with content.uow() as uow:
        pages = [await items.list_items(uow, "de", None, "support", p) for p in range(3)]
        beyond = await items.list_items(uow, "de", None, "support", 7)
        before = await items.list_items(uow, "de", None, "support", -3)
    assert [[e.key for e in p.entries] for p in pages] == [
        ["TD-01", "TD-02"],
        ["TD-03", "TD-04"],
        ["TD-05"],
    ]
    assert (pages[0].pages, pages[0].total) == (3, 5)
    assert (pages[0].has_prev, pages[0].has_next, pages[2].has_next) == (False, True, False)
    assert beyond.page == 2 and [e.key for e in beyond.entries] == ["TD-05"]
    assert before.page == 0 and [e.key for e in before.entries] == ["TD-01", "TD-02"]


async def test_item_card(content: Database) -> None:
    resident = await new_resident(content, 1)
    item = await item_id(content, "TD-01")
    async with content.uow() as uow:
        assert await items.item_card(uow, resident, 999_999, "de") is None
        card = await items.item_card(uow, resident, item, "en")
    assert card is not None
    assert (card.key, card.title, card.field_title) == (
        "TD-01",
        "Training centre for green-tech jobs",
        "Securing skilled workers",
    )
    assert card.description == "A centre that trains skilled workers for climate jobs."
    assert [s.key for s in card.sessions] == ["s01"]
    assert (card.supporting, card.following, card.status) == (False, False, "open")


# --------------------------------------------------------------------------- sessions


async def test_sessions_are_listed_by_start_time(content: Database) -> None:
    async with content.uow() as uow:
        await import_content(
            uow,
            {
                "sessions": [
                    {
                        "key": "s00",
                        "title": "Vorabend",
                        "starts_at": "2024-06-09T19:00:00",
                        "ends_at": "2024-06-09T20:00:00",
                    }
                ]
            },
            TZ,
        )
        page = await sessions.list_sessions(uow, "en", 0, TZ)
    assert [s.key for s in page.entries] == ["s00", "s01", "s02", "s03"]
    assert [s.title for s in page.entries][:2] == ["Vorabend", "Kick-off: the work of tomorrow"]
    first = page.entries[1]
    assert (first.starts_at.hour, first.starts_at.minute, first.ends_at.hour) == (10, 0, 11)
    assert first.location == "Baseology Rooftop"


async def test_session_card(content: Database) -> None:
    async with content.uow() as uow:
        s01 = await sessions.session_id_for_key(uow, "s01")
        s02 = await sessions.session_id_for_key(uow, "s02")
        assert s01 is not None and s02 is not None
        card = await sessions.session_card(uow, s01, "de", TZ)
        other = await sessions.session_card(uow, s02, "en", TZ)
        missing = await sessions.session_card(uow, 999_999, "de", TZ)
    assert missing is None
    assert card is not None and other is not None
    assert card.title == "Auftakt: Arbeit der Zukunft"
    assert card.summary == "Wie arbeiten wir 2030 in Dortmund?"
    assert [(s.name, s.role) for s in card.speakers] == [
        ("Dr. Ayşe Demir", "Arbeitsmarktforscherin"),
        ("Jonas Weber", "Handwerkskammer"),
    ]
    assert [(h.text, h.at_seconds, h.url) for h in card.highlights] == [
        ("Fachkräfte fehlen überall.", 750, "https://www.youtube.com/watch?v=abc123&t=750"),
        ("Pflege braucht Anerkennung.", None, None),
    ]
    assert [(r.url, r.duration_seconds) for r in card.recordings] == [
        ("https://www.youtube.com/watch?v=abc123", 5400)
    ]
    assert [(i.key, i.title) for i in card.items] == [
        ("TD-01", "Qualifizierungszentrum für Green-Tech-Berufe"),
        ("TD-02", "Mehr Wertschätzung für Pflegeberufe"),
    ]
    # A highlight pointing into a recording whose player takes no start time: no link.
    assert [(h.at_seconds, h.url) for h in other.highlights] == [(600, None)]
    assert [i.key for i in other.items] == ["TD-03"]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://www.youtube.com/watch?v=abc123", "https://www.youtube.com/watch?v=abc123&t=750"),
        (
            "https://www.youtube.com/watch?v=abc123&t=10&list=PL1",
            "https://www.youtube.com/watch?v=abc123&list=PL1&t=750",
        ),
        ("https://youtu.be/abc123", "https://youtu.be/abc123?t=750"),
        ("https://m.youtube.com/watch?v=x", "https://m.youtube.com/watch?v=x&t=750"),
        ("https://vimeo.com/12345", "https://vimeo.com/12345#t=750s"),
        ("https://www.todo-dortmund.de/#s02", None),
        ("https://example.org/video.mp4", None),
        ("https://youtube.com.evil.example/watch?v=x", None),
    ],
)
def test_timestamp_url(url: str, expected: str | None) -> None:
    assert sessions.timestamp_url(url, 750) == expected
