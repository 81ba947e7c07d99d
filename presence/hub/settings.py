"""The hub's settings and their defaults: each is defined here once, and
``twistd presence --help`` (presence/app/options.py) shows these values
(docs/configuration.md explains each)."""

import dataclasses
import fnmatch

from ..redis.keys import DEFAULT_EVENT_LOG_MAXLEN, DEFAULT_PREFIX

__all__ = ["HubSettings", "DEFAULTS", "DEFAULT_TICKET_TTL", "HistoryRule", "parse_history_rule",
           "MAX_HISTORY_SIZE", "DEFAULT_RESUME_TTL", "DEFAULT_RESUME_MAX_AGE"]

#: Seconds a ticket stays redeemable: long enough for a page to load and
#: connect, short enough that a leaked ticket is soon worthless.
DEFAULT_TICKET_TTL = 10

#: Seconds a session's resume token stays redeemable after the session
#: ended: a network blip, a node's restart, a phone's network change.
DEFAULT_RESUME_TTL = 60

#: Seconds from the original ticket after which no resume token is
#: redeemable, however often it was renewed: a stolen device does not stay
#: in for more than a day without the backend issuing a ticket again.
DEFAULT_RESUME_MAX_AGE = 24 * 3600


#: Most publications one channel's history may keep (--history SIZE): a
#: recovery reads at most this many, in one Redis call, and sends them in one
#: reactor turn (10,000 of 100 bytes: about 1.5 MB in Redis, some 20 ms).
MAX_HISTORY_SIZE = 10000


@dataclasses.dataclass(frozen=True)
class HistoryRule:
    """``--history PATTERN=SIZE,TTL``: channels matching ``pattern``
    (shell-style, as a ticket's channels) keep their last ``size``
    publications, for ``ttl`` seconds after the last one."""

    pattern: str
    size: int
    ttl: int

    def matches(self, channel):
        return fnmatch.fnmatchcase(channel, self.pattern)


def parse_history_rule(text):
    """``room:*=100,300`` as a HistoryRule; ValueError saying why not."""
    pattern, equals, numbers = text.rpartition("=")
    size, comma, ttl = numbers.partition(",")
    if not equals or not pattern or not comma:
        raise ValueError("give PATTERN=SIZE,TTL, e.g. 'room:*=100,300'")
    try:
        size, ttl = int(size), int(ttl)
    except ValueError:
        raise ValueError("SIZE and TTL must be whole numbers: %r" % numbers) from None
    if not 0 < size <= MAX_HISTORY_SIZE:
        raise ValueError("SIZE must be 1-%d publications" % MAX_HISTORY_SIZE)
    if ttl <= 0:
        raise ValueError("TTL must be seconds, greater than 0")
    return HistoryRule(pattern, size, ttl)


@dataclasses.dataclass
class HubSettings:
    #: Prefix of every Redis key and channel (presence/redis/keys.py).
    prefix: str = DEFAULT_PREFIX
    #: Seconds between a node's announcements; a node silent for three is
    #: dead and its sessions are reaped. Five gives a dead node's users 15 s
    #: of ghost presence at most, for one small write per node per interval.
    node_heartbeat: float = 5.0
    #: Approximate length bound of the Stream carrying client publishes to
    #: backends: a backend down for a while finds the last 100,000 there.
    stream_maxlen: int = 100000
    #: Approximate length bound of the event log, the Stream of every
    #: presence event (presence/redis/keys.py says why this many).
    event_log_maxlen: int = DEFAULT_EVENT_LOG_MAXLEN
    #: Session ends the cluster keeps in Redis for the dashboard.
    closes_kept: int = 1000
    #: Seconds a ticket can be redeemed.
    ticket_ttl: int = DEFAULT_TICKET_TTL
    #: Seconds a resume token is valid after its session ended (0: none).
    resume_ttl: int = DEFAULT_RESUME_TTL
    #: Seconds from the original ticket no resume token outlives.
    resume_max_age: int = DEFAULT_RESUME_MAX_AGE
    #: Seconds an account's leave of a channel (``"presence": "accounts"``)
    #: and its offline wait for it to come back, on any node: a page reload
    #: or a reconnect takes a second or two, and must not show as a leave.
    leave_delay: float = 3.0
    #: Whispers (client-to-client events, not stored) a session may send a
    #: second, on average, and at once: a typing indicator sends one every
    #: few seconds, a cursor ten a second; more is a flood every other
    #: subscriber of the channel pays for.
    max_whisper_rate: float = 10.0
    whisper_burst: int = 20
    #: Bytes of a whisper's data, as JSON: a cursor or a typing state, not a
    #: file (publish through the backend for that).
    max_whisper_size: int = 4096
    #: The channels that keep a history (HistoryRule, first match wins):
    #: none, since history costs Redis memory and every publish a script.
    history: tuple = ()
    #: With --workers: ``HOST:PID``, the machine and the parent process of
    #: this worker, told in its announcements; the workers of one parent
    #: answer a /metrics scrape with their sum (presence/hub/queries.py
    #: ``worker_metrics``). Empty for a node on its own.
    workers_of: str = ""

    def history_rule(self, channel):
        """The HistoryRule of ``channel``, or None: it keeps no history."""
        for rule in self.history:
            if rule.matches(channel):
                return rule
        return None

    @property
    def node_ttl(self):
        """Seconds a node's announcement lives: three heartbeats (at least
        one second, Redis's smallest expiry)."""
        return int(self.node_heartbeat * 3) or 1


DEFAULTS = HubSettings()
