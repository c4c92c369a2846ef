"""Laptop-side deploy tooling (``python -m murmur.deploy …``, behind ``make deploy/rollback/logs/status``) and the files
installed on the Pi (install.sh, the unit, the config example, the Pi requirement pins)."""
