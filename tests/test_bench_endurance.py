"""The endurance benchmark's machine-stall diagnosis: the probe's log is grouped into spells, an underrun is matched
to a spell only when the spell ran in the half second before it, and the chance share is what a random window sees."""

from __future__ import annotations

import pytest

from benchmarks import bench_endurance as be


def test_consecutive_slow_slots_form_one_spell_and_a_gap_starts_another():
    usual = 0.25
    stalls = [(100.00, 0.5, 2.5), (100.02, 0.4, 5.0), (100.04, 0.3, 1.0),  # three slots in a row: one spell
              (101.00, 30.0, 0.3)]  # a late wake-up a second later: a spell of its own
    found = be.spells(usual, stalls)
    assert len(found) == 2
    (start, end, worst), (start2, end2, worst2) = found
    assert start == 100.00 and end == pytest.approx(100.04 + 1.3e-3) and worst == pytest.approx(20.0)
    assert start2 == 101.00 and end2 == pytest.approx(101.0303) and worst2 == pytest.approx(1.2)


def test_an_underrun_is_matched_only_to_a_spell_just_before_it():
    usual = 0.25
    stalls = [(10.0, 0.5, 5.0), (50.0, 0.5, 5.0)]  # two short spells in a 100-s run
    underruns = [(10.2, 1, 4),  # 0.2 s after the first spell: matched
                 (30.0, 2, 5),  # nothing within 0.5 s before: the service's own
                 (49.9, 1, 6)]  # before the second spell began: not matched
    spell_row, match_row = be.stall_rows(usual, stalls, underruns, (0.0, 100.0))
    assert spell_row[1].startswith("2; 0; ")
    assert match_row[1].startswith("1 of 4 (1 %)")  # two 0.5-s windows of 200 hold a spell
    assert match_row[1].endswith("4–6")

