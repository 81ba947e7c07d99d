"""The contracts between the client side of a node and what uses it.

- :class:`ISession`: what a session is to the code above ``net/`` (the hub,
  the dashboard's rows): whose it is, what it can be sent, how it is closed.
  Every protocol's session provides all of it.
- :class:`ISessionHandler`: what a session tells the code above it (the hub,
  the benchmark's echo server, tests): it opened, a message came, it ended.
- :class:`ITicketRedeemer`: where a session redeems its ticket (the hub's
  ticket store), so that ``net/`` needs nothing of Redis.
- :class:`IProtocolConnection`: what a protocol core provides, pure, for the
  session to drive it (docs/architecture.md, "Adding a protocol").

Twisted declares its own interfaces the same way; the tests check every
implementation against them with ``zope.interface.verify``.
"""

import enum

from zope.interface import Attribute, Interface, implementer

__all__ = ["SessionState", "ISession", "ISessionHandler", "SessionHandler", "ITicketRedeemer",
           "TicketStoreUnavailable", "IProtocolConnection"]


class SessionState(enum.Enum):
    """Where a session is in its life. Whether its protocol is closing is
    its protocol core's state (presence/wire/events.py ``ConnectionState``)."""

    #: The request head was read and the handshake is being answered (its
    #: ticket, if it carried one, redeemed first).
    HANDSHAKE = "handshake"
    #: The handshake was answered: the session exists, and must still send
    #: a ticket in its first message before it is ready.
    AUTHENTICATING = "authenticating"
    #: Authenticated (or needing no ticket): the handler hears of it.
    READY = "ready"
    #: The transport is gone.
    ENDED = "ended"


class ISession(Interface):
    """One client connection after its request head, whatever its protocol."""

    id = Attribute("Unique across nodes and restarts; None until the handshake is answered.")
    protocol_name = Attribute("The protocol's name on the dashboard and in metrics.")
    state = Attribute("Its SessionState.")
    ready = Attribute("Whether its state is READY.")
    account = Attribute("Whose it is, from its ticket; None when anonymous.")
    attributes = Attribute("The ticket's attributes (a dict).")
    allowed_channels = Attribute("The channel patterns its ticket allows.")
    info = Attribute("The ticket's info, what other members see (a dict), or None.")
    whisper_channels = Attribute("The channel patterns its ticket may whisper on.")
    server_channels = Attribute("Server-side subscriptions its resume token remembered.")
    client_ip = Attribute("The client's address (after trusted proxies, PROXY protocol).")
    proxy = Attribute("The trusted proxy it came through, or None.")
    ip_mismatch = Attribute("Its ticket was issued for another address (--ticket-ip warn).")
    path = Attribute("The request target of its handshake.")
    origin = Attribute("The Origin of its handshake, or None.")
    user_agent = Attribute("The User-Agent of its handshake, or None.")
    subprotocol = Attribute("The negotiated WebSocket subprotocol, or None.")
    extensions = Attribute("Names of the negotiated extensions (a tuple).")
    extension_details = Attribute("The extensions with their agreed parameters (a tuple).")
    opened_at = Attribute("When its handshake was answered (clock seconds).")
    rtt = Attribute("Round-trip time of the last answered heartbeat, in seconds, or None.")
    rtt_history = Attribute("The last round-trip times, oldest first, or None.")
    last_heartbeat = Attribute("When the last heartbeat pong arrived, or None.")
    last_read_at = Attribute("When its last read was charged to its rate, or None.")
    ping_sent_at = Attribute("When its unanswered heartbeat ping was sent, or None.")
    events = Attribute("Its recent events, (time, text), for the dashboard, or None.")
    messages_in = Attribute("Messages received.")
    messages_out = Attribute("Messages sent.")
    bytes_in = Attribute("Bytes of its stream received.")
    bytes_out = Attribute("Bytes of its stream sent.")
    close_record = Attribute("Its CloseRecord once it ended, else None.")

    def send_document(document):
        """Send a JSON object as a message; False when it is not open."""

    def send_text(text):
        """Send a text message; False when it is not open."""

    def send_binary(data):
        """Send a binary message; False when it is not open or its protocol
        carries no binary messages."""

    def send_prepared(prepared):
        """Send a PreparedMessage (a fan-out), in the form its protocol
        encoded once; False when it is not open or cannot carry it."""

    def close(code, reason):
        """Start closing it with a close code and reason."""

    def note(text):
        """Remember an event of it, for the dashboard."""

    def pause_reading():
        """Stop reading from the client until resume_reading()."""

    def resume_reading():
        """Read from the client again."""


