"""The node's metrics in the Prometheus text exposition format (``GET
/metrics`` on the dashboard's port; docs/dashboard.md, Metrics) and, with
``--workers``, the sum of the metrics of every worker of the same parent.

A metric is first a *family*, ``[name, type, help, samples, combine]``
(each sample ``[sample name, labels, value]``), then text: a worker's
families travel as JSON to the worker a scrape landed on
(presence/hub/queries.py ``worker_metrics``), which adds them up sample by
sample (:func:`summed`). ``combine`` says how: ``sum`` for what each worker
counts or holds (counters, open sessions, histogram buckets), ``max`` for
what every worker reads alike from Redis (a webhook's pending events, the
history's memory) or cannot be added (a latency quantile: the largest is
an upper bound).
"""

import collections
import math

from ..net.dispatch import PROTOCOLS
from ..wire.auththrottle import PORTS as AUTH_PORTS
from .admission import REFUSAL_REASONS

__all__ = ["families", "exposition", "prometheus", "summed", "PROTOCOL_NAMES"]

#: Every protocol's name, as sessions and metrics say it.
PROTOCOL_NAMES = tuple(entry.session.protocol_name for entry in PROTOCOLS)

SUM = "sum"
MAX = "max"


def _labels(**labels):
    return "{%s}" % ",".join('%s="%s"' % (name, str(value).replace("\\", "\\\\")
                                          .replace('"', '\\"').replace("\n", "\\n"))
                             for name, value in labels.items())


def prometheus(server, hub=None, dashboard=None):
    """The node's metrics in the Prometheus text exposition format; names
    follow the dashboard's words (sessions, messages, handshakes refused,
    closes, heartbeat round trip, tickets); ``dashboard``: the AdminApp
    serving them, whose refusals are counted too."""
    return exposition(families(server, hub, dashboard))


def families(server, hub=None, dashboard=None):
    """The node's metrics as families (above), in the order they are
    written."""
    found = []

    def metric(name, kind, help_text, samples, combine=SUM):
        found.append([name, kind, help_text,
                      [[name, {label: str(value) for label, value in labels.items()}, value]
                       for labels, value in samples], combine])

    _session_metrics(metric, server)
    _rtt_histogram(found, server.stats)
    _auth_metrics(metric, server)
    if hub is not None:
        _hub_metrics(metric, hub)
    webhooks = getattr(dashboard, "webhooks", None)
    if webhooks is not None:
        _webhook_metrics(metric, webhooks.reports())
    if dashboard is not None:
        metric("presence_dashboard_refused_total", "counter",
               "Dashboard requests refused, by reason (host, origin, csrf, wrong_password, "
               "locked_out).", [({"reason": reason}, dashboard.refused[reason])
                                for reason in REFUSAL_REASONS])
    return found


def exposition(found, comments=()):
    """Families as the text format, after ``comments`` (lines a scraper
    ignores, for the person reading)."""
    lines = ["# " + comment for comment in comments]
    for name, kind, help_text, samples, _ in found:
        lines.append("# HELP %s %s" % (name, help_text))
        lines.append("# TYPE %s %s" % (name, kind))
        for sample, labels, value in samples:
            lines.append("%s%s %s" % (sample, _labels(**labels) if labels else "", value))
    return "\n".join(lines) + "\n"


def summed(answers):
    """The families of several workers (a list of lists of families) as
    one list: each sample (by its name and labels) combined across the
    workers that have it, in the order first seen."""
    merged = collections.OrderedDict()
    for found in answers:
        for name, kind, help_text, samples, combine in found:
            family = merged.setdefault(name, [name, kind, help_text,
                                              collections.OrderedDict(), combine])
            for sample, labels, value in samples:
                key = (sample, tuple(sorted(labels.items())))
                family[3].setdefault(key, [sample, labels, []])[2].append(value)
    return [[name, kind, help_text,
             [[sample, labels, _combined(values, combine)]
              for sample, labels, values in samples.values()], combine]
            for name, kind, help_text, samples, combine in merged.values()]


def _combined(values, combine):
    numbers = [value for value in values if isinstance(value, (int, float))
               and not (isinstance(value, float) and math.isnan(value))]
    if not numbers:
        return "NaN"
    return sum(numbers) if combine == SUM else max(numbers)


