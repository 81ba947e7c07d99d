"""The webhooks' settings and their defaults: each is defined here once, and
``twistd presence --help`` (presence/app/options.py) shows these values
(docs/api.md, "Webhooks", explains them)."""

import dataclasses
import hashlib

__all__ = ["WebhookSettings", "DEFAULTS", "EVENT_NAMES", "webhook_name"]

#: The presence events of the event log, by name.
EVENT_NAMES = ("online", "offline", "member_added", "member_removed", "channel_occupied",
               "channel_vacated")


def webhook_name(url):
    """What a webhook's Redis keys and consumer group are named by: a hash
    of its URL (a URL holds characters keys are better without, and
    perhaps a credential)."""
    return hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class WebhookSettings:
    #: URLs the events are POSTed to (--webhook, repeatable); none: no webhooks.
    urls: tuple = ()
    #: The key of every request's signature (--webhook-secret).
    secret: str = None
    #: The event names delivered (--webhook-events); None: every one.
    events: frozenset = None
    #: Seconds a request may take (connecting, answering, its body) before it
    #: is a failure and retried.
    timeout: float = 5.0
    #: Seconds an event is retried for, from when it happened; then it goes
    #: to the webhook's dead letters. An hour covers a backend's deploy or
    #: restart, and a short outage.
    max_age: float = 3600.0
    #: Events a request carries at most, and seconds of events a batch waits
    #: for before it goes (when fewer than that many come).
    batch_size: int = 100
    batch_wait: float = 0.1
    #: Seconds before the first retry of a failed batch, and the most
    #: between two: doubled each time, with jitter (each wait a random 50-100%
    #: of its value), so that a backend coming back is not hit by every
    #: node's retries at once.
    retry_min: float = 1.0
    retry_max: float = 60.0
    #: Seconds a node's lease on delivering a webhook lasts unrenewed (it is
    #: renewed every third of it): a node that dies is replaced this soon.
    lease: float = 5.0
    #: Dead letters kept per webhook (about: the stream is trimmed).
    dead_letters_kept: int = 10000

    def wants(self, name):
        return self.events is None or name in self.events


DEFAULTS = WebhookSettings()
