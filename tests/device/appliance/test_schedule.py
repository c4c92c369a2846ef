"""Opening-hours maths: window edges, fades, a reboot mid-window, windows across midnight, closed days."""

from datetime import datetime, timedelta

import pytest

from murmur.device.appliance.schedule import parse_schedule, parse_windows, schedule_state
from murmur.device.errors import ConfigError

# 2026-11-23 is a Monday.
MON = datetime(2026, 11, 23)


def at(day_offset: int, hhmm: str, seconds: float = 0.0) -> datetime:
    hours, minutes = map(int, hhmm.split(":"))
    return MON + timedelta(days=day_offset, hours=hours, minutes=minutes, seconds=seconds)


GALLERY = parse_schedule(
    {"mon": "closed", "tue": "10:00-18:00", "wed": "10:00-13:00, 14:00-18:00", "fri": "20:00-02:00",
     "sat": "always", "sun": "always", "fade_in_s": 30, "fade_out_s": 60}
)


def test_monday_is_closed_and_next_edge_is_tuesday_opening():
    state = schedule_state(at(0, "12:00"), GALLERY)
    assert not state.is_open and state.gain == 0.0 and state.phase == "closed"
    assert state.next_edge == at(1, "10:00")
    assert state.seconds_to_next_edge == pytest.approx(22 * 3600)


def test_window_start_is_inclusive_and_fades_in():
    just_before = schedule_state(at(1, "10:00", -0.001), GALLERY)
    assert not just_before.is_open
    opening = schedule_state(at(1, "10:00"), GALLERY)
    assert opening.is_open and opening.phase == "fading-in"
    assert opening.gain == 0.0 and opening.target_gain == 1.0 and opening.ramp_s == pytest.approx(30)
    halfway = schedule_state(at(1, "10:00", 15), GALLERY)
    assert halfway.gain == pytest.approx(0.5) and halfway.ramp_s == pytest.approx(15)
    settled = schedule_state(at(1, "10:00", 30), GALLERY)
    assert settled.phase == "open" and settled.gain == 1.0 and settled.ramp_s == 0.0


def test_window_end_is_exclusive_and_fade_out_ends_at_closing_time():
    before_fade = schedule_state(at(1, "17:58", 59), GALLERY)
    assert before_fade.phase == "open" and before_fade.gain == 1.0
    fading = schedule_state(at(1, "17:59", 30), GALLERY)
    assert fading.phase == "fading-out" and fading.target_gain == 0.0
    assert fading.ramp_s == pytest.approx(30) and fading.gain == pytest.approx(0.5)
    assert fading.next_edge == at(1, "18:00")
    closed = schedule_state(at(1, "18:00"), GALLERY)
    assert not closed.is_open and closed.next_edge == at(2, "10:00")


def test_reboot_mid_window_is_open_at_once():
    """A pure function of the wall clock: whatever happened before, 15:00 on Tuesday is open at full level."""
    state = schedule_state(at(1, "15:00"), GALLERY)
    assert state.is_open and state.phase == "open" and state.gain == 1.0
    assert state.next_edge == at(1, "18:00") and state.seconds_to_next_edge == pytest.approx(3 * 3600)


def test_lunch_break_between_two_windows():
    assert schedule_state(at(2, "12:30"), GALLERY).is_open
    lunch = schedule_state(at(2, "13:30"), GALLERY)
    assert not lunch.is_open and lunch.next_edge == at(2, "14:00")
    assert schedule_state(at(2, "14:00", 45), GALLERY).gain == pytest.approx(1.0)


def test_window_across_midnight_belongs_to_the_day_it_starts():
    assert schedule_state(at(4, "23:00"), GALLERY).is_open  # friday night
    saturday_early = schedule_state(at(5, "01:00"), GALLERY)
    assert saturday_early.is_open
    # saturday is "always", so friday's late window runs straight into it: no edge at midnight or 02:00
    assert saturday_early.next_edge == at(7, "00:00")  # sunday is always too; monday closed


