"""Counters a listener keeps about its sessions, for logs, the dashboard and
metrics. Plain integers and dicts: updating them is on the hot path."""

import collections

__all__ = ["ServerStats"]


class ServerStats:
    def __init__(self):
        self.handshakes_accepted = 0
        #: Sessions opened by transport ("websocket", "firepresence").
        self.sessions_opened = collections.Counter()
        #: Refused opening handshakes by kind (``head_too_large``,
        #: ``bad_key``, ``origin``, ``handshake_timeout``, ...).
        self.handshakes_refused = collections.Counter()
        #: Session ends by close code.
        self.closes = collections.Counter()
        #: Connections failed for breaking the protocol, by reason.
        self.protocol_errors = collections.Counter()
        #: Tickets not accepted, by reason (invalid, ip, unavailable,
        #: required, timeout, throttled).
        self.auth_failures = collections.Counter()
        #: Tickets redeemed from another IP than their own (--ticket-ip warn).
        self.ticket_ip_mismatches = 0
        self.heartbeat_timeouts = 0
        #: Operator limits hit, by option (``max-connections``,
        #: ``max-connections-per-ip``, ``max-message-rate``, ``max-fragments``,
        #: ``max-channels-per-session``); docs/operations.md.
        self.limits_hit = collections.Counter()
        # Heartbeat round trips: cumulative counts per bucket (Prometheus'
        # histogram), their number and sum.
        self.rtt_buckets = [0] * len(self.RTT_BUCKETS)
        self.rtt_count = 0
        self.rtt_sum = 0.0
        self.slow_consumers = 0
        # Totals of the sessions that ended (open ones keep their own).
        self.messages_in = 0
        self.messages_out = 0
        self.bytes_in = 0
        self.bytes_out = 0

    #: Upper bounds (seconds) of the heartbeat round-trip histogram.
    RTT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

    def heartbeat_answered(self, rtt):
        buckets = self.rtt_buckets
        for index, bound in enumerate(self.RTT_BUCKETS):
            if rtt <= bound:
                buckets[index] += 1
        self.rtt_count += 1
        self.rtt_sum += rtt

    def session_opened(self, session):
        self.handshakes_accepted += 1
        self.sessions_opened[session.protocol_name] += 1

    def session_closed(self, session, record):
        self.closes[record.code] += 1
        self.messages_in += session.messages_in
        self.messages_out += session.messages_out
        self.bytes_in += session.bytes_in
        self.bytes_out += session.bytes_out
