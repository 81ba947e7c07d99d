"""What a test hears of twisted.logger: :class:`LoggedLines`, an observer
on the global publisher for the test's duration."""

from twisted.logger import formatEvent, globalLogPublisher

__all__ = ["LoggedLines"]


class LoggedLines:
    """The events logged while attached (``LoggedLines().attach(test)``
    until the test's cleanup): :attr:`lines` as formatted, and
    :attr:`failures`, those that carry a traceback."""

    def __init__(self):
        self.events = []

    def __call__(self, event):
        self.events.append(event)

    def attach(self, test):
        globalLogPublisher.addObserver(self)
        test.addCleanup(globalLogPublisher.removeObserver, self)
        return self

    @property
    def lines(self):
        return [formatEvent(event) for event in self.events]

    @property
    def failures(self):
        return [event for event in self.events if "log_failure" in event]

    def containing(self, text):
        """The lines in which ``text`` occurs."""
        return [line for line in self.lines if text in line]
