"""The hub: what a node does with the cluster, through Redis. Channels and
delivery across nodes, presence (who is online, who is in a channel), the
messages clients send it, the node's liveness and the reaping of dead nodes,
disconnects and the dashboard's queries, and tickets.

One room per job (docs/architecture.md draws them):

- :mod:`.hub`: the :class:`~presence.hub.hub.Hub`, which assembles the rooms,
  is the node's session handler and routes what Redis delivers;
- :mod:`.records`: presence records (sessions online, close records);
- :mod:`.events`: the events backends hear of (online, offline, subscribe);
- :mod:`.channels`: channel membership, local routing and delivery;
- :mod:`.vocabulary`: the messages clients send (subscribe, publish, ...);
- :mod:`.liveness`: the node's announcements, reaping, re-assertion;
- :mod:`.pubsub`: what Redis delivers, checked before it is routed;
- :mod:`.control`: closing sessions on any node;
- :mod:`.queries`: the dashboard's questions to every node, both ends;
- :mod:`.tickets`: issuing and redeeming tickets;
- :mod:`.work`: Redis updates in flight, their failures counted;
- :mod:`.settings`: the hub's settings and their defaults.
"""