class ISessionHandler(Interface):
    """Receives session life-cycle events, from the reactor thread; it must
    not block. An exception raised here closes only the session concerned,
    with 1011 (internal error); it never reaches other sessions."""

    def session_opened(session):
        """The session is ready (authenticated, or needing no ticket)."""

    def text_received(session, text):
        """A complete, UTF-8-validated text message."""

    def binary_received(session, data):
        """A complete binary message."""

    def session_closed(session, record):
        """A ready session ended; ``record`` is its CloseRecord."""


@implementer(ISessionHandler)
class SessionHandler:
    """An ISessionHandler that does nothing: a base for handlers that care
    about some of the events only."""

    def session_opened(self, session):
        pass

    def text_received(self, session, text):
        pass

    def binary_received(self, session, data):
        pass

    def session_closed(self, session, record):
        pass


class TicketStoreUnavailable(Exception):
    """The ticket store could not answer in time: a session is refused with
    503 at its handshake (4503 after it), not told its ticket is invalid."""


class ITicketRedeemer(Interface):
    """Where sessions redeem their tickets and resume tokens."""

    issued = Attribute("Tickets issued by this node.")
    redeemed = Attribute("Tickets redeemed on this node.")
    refused = Attribute("Redemptions refused on this node (unknown, expired, used).")
    resume_issued = Attribute("Resume tokens given to this node's sessions.")
    resume_redeemed = Attribute("Resume tokens redeemed on this node.")
    resume_refused = Attribute("Resume tokens refused on this node (unknown, expired, used).")

    def redeem(ticket, client_ip=None):
        """A Deferred firing with the redeemed ticket (``account``,
        ``attributes``, ``channels``, ``ip``, and ``resume``: the new
        session's resume token bound to ``client_ip``, or None), or None
        when it is unknown, expired or already used; failing with
        TicketStoreUnavailable when the store cannot answer."""

    def resume(token, client_ip=None):
        """The same for a resume token: its ticket's ``ip`` is the address
        the token is bound to."""

    def ended(token):
        """The session given the resume token ``token`` ended."""

    def forget(token):
        """The session given ``token`` was refused: forget the token."""


class IProtocolConnection(Interface):
    """A protocol core's open connection, sans-I/O (presence/websocket/,
    presence/firepresence/). The cores do not import this (they import
    nothing of Twisted); the tests verify them against it."""

    state = Attribute("Its ConnectionState (presence/wire/events.py).")

    def receive_data(data):
        """Take bytes from the client; events() parses them."""

    def events():
        """The events (presence/wire/events.py) of what was received, lazily:
        each is yielded before the bytes after it are looked at."""

    def data_to_send():
        """Bytes the core queued on its own (the answer to a close, the close
        that failed the connection): the last thing a read writes."""

    def send_data(payload, is_text):
        """One message (``payload``: bytes; UTF-8 when ``is_text``) as bytes
        to write; None when the protocol does not carry it."""

    def send_data_parts(payload, is_text):
        """The same as a list of byte strings for one vectored write (large
        payloads are not copied next to their header); or None."""

    def send_prepared(prepared):
        """A PreparedMessage's form for this connection, cached on it under
        ``prepared_key`` for every connection that encodes it the same way;
        or None when the protocol does not carry it."""

    prepared_key = Attribute(
        "The key under which a PreparedMessage caches this connection's form of it, "
        "looked up first on the fan-out path; None when the connection encodes each "
        "message for itself (its own compression context).")

    heartbeat_ping = Attribute(
        "A static function: heartbeat round number -> (its ping, the same bytes for every "
        "connection of the protocol; the pong payload that answers it).")

    def send_close(code, reason):
        """Start closing (or close, where the protocol's close is final):
        the bytes to write, b"" when a close was sent already."""

    peer_closed = Attribute(
        "The client sent its close: nothing more comes, and the transport can be closed "
        "outright rather than half-closed and drained.")

    def abort(code, reason):
        """The transport is dropped without a (complete) close; record why,
        unless a close was under way."""

    def connection_lost():
        """The transport is gone: the CloseRecord of how it ended."""
