"""Controls: the values the generator reads once per frame, and the inputs that turn them.

- ``values``: ``Controls`` (one immutable snapshot), ``ControlStore`` (thread-safe; knobs write, the engine reads),
  ``parse_settings`` (``name=value`` text from the command line; out-of-range values are refused);
- ``mapping``: the knob map, parsed and validated once from the config's ``[knobs]``/``[led]`` tables;
- ``shaping``: pure helpers that turn noisy readings into steady values (scale, smooth, dead-band, debounce);
- ``gpio``: ``start_knobs`` — MCP3008 pots, encoders, buttons, switches and the status LED through gpiozero;
- ``keyboard``: ``start_keyboard`` — the desktop stand-in (keys in the terminal turn the same controls);
- ``base``: the ``Knobs`` handle every back-end returns.

gpiozero is imported only inside ``gpio`` when knobs are built, so importing this package needs numpy only.
"""
