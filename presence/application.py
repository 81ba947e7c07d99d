"""The interface between the transports and what the server does with
sessions (the hub, the benchmark's echo server, tests)."""

__all__ = ["Application"]


class Application:
    """Receives session life-cycle events. Every method is optional.

    Methods are called from the reactor thread and must not block. An
    exception raised here closes only the session concerned, with 1011
    (internal error); it never reaches other sessions.
    """

    def session_opened(self, session):
        """A session completed its opening handshake."""

    def text_received(self, session, text):
        """A complete, UTF-8-validated text message."""

    def binary_received(self, session, data):
        """A complete binary message."""

    def session_closed(self, session, record):
        """The session ended; ``record`` is its
        :class:`~presence.websocket.close.CloseRecord`."""
