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
    stalls = [(10.0, 0.5, 5.2), (50.0, 0.5, 5.2)]  # two short spells (5.7 ms) in a 100-s run
    underruns = [(10.2, 1, 4),  # 0.2 s after the first spell: matched
                 (30.0, 2, 5),  # nothing within 0.5 s before: the service's own
                 (49.9, 1, 6)]  # before the second spell began: not matched
    spell_row, match_row, own_row = be.stall_rows(usual, stalls, underruns, (0.0, 100.0))
    assert spell_row[1].startswith("2; 0; ")
    # two 0.5-s windows of 200 hold a spell of >= 5.7 ms
    assert match_row[1].startswith("1 of 3 (spells of 6 ms); 1.0 % of windows hold a spell ≥ 6 ms: by chance 1e-02")
    assert match_row[1].endswith("4–6")
    assert own_row[1:] == ("3", "0", False)  # the 2 at 30.0 s and the 1 at 49.9 s


def test_the_chance_share_counts_only_spells_as_long_as_the_matched_ones():
    usual = 0.25
    # a 100-ms spell (five late slots in a row) at 20 s, and short ones every 2 s: only the long one explains the
    # underrun at 20.3 s as well as it does, so the chance is the share of windows with a spell that long
    stalls = [(20.0 + 0.02 * i, 20.0, 0.3) for i in range(5)] + [(t, 6.0, 0.3) for t in range(40, 100, 2)]
    found = be.spells(usual, stalls)
    assert be.longest_before(found, 20.3) == pytest.approx(100.3, abs=0.1)
    assert be.longest_before(found, 21.0) == 0.0
    assert be.window_share(found, (0.0, 100.0), 50.0) == pytest.approx(1 / 200)
    assert be.window_share(found, (0.0, 100.0), 5.0) == pytest.approx(31 / 200)
    assert be.match_figure(found, [20.3], (0.0, 100.0)).startswith("1 of 1 (spells of 100 ms); 0.5 % of windows")
    assert be.match_figure(found, [], (0.0, 100.0)) == "no dropouts"


def test_the_cores_probes_are_merged_in_time_order_on_one_scale(tmp_path, monkeypatch):
    monkeypatch.setattr(be.os, "sched_getaffinity", lambda pid: {0, 1})
    log = tmp_path / "probe.txt"
    paths = be.probe_logs(log)
    assert [p.name for p in paths] == ["probe-cpu0.txt", "probe-cpu1.txt"]
    paths[0].write_text("usual 0.200\n10.0000 6.0 0.2\n10.0400 0.1 1.0\n")
    paths[1].write_text("usual 0.400\n10.0200 30.0 0.4\n")  # core 1 stalls between core 0's two slow slots
    usual, stalls = be.read_probe(log)
    assert usual == 0.2
    assert stalls == [(10.0, 6.0, 0.2), (10.02, 30.0, pytest.approx(0.2)), (10.04, 0.1, 1.0)]
    (start, end, worst), = be.spells(usual, stalls)  # one spell across both cores, ending at the latest end
    assert start == 10.0 and end == pytest.approx(10.0502) and worst == pytest.approx(5.0)


def test_latency_creep_leaves_out_the_lead_the_engine_chose_after_underruns():
    frame_ms = 11.6
    # (s, underruns, latency ms, RSS MB, load, steal s, ring lead target frames)
    start = [(t, 0, 104.0, 60.0, 1.0, 0.0, 3) for t in range(0, 30, 10)]
    grown = [(t, 5, 127.2, 60.0, 1.0, 0.0, 5) for t in range(30, 60, 10)]  # two more frames after underruns
    name, value, target, ok = be.latency_row(start + grown, 3, frame_ms)
    assert ok and value == "104 → 127 ms; 3 → 5 frames; creep +0 ms"
    crept = [(t, 0, 127.2, 60.0, 1.0, 0.0, 3) for t in range(30, 60, 10)]  # same target, 23 ms more: creep
    assert be.latency_row(start + crept, 3, frame_ms)[3] is False