def _session_metrics(metric, server):
    """Sessions, messages, bytes, handshakes, closes and the limits hit."""
    stats = server.stats
    by_protocol = collections.Counter(s.protocol_name for s in server.sessions.values())
    totals = collections.Counter(messages_in=stats.messages_in, messages_out=stats.messages_out,
                                 bytes_in=stats.bytes_in, bytes_out=stats.bytes_out)
    for session in server.sessions.values():
        totals["messages_in"] += session.messages_in
        totals["messages_out"] += session.messages_out
        totals["bytes_in"] += session.bytes_in
        totals["bytes_out"] += session.bytes_out
    metric("presence_sessions", "gauge", "Open sessions, by protocol.",
           [({"protocol": p}, by_protocol.get(p, 0)) for p in PROTOCOL_NAMES])
    metric("presence_messages_total", "counter", "Messages, by direction.",
           [({"direction": "in"}, totals["messages_in"]),
            ({"direction": "out"}, totals["messages_out"])])
    metric("presence_bytes_total", "counter", "Bytes of the session streams, by direction.",
           [({"direction": "in"}, totals["bytes_in"]),
            ({"direction": "out"}, totals["bytes_out"])])
    metric("presence_handshakes_accepted_total", "counter", "Opening handshakes accepted.",
           [({}, stats.handshakes_accepted)])
    metric("presence_handshakes_refused_total", "counter",
           "Opening handshakes refused, by reason.",
           [({"reason": k}, v) for k, v in sorted(stats.handshakes_refused.items())])
    metric("presence_closes_total", "counter", "Sessions ended, by close code.",
           [({"code": k}, v) for k, v in sorted(stats.closes.items())])
    metric("presence_protocol_errors_total", "counter",
           "Sessions failed for breaking the protocol.",
           [({}, sum(stats.protocol_errors.values()))])
    metric("presence_heartbeat_timeouts_total", "counter",
           "Sessions closed because a heartbeat went unanswered.", [({}, stats.heartbeat_timeouts)])
    metric("presence_slow_consumers_total", "counter",
           "Sessions dropped for not reading what was sent to them.",
           [({}, stats.slow_consumers)])
    metric("presence_limits_hit_total", "counter",
           "Operator limits hit, by option (docs/operations.md).",
           [({"limit": k}, v) for k, v in sorted(stats.limits_hit.items())])
    metric("presence_connections", "gauge",
           "Client connections open, handshakes in progress included.",
           [({}, server.connections)])


def _rtt_histogram(families, stats):
    """The heartbeat round trips, as a Prometheus histogram (its buckets
    are cumulative counts: the workers' sum bucket by bucket is the sum's)."""
    name = "presence_heartbeat_rtt_seconds"
    samples = [[name + "_bucket", {"le": str(bound)}, count]
               for bound, count in zip(stats.RTT_BUCKETS, stats.rtt_buckets)]
    samples += [[name + "_bucket", {"le": "+Inf"}, stats.rtt_count],
                [name + "_sum", {}, stats.rtt_sum], [name + "_count", {}, stats.rtt_count]]
    families.append([name, "histogram", "Heartbeat round-trip time.", samples, "sum"])


def _auth_metrics(metric, server):
    """Tickets, resume tokens, failed authentications and the throttle."""
    stats = server.stats
    tickets = server.tickets
    metric("presence_tickets_total", "counter", "Tickets issued, redeemed and refused.",
           [({"outcome": outcome}, getattr(tickets, outcome) if tickets is not None else 0)
            for outcome in ("issued", "redeemed", "refused")])
    metric("presence_resume_tokens_total", "counter",
           "Resume tokens given in welcomes (issued), redeemed and refused (unknown, used, "
           "expired, past their maximum age).",
           [({"outcome": outcome},
             getattr(tickets, "resume_" + outcome) if tickets is not None else 0)
            for outcome in ("issued", "redeemed", "refused")])
    metric("presence_auth_failures_total", "counter", "Tickets not accepted, by reason.",
           [({"reason": k}, v) for k, v in sorted(stats.auth_failures.items())])
    throttle = server.auth_throttle
    metric("presence_auth_throttled_total", "counter",
           "Authentication attempts refused unchecked (429) because their address failed "
           "too often lately, by port (client, api).",
           [({"port": port}, throttle.refused[port]) for port in AUTH_PORTS])
    metric("presence_auth_throttled_addresses", "gauge",
           "Addresses whose authentication attempts are refused now.",
           [({}, throttle.throttled_now(server.clock.seconds()))])


