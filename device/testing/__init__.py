"""Inspectable stand-ins shipped with the package (like gpiozero's pins/mock.py), for tests, benches and
dry runs: ``fakes`` (step model, vocoder, sinks, engine, clock) and ``mcp3008`` (a mock ADC on gpiozero's
MockFactory). No runtime module imports this package; a release for the Pi leaves it out.
"""
