"""One exception root for the device side; each subclass also inherits the matching builtin.

Messages name the thing (file, key), the value found and the fix.
"""


class DeviceError(Exception):
    """Root of every error the device side raises on purpose."""


class BundleError(DeviceError, ValueError):
    """A bundle directory cannot be played: missing file, bad checksum, unknown version, wrong shapes."""


class AudioFileError(DeviceError, ValueError):
    """An audio file cannot be read or is unusable (empty, silent, NaN, too short)."""


class ConfigError(DeviceError, ValueError):
    """The appliance config file has a bad key or value."""


class RuntimeNotFound(DeviceError, ImportError):
    """No TFLite interpreter (ai-edge-litert, tflite-runtime, tensorflow) is installed."""


class OutputDeviceError(DeviceError, LookupError):
    """The requested audio output device does not exist or cannot be opened."""