def _hub_metrics(metric, hub):
    """The node's cluster side: Redis, reaping, delivery, history."""
    metric("presence_redis_reconnects_total", "counter",
           "Reconnections to Redis after an outage.", [({}, hub.stats.redis_reconnects)])
    metric("presence_redis_errors_total", "counter", "Redis commands that failed.",
           [({}, hub.stats.redis_errors)])
    if getattr(hub, "shard_errors", None) is not None:
        metric("presence_redis_shard_errors_total", "counter",
               "Redis commands that failed on each shard (several --redis): a shard "
               "that does not answer stops only its channels and accounts.",
               [({"shard": str(i)}, count) for i, count in enumerate(hub.shard_errors)])
    metric("presence_nodes_reaped_total", "counter",
           "Dead nodes whose sessions this node took out of presence.",
           [({}, hub.stats.reaped_nodes)])
    metric("presence_reasserted_total", "counter",
           "Times this node found it had been reaped while alive, and re-asserted "
           "its sessions.", [({}, hub.stats.reasserted)])
    metric("presence_bad_redis_messages_total", "counter",
           "Pub/sub messages that could not be delivered, by reason (not JSON, nested "
           "too deep, a bad except list, ...).",
           [({"reason": k}, v) for k, v in sorted(hub.stats.bad_redis_messages.items())])
    metric("presence_delivered_total", "counter",
           "Channel messages written to local sessions.", [({}, hub.stats.delivered)])
    metric("presence_recoveries_total", "counter",
           "Subscribes that asked to recover a channel's history, by outcome "
           "(attempted; succeeded: every publication after the client's offset sent; "
           "failed: another epoch, trimmed past it, or no history).",
           [({"outcome": k}, v) for k, v in sorted(hub.stats.recoveries.items())])
    metric("presence_history_memory_bytes", "gauge",
           "Redis memory of the history of the channels this node's sessions listen "
           "to (MEMORY USAGE, sampled every 30 s).",
           [({}, hub.history.memory["bytes"])], combine=MAX)
    metric("presence_history_channels", "gauge",
           "History channels this node's sessions listen to (in the memory sample).",
           [({}, hub.history.memory["channels"])], combine=MAX)


def _webhook_metrics(metric, reports):
    """Each webhook's counts (this node's deliveries; the cluster's pending
    events and oldest undelivered age, from Redis), labelled by its URL."""
    def each(field):
        return [({"webhook": r["url"]}, r[field]) for r in reports]
    metric("presence_webhook_events_total", "counter",
           "Events this node handed to a webhook, by outcome (delivered: a 2xx; dead: given "
           "up past --webhook-max-age; skipped: filtered out by --webhook-events).",
           [({"webhook": r["url"], "outcome": outcome}, r[outcome]) for r in reports
            for outcome in ("delivered", "dead", "skipped")])
    metric("presence_webhook_requests_total", "counter",
           "Requests this node sent to a webhook, and those that failed (non-2xx, timeout, "
           "no connection).",
           [({"webhook": r["url"], "result": result}, r[field]) for r in reports
            for result, field in (("sent", "requests"), ("failed", "failures"))])
    metric("presence_webhook_retrying", "gauge",
           "Events of the batch this node is retrying (0: none).", each("retrying"))
    metric("presence_webhook_pending", "gauge",
           "Events read from the log and not acknowledged yet, cluster-wide.", each("pending"),
           combine=MAX)
    metric("presence_webhook_oldest_undelivered_seconds", "gauge",
           "Age of the oldest event not delivered yet, cluster-wide (0: none).",
           each("oldest_undelivered_s"), combine=MAX)
    metric("presence_webhook_dead_letters", "gauge",
           "Events kept in the webhook's dead-letter stream, cluster-wide.",
           each("dead_letters"), combine=MAX)
    metric("presence_webhook_latency_seconds", "gauge",
           "From an event to its acknowledged delivery, this node's last 1,000: p50 and p99.",
           [({"webhook": r["url"], "quantile": q}, r[field] / 1000.0
             if r[field] is not None else "NaN")
            for r in reports for q, field in (("0.5", "latency_p50_ms"),
                                              ("0.99", "latency_p99_ms"))], combine=MAX)
    metric("presence_webhook_leading", "gauge",
           "1 while this node holds the webhook's lease (delivers it).",
           [({"webhook": r["url"]}, int(r["leading"])) for r in reports])
