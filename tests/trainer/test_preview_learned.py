"""What the model learned, said from the preview: the sentence from two 1.5-s distances (all three branches, the
band's edges, bad input), and the trainer's JSON result carrying the comparison, measured on a real tiny bundle
against the same player without the model."""

from __future__ import annotations

import argparse
import json
import math

import pytest

from murmur.trainer.preview import SAME_BAND_PCT, learned_figures, learned_sentence


def test_a_model_closer_than_the_nearest_sound_says_by_how_much():
    said = learned_sentence(812.0, 1054.0)
    assert said == ("What the model learned: its choices are 23 % closer to your recording's phrases than picking "
                    "the nearest sound (1.5-s distance 812 vs 1054).")


def test_a_model_further_than_the_nearest_sound_says_so_and_what_may_help():
    said = learned_sentence(1240.0, 1054.0)
    assert said.startswith("What the model learned: its choices are 18 % further from your recording's phrases than "
                           "picking the nearest sound (1.5-s distance 1240 vs 1054): the model adds little")
    assert said.endswith("more material or training time may help.")
    assert "closer" not in said


def test_within_the_noise_band_it_is_about_as_close():
    said = learned_sentence(950.0, 1054.0)  # 10 % closer: within one preview's seed noise
    assert "about as close to your recording's phrases as picking the nearest sound (1.5-s distance 950 vs 1054)" in said
    assert "the model adds little" in said and "% closer" not in said and "% further" not in said
    assert "about as close" in learned_sentence(7.0, 7.0)


@pytest.mark.parametrize("model, no_model, word", [
    (85.0, 100.0, "15 % closer"), (85.2, 100.0, "about as close"),  # the band's edges: 15 % is out of it
    (115.0, 100.0, "15 % further"), (114.8, 100.0, "about as close"),
])
def test_the_band_is_fifteen_percent_either_way(model, no_model, word):
    assert SAME_BAND_PCT == 15.0
    assert word in learned_sentence(model, no_model)


def test_without_numbers_the_words_have_no_figures_and_small_distances_keep_a_decimal():
    assert not any(c.isdigit() for c in learned_sentence(812.0, 1054.0, numbers=False).replace("23 %", ""))
    assert learned_sentence(812.0, 1054.0, numbers=False).endswith("than picking the nearest sound.")
    assert "(1.5-s distance 4.2 vs 6.1)" in learned_sentence(4.2, 6.1)


def test_a_zero_no_model_distance_is_further_without_an_infinite_percentage():
    said = learned_sentence(5.0, 0.0)
    assert "its choices are further from" in said and "inf" not in said


@pytest.mark.parametrize("model, no_model", [(math.nan, 10.0), (10.0, math.inf), (-1.0, 10.0), (10.0, -0.5)])
def test_a_distance_that_is_not_one_is_refused(model, no_model):
    with pytest.raises(ValueError, match="finite number >= 0"):
        learned_sentence(model, no_model)


def test_learned_figures_hold_both_scales_the_change_and_both_wordings():
    got = learned_figures({"93ms": 40.0, "1.5s": 812.0, "frame": 3.0}, {"93ms": 50.0, "1.5s": 1054.0, "frame": 4.0})
    assert got["fd_1500ms"] == {"model": 812.0, "no_model": 1054.0}
    assert got["fd_93ms"] == {"model": 40.0, "no_model": 50.0}
    assert got["closer_pct"] == pytest.approx(23.0, abs=0.05)
    assert got["sentence"] == learned_sentence(812.0, 1054.0)
    assert got["words"] == learned_sentence(812.0, 1054.0, numbers=False)
    json.dumps(got)  # it goes into the trainer's JSON result as it is


@pytest.mark.slow
def test_the_trainers_result_carries_what_the_model_learned(tmp_path, tiny_training_factory, monkeypatch):
    """The trainer's own result path (cli._run after training, with the preview and --progress-jsonl) on the tiny
    trained bundle: the done event holds the comparison, the printed figures hold the sentence, and the no-model
    distances are what the same player without the model, rendered again here, measures. (On this tiny bundle the
    model has learned next to nothing, so the two renders may be the same sound: which generator each render asked
    for is checked by watching the calls.)"""
    from murmur.trainer import cli, preview, soundcheck
    from murmur.trainer.audio import decode
    from murmur.trainer.options import TrainOptions
    from murmur.trainer.preview import NO_MODEL, as_heard, render_preview

    calls = []

    def watched(bundle_dir, seconds, *, seed=0, generator="auto"):
        calls.append((bundle_dir, seconds, seed, generator))
        return render_preview(bundle_dir, seconds, seed=seed, generator=generator)

    monkeypatch.setattr(preview, "render_preview", watched)
    outcome = tiny_training_factory()
    seconds, seed = 3.0, 0
    args = argparse.Namespace(data=outcome.dataset.sources[0].path, preview_seconds=seconds)
    options = TrainOptions(seed=seed)
    paths = cli.Paths(outcome.export.path, tmp_path / "preview.wav", tmp_path / "preview.png")
    progress = cli.ProgressLog(tmp_path / "progress.jsonl")
    try:
        code = cli._run(args, options, paths, cli.ProgressBar(), progress, lambda *a, **k: outcome)
    finally:
        progress.close()
    assert code == 0
    assert calls == [(outcome.export.path, seconds, seed, "auto"), (outcome.export.path, seconds, seed, NO_MODEL)]
    events = [json.loads(line) for line in (tmp_path / "progress.jsonl").read_text().splitlines()]
    done = next(e for e in events if e["event"] == "done")
    learned = done["learned"]
    assert learned is not None, done["figures"]
    assert learned["sentence"] in done["figures"] and learned["sentence"].startswith("What the model learned:")
    assert learned["words"] == learned_sentence(learned["fd_1500ms"]["model"], learned["fd_1500ms"]["no_model"],
                                                numbers=False)

    # the no-model side measured again, independently of the trainer's path
    rate = 44100
    source = decode(outcome.dataset.sources[0].path, rate).samples
    audio, got_rate = render_preview(outcome.export.path, seconds, seed=seed, generator=NO_MODEL)
    assert got_rate == rate
    again = soundcheck.frechet_distances(source, as_heard(audio), rate)
    assert learned["fd_1500ms"]["no_model"] == pytest.approx(again["1.5s"], rel=1e-3)
    assert learned["fd_93ms"]["no_model"] == pytest.approx(again["93ms"], rel=1e-3)
    # … and the model side is the preview's own figure (the sound check's first FD line, 93 ms / 1.5 s)
    preview = render_preview(outcome.export.path, seconds, seed=seed)[0]
    model = soundcheck.frechet_distances(source, as_heard(preview), rate)
    assert learned["fd_1500ms"]["model"] == pytest.approx(model["1.5s"], rel=1e-3)
    assert learned["fd_93ms"]["model"] == pytest.approx(model["93ms"], rel=1e-3)
