"""When the weekly digest fires: cron expressions mean what they mean in cron (0 and 7 are
Sunday), in the bot's time zone; wrong expressions are refused with one clear message."""

from __future__ import annotations

import datetime as dt

import pytest

from bot.schedule import next_fire, parse_cron, previous_fire
from bot.settings import ConfigError, Settings, load_settings
from tests.delivery_helpers import BERLIN

#: Tuesday, 11 June 2024, 10:00 in Dortmund.
TUESDAY = dt.datetime(2024, 6, 11, 10, 0, tzinfo=BERLIN)


def fires(expression: str, after: dt.datetime = TUESDAY, count: int = 7) -> list[dt.datetime]:
    trigger = parse_cron(expression, BERLIN)
    found: list[dt.datetime] = []
    moment = after
    for _ in range(count):
        fire = next_fire(trigger, moment)
        assert fire is not None
        found.append(fire)
        moment = fire + dt.timedelta(seconds=1)
    return found


def weekdays(expression: str) -> list[str]:
    return [f.strftime("%a") for f in fires(expression)]


def test_default_fires_monday_nine_in_dortmund() -> None:
    assert Settings(_env_file=None).digest_cron == "0 9 * * mon"  # type: ignore[call-arg]
    first, second = fires("0 9 * * mon", count=2)
    assert first == dt.datetime(2024, 6, 17, 9, 0, tzinfo=BERLIN)
    assert first.strftime("%A %H:%M") == "Monday 09:00"
    assert first.utcoffset() == dt.timedelta(hours=2)  # Berlin summer time, not UTC
    assert second - first == dt.timedelta(days=7)


def test_monday_across_the_change_to_winter_time() -> None:
    # 27 October 2024 the clocks go back: still 09:00 local on the Monday after.
    [fire] = fires("0 9 * * mon", after=dt.datetime(2024, 10, 26, 12, 0, tzinfo=BERLIN), count=1)
    assert fire == dt.datetime(2024, 10, 28, 9, 0, tzinfo=BERLIN)
    assert fire.utcoffset() == dt.timedelta(hours=1)


def test_weekday_one_is_monday_as_in_cron() -> None:
    assert set(weekdays("0 9 * * 1")) == {"Mon"}
    assert fires("0 9 * * 1", count=1) == fires("0 9 * * mon", count=1)


@pytest.mark.parametrize("expression", ["0 9 * * 0", "0 9 * * 7", "0 9 * * sun"])
def test_zero_and_seven_are_sunday(expression: str) -> None:
    [fire] = fires(expression, count=1)
    assert fire == dt.datetime(2024, 6, 16, 9, 0, tzinfo=BERLIN)
    assert set(weekdays(expression)) == {"Sun"}


def test_one_to_five_are_the_working_days() -> None:
    assert weekdays("30 7 * * 1-5") == ["Wed", "Thu", "Fri", "Mon", "Tue", "Wed", "Thu"]
    assert all(f.strftime("%H:%M") == "07:30" for f in fires("30 7 * * 1-5"))


def test_ranges_lists_and_steps_as_cron_means_them() -> None:
    # Every second day starting Sunday (cron) — not Monday, Wednesday, … (APScheduler).
    assert set(weekdays("0 9 * * */2")) == {"Sun", "Tue", "Thu", "Sat"}
    assert set(weekdays("0 9 * * 5-7")) == {"Fri", "Sat", "Sun"}
    assert set(weekdays("0 9 * * 1,3")) == {"Mon", "Wed"}
    assert set(weekdays("0 9 * * mon-fri/2")) == {"Mon", "Wed", "Fri"}


def test_previous_fire_is_the_last_one_at_or_before_now() -> None:
    trigger = parse_cron("0 9 * * mon", BERLIN)
    monday = dt.datetime(2024, 6, 10, 9, 0, tzinfo=BERLIN)
    assert previous_fire(trigger, TUESDAY) == monday
    assert previous_fire(trigger, monday) == monday
    assert previous_fire(trigger, monday - dt.timedelta(minutes=1)) == monday - dt.timedelta(days=7)
    # Sunday 0 and 7, seen from the Monday after.
    sunday = previous_fire(parse_cron("0 9 * * 0", BERLIN), TUESDAY)
    assert sunday == dt.datetime(2024, 6, 9, 9, 0, tzinfo=BERLIN)
    assert previous_fire(parse_cron("0 9 * * 7", BERLIN), TUESDAY) == sunday


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("0 9 * *", "5 fields"),
        ("0 9 * * mon extra", "5 fields"),
        ("0 9 * * 8", "weekday 8"),
        ("0 9 * * funday", "funday"),
        ("0 9 * * fri-mon", "backwards"),
        ("0 25 * * mon", "25"),
        ("0 9 1 * mon", "either the day of the month or the weekday"),
    ],
)
def test_invalid_cron_is_refused_with_one_clear_line(expression: str, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(_env_file=None, digest_cron=expression)
    message = str(caught.value)
    assert message.startswith("DIGEST_CRON: ")
    assert reason in message
    assert "\n" not in message
