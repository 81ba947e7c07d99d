"""The client side of a node, on Twisted: every listening port and the
dispatcher that reads a connection's request head and hands it to the
protocol it asks for, the sessions (one read loop for every protocol, the
write path, flow control, tickets, the message rate), heartbeats, deadlines,
and the interfaces the layers above use (:mod:`.interfaces`).

Nothing here imports Redis or the hub: the hub is the sessions' handler
(``ISessionHandler``) and their ticket redeemer (``ITicketRedeemer``), given
to :class:`~presence.net.server.Server` by whoever assembles the node.
"""
