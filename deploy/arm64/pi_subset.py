"""pytest plugin for `make test-arm64`: run the device tests as a Pi can, skipping (with the reason) what needs the
laptop: training (the tiny_audio/tiny_training_factory fixtures run TensorFlow, librosa, soundfile; the trained
bundles the device tests use come prebuilt through $MURMUR_TEST_BUNDLES), the vocoder's reference recordings
(made with fluidsynth), `make`, and real GPIO (the Pi 4 cpuinfo bound over /proc/cpuinfo makes gpiozero take the
emulator for a Pi, but there is no /dev/gpiomem)."""

import pytest

TRAINER_FIXTURES = {"tiny_audio", "tiny_training_factory"}
LAPTOP_ONLY = {
    "test_beats_offline_griffin_lim_32_on_real_recordings": "reference recordings need fluidsynth (laptop)",
    "test_hop_256_works_and_beats_griffin_lim": "reference recordings need fluidsynth (laptop)",
    "test_output_is_sample_aligned_with_the_input": "reference recordings need fluidsynth (laptop)",
    "test_no_discontinuity_at_block_joins": "reference recordings need fluidsynth (laptop)",
    "test_makefile_status_target_goes_through_the_deploy_tool": "runs the laptop's make",
    "test_render_under_tflite_runtime_and_numpy_1": "the laptop's .venv/tflite-runtime (the legacy runtime's check)",
    "test_on_a_pi_a_pulled_up_button_attaches_and_reads_released": "real GPIO; the emulator only looks like a Pi",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        name = getattr(item, "originalname", item.name)
        if TRAINER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.skip(reason="needs the trainer (TensorFlow); not on a Pi"))
        elif name in LAPTOP_ONLY:
            item.add_marker(pytest.mark.skip(reason=LAPTOP_ONLY[name]))
