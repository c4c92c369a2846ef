"""Test harness for the deploy tool: a loopback "Pi" (a real sshd on 127.0.0.1 with a throw-away key and a
temporary root) and a stand-in ``systemctl``. Not part of a release for the Pi."""
