"""Webhooks: the presence events of the event log (presence/redis/scripts.py
``EVENT_LOG``) POSTed to backends, signed, batched, retried, in order, by
one node at a time through a consumer group of the log.

- :mod:`.settings`: the webhooks' settings and their defaults;
- :mod:`.signing`: the ``X-Presence-Signature`` header, made and checked;
- :mod:`.delivery`: a webhook's delivery loop (lease, read, POST, ack,
  retry, dead letters) and its counts.

A layer of its own between the hub and the app (docs/architecture.md): it
reads Redis (presence/redis/) and speaks HTTP with treq, which the hub may
not use; the service (presence/app/service.py) starts it beside the hub,
and the dashboard reads its counts.
"""
