"""The appliance: ``Service`` runs one engine under systemd, unattended, for weeks.

- ``service``: the coordinator's main loop (hours, playlist, reload, restart, status, watchdog);
- ``config``: the one config file, validated at load; ``schedule`` and ``hours``: opening hours;
- ``playlist``: which bundle plays, persisted across reboots; ``status``: the status report's one schema;
- ``health``: the status file, CPU temperature, throttling, clock sync, ``status`` command; ``reporting``: LED state;
- ``clock``: the real clocks; ``systemd``: sd_notify, watchdog, journald logging.
"""
