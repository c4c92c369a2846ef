"""pytest plugin for `make test-arm64`: run the device tests as a Pi can, skipping (with the reason) what needs the
laptop: training (the tiny_audio/tiny_training_factory fixtures run TensorFlow; the trained bundles the device
tests use, and the vocoder tests' reference recordings, come prebuilt through $MURMUR_TEST_BUNDLES), `make`, the
laptop's other venvs, and real GPIO (the Pi 4 cpuinfo bound over /proc/cpuinfo makes gpiozero take the
emulator for a Pi, but there is no /dev/gpiomem)."""

import pytest

TRAINER_FIXTURES = {"tiny_audio", "tiny_training_factory"}
LAPTOP_ONLY = {
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