def test_across_midnight_into_a_closed_day_closes_at_the_window_end():
    schedule = parse_schedule({"fri": "22:00-02:00", "fade_s": 0})
    assert schedule_state(at(5, "01:59"), schedule).is_open
    state = schedule_state(at(5, "02:00"), schedule)
    assert not state.is_open and state.next_edge == at(11, "22:00")
    assert not schedule_state(at(4, "02:00"), schedule).is_open  # thursday night: nothing carried over


def test_all_day_neighbours_merge_without_a_fade_at_midnight():
    state = schedule_state(at(5, "23:59", 59.9), GALLERY)
    assert state.is_open and state.phase == "open" and state.gain == 1.0


def test_no_weekday_lines_means_always_open():
    schedule = parse_schedule({"fade_s": 5})
    state = schedule_state(at(0, "03:00"), schedule)
    assert state.is_open and state.gain == 1.0 and state.next_edge is None


def test_every_day_closed_has_no_next_edge():
    schedule = parse_schedule({"mon": "closed"})
    state = schedule_state(at(3, "12:00"), schedule)
    assert not state.is_open and state.next_edge is None and state.seconds_to_next_edge == float("inf")


def test_window_shorter_than_the_fades_never_exceeds_the_envelope():
    schedule = parse_schedule({"tue": "10:00-10:01", "fade_s": 60})
    state = schedule_state(at(1, "10:00", 20), schedule)
    assert state.phase == "fading-out" and state.gain == pytest.approx(1 / 3)
    assert state.ramp_s == pytest.approx(40)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("10-18", "HH:MM"),
        ("10:00-25:00", "not a time of day"),
        ("24:00-02:00", "not a time of day"),
        ("10:00-10:00", "empty"),
        ("10:00-14:00, 13:00-18:00", "overlap"),
        ("closed, 10:00-12:00", "cannot be combined"),
        ("10:00", "must look like"),
        (1000, "expected a string"),
    ],
)
def test_bad_windows_name_the_key_and_value(value, fragment):
    with pytest.raises(ConfigError) as info:
        parse_windows(value, where="[schedule].tue")
    assert "[schedule].tue" in str(info.value) and fragment in str(info.value)
    assert repr(value) in str(info.value) or str(value) in str(info.value)


def test_bad_schedule_keys_and_fades():
    with pytest.raises(ConfigError, match=r"\[schedule\] monday = \"10:00-18:00\": unknown key"):
        parse_schedule({"monday": "10:00-18:00"})
    with pytest.raises(ConfigError, match="fade_s = -1"):
        parse_schedule({"fade_s": -1})
    assert parse_windows(["10:00-12:00", "13:00-24:00"], where="x") == ((600, 720), (780, 1440))
    assert parse_windows("22:00-02:00", where="x") == ((1320, 1560),)


def test_every_day_always_has_no_closing_edge():
    schedule = parse_schedule({day: "always" for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")})
    state = schedule_state(at(2, "03:00"), schedule)
    assert state.is_open and state.phase == "open" and state.gain == 1.0
    assert state.next_edge is None and state.seconds_to_next_edge == float("inf")


def test_opening_into_a_week_of_always_still_fades_in():
    schedule = parse_schedule({day: "always" for day in ("tue", "wed", "thu", "fri", "sat", "sun")} | {"fade_s": 30})
    state = schedule_state(at(1, "00:00", 10), schedule)
    assert state.phase == "fading-in" and state.ramp_s == pytest.approx(20) and state.next_edge == at(7, "00:00")


def test_unsynchronised_clock_policy_play_through_or_trust():
    night = datetime(2026, 11, 24, 3, 0)  # a Tuesday, closed at 03:00
    play = parse_schedule({"tue": "10:00-18:00", "fade_s": 20})
    assert play.unsynchronised_clock == "play"
    assert not schedule_state(night, play).is_open
    through = schedule_state(night, play, clock_trusted=False)
    assert through.is_open and through.phase == "playing-through" and through.target_gain == 1.0
    assert through.ramp_s == 20.0 and through.next_edge is None
    trust = parse_schedule({"tue": "10:00-18:00", "unsynchronised_clock": "trust"})
    assert not schedule_state(night, trust, clock_trusted=False).is_open
    with pytest.raises(ConfigError, match=r"unsynchronised_clock = \"maybe\".*\"play\".*\"trust\""):
        parse_schedule({"unsynchronised_clock": "maybe"})
