"""The hub's settings and their defaults: each is defined here once, and
``twistd presence --help`` (presence/app/options.py) shows these values
(docs/configuration.md explains each)."""

import dataclasses

from ..redis.keys import DEFAULT_PREFIX

__all__ = ["HubSettings", "DEFAULTS", "DEFAULT_TICKET_TTL"]

#: Seconds a ticket stays redeemable: long enough for a page to load and
#: connect, short enough that a leaked ticket is soon worthless.
DEFAULT_TICKET_TTL = 10


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
    #: Session ends the cluster keeps in Redis for the dashboard.
    closes_kept: int = 1000
    #: Seconds a ticket can be redeemed.
    ticket_ttl: int = DEFAULT_TICKET_TTL

    @property
    def node_ttl(self):
        """Seconds a node's announcement lives: three heartbeats (at least
        one second, Redis's smallest expiry)."""
        return int(self.node_heartbeat * 3) or 1


DEFAULTS = HubSettings()
