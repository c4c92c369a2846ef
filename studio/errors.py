"""The one error the studio shows the artist: a sentence naming the file or value and the fix."""


class StudioError(Exception):
    """Shown in the page as it is (HTTP 400 with ``{"error": text}``)."""
