"""Command-line options become the settings the server runs with."""

import dataclasses
import ipaddress
import os
import tempfile

import pytest
from twisted.internet import endpoints, reactor
from twisted.internet.address import UNIXAddress
from twisted.internet.protocol import Factory
from twisted.python.usage import UsageError
from twisted.trial.unittest import TestCase

from presence.app.config import hub_settings_from_options, server_settings_from_options
from presence.app.options import Options, endpoint_is_loopback
from presence.hub.settings import HistoryRule, HubSettings
from presence.net.settings import ServerSettings
from presence.redis.connection import DEFAULT_TIMEOUT

from .helpers.servers import self_signed_certificate


def parse(*argv):
    options = Options()
    options.parseOptions(list(argv))
    return options


def test_defaults():
    options = parse()
    settings = server_settings_from_options(options)
    assert options["listen"] == ["tcp:8080"]
    assert settings.max_message_size == 1024 * 1024
    assert settings.heartbeat_interval == 30.0
    assert settings.handshake.origins is None
    deflate, = settings.handshake.extensions
    assert (deflate.server_max_window_bits, deflate.client_max_window_bits,
            deflate.server_context_takeover, deflate.client_context_takeover,
            deflate.compression_level, deflate.memory_level, deflate.min_size) == (
        15, 15, False, False, 6, 8, 128)


def test_listen_origin_and_subprotocol_repeat():
    options = parse("--listen", "tcp:1", "--listen", "unix:/tmp/x.sock",
                    "--origin", "https://a.example", "--origin", "https://b.example",
                    "--subprotocol", "v2", "--subprotocol", "v1")
    settings = server_settings_from_options(options)
    assert options["listen"] == ["tcp:1", "unix:/tmp/x.sock"]
    assert settings.handshake.origins == {"https://a.example", "https://b.example"}
    assert settings.handshake.subprotocols == ("v2", "v1")


def test_no_deflate_accepts_no_extension():
    assert server_settings_from_options(parse("--no-deflate")).handshake.extensions == ()


def test_deflate_options():
    deflate, = server_settings_from_options(parse(
        "--deflate-window-bits", "10", "--deflate-client-window-bits", "9",
        "--deflate-level", "1", "--deflate-memory-level", "4", "--deflate-min-size", "0",
        "--deflate-server-context-takeover", "--deflate-client-context-takeover",
    )).handshake.extensions
    assert (deflate.server_max_window_bits, deflate.client_max_window_bits,
            deflate.server_context_takeover, deflate.client_context_takeover,
            deflate.compression_level, deflate.memory_level, deflate.min_size) == (
        10, 9, True, True, 1, 4, 0)


def test_history_is_off_unless_asked_and_the_first_matching_rule_wins():
    assert hub_settings_from_options(parse()).history == ()
    settings = hub_settings_from_options(parse("--history", "room:vip:*=1000,3600",
                                               "--history", "room:*=100,300"))
    assert settings.history == (HistoryRule("room:vip:*", 1000, 3600),
                                HistoryRule("room:*", 100, 300))
    assert settings.history_rule("room:vip:1") == HistoryRule("room:vip:*", 1000, 3600)
    assert settings.history_rule("room:1") == HistoryRule("room:*", 100, 300)
    assert settings.history_rule("lobby") is None
    for bad in ("room:*", "room:*=100", "room:*=0,300", "room:*=100,0", "room:*=10001,1"):
        with pytest.raises(UsageError, match="--history"):
            parse("--history", bad)


@pytest.mark.parametrize("argv", [
    ("--deflate-window-bits", "8"),
    ("--deflate-window-bits", "16"),
    ("--deflate-level", "10"),
    ("--max-message-size", "0"),
    ("--heartbeat", "-1"),
    ("--heartbeat", "1", "--heartbeat-timeout", "11"),
])
def test_bad_values_are_refused(argv):
    with pytest.raises(UsageError):
        parse(*argv)


def test_every_default_of_the_options_is_the_settings_own():
    """One home for every default: what --help shows is what the settings
    hold when nothing is given."""
    options = parse()
    server = server_settings_from_options(options)
    for field in dataclasses.fields(ServerSettings):
        if field.name != "handshake":
            assert getattr(server, field.name) == getattr(ServerSettings(), field.name), field
    assert hub_settings_from_options(options) == HubSettings()
    assert options["redis-timeout"] == DEFAULT_TIMEOUT


# The dashboard without a password: only where Twisted really listens on
# loopback (M-3). Each verdict is checked against a real socket listened on
# by Twisted, so a Twisted that parses endpoint strings differently fails
# here rather than opening the dashboard to the network.

#: Descriptions (port 0; KEY and CERT: a real key and certificate) and
#: whether they listen on loopback only.
LISTENING = [
    ("tcp:0:interface=127.0.0.1", True),
    ("tcp:0:interface=127.0.0.1:interface=0.0.0.0", False),  # Twisted takes the last
    ("tcp:0:interface=0.0.0.0:interface=127.0.0.1", True),
    ("tcp:0:interface=127.5.0.1", True),
    ("tcp:0:interface=localhost", True),
    ("tcp:0", False),
    (r"tcp6:0:interface=\:\:1", True),
    (r"tcp6:0:interface=\:\:", False),
    ("tcp6:0", False),
    ("ssl:0:interface=127.0.0.1:privateKey=KEY:certKey=CERT", True),
    ("ssl:0:interface=127.0.0.1:privateKey=KEY:certKey=CERT:interface=0.0.0.0", False),
    ("haproxy:tcp:0:interface=127.0.0.1", True),
    ("haproxy:tcp:0:interface=127.0.0.1:interface=0.0.0.0", False),
    (r"haproxy:tcp6:0:interface=\:\:1", True),
    ("haproxy:tcp:0", False),
    ("unix:SOCKET", True),
    ("haproxy:unix:SOCKET", True),
]


class EndpointIsLoopbackAgreesWithTwistedTests(TestCase):
    def setUp(self):
        folder = tempfile.mkdtemp(prefix="presence-endpoints-")
        self.folder = folder
        self.key, self.cert = self_signed_certificate(folder)

    def description(self, template, index):
        socket = os.path.join(self.folder, "admin-%d.sock" % index)
        return (template.replace("KEY", self.key).replace("CERT", self.cert)
                .replace("SOCKET", socket))

    def listens_on_loopback(self, description):
        """Where Twisted really listens: a real port, closed at cleanup."""
        port = self.successResultOf(
            endpoints.serverFromString(reactor, description).listen(Factory()))
        self.addCleanup(port.stopListening)
        address = port.getHost()
        if isinstance(address, UNIXAddress):
            return True
        return ipaddress.ip_address(address.host).is_loopback

    def test_each_verdict_is_where_twisted_listens(self):
        for index, (template, loopback) in enumerate(LISTENING):
            description = self.description(template, index)
            with self.subTest(description=template):
                self.assertEqual(endpoint_is_loopback(description), loopback, template)
                self.assertEqual(self.listens_on_loopback(description), loopback,
                                 "Twisted listens elsewhere: %s" % template)


@pytest.mark.parametrize("description", [
    "foo:interface=127.0.0.1",  # a kind Twisted's plugins would decide on
    "systemd:domain=INET:index=0",
    "TCP:8082:interface=127.0.0.1",
])
def test_a_kind_that_is_not_known_to_listen_on_its_interface_is_not_loopback(description):
    assert endpoint_is_loopback(description) is False


@pytest.fixture
def no_password_in_the_environment(monkeypatch):
    monkeypatch.delenv("PRESENCE_ADMIN_PASSWORD", raising=False)


@pytest.mark.usefixtures("no_password_in_the_environment")
def test_the_dashboard_without_a_password_refuses_a_last_interface_that_is_not_loopback():
    with pytest.raises(UsageError, match="needs --admin-password"):
        parse("--admin", "tcp:8082:interface=127.0.0.1:interface=0.0.0.0")
    assert parse("--admin", "tcp:8082:interface=127.0.0.1:interface=0.0.0.0",
                 "--admin-password", "secret")["admin"]


@pytest.mark.usefixtures("no_password_in_the_environment")
def test_the_dashboard_without_a_password_starts_on_ipv6_loopback():
    assert parse("--admin", r"tcp6:8082:interface=\:\:1")["admin"] == r"tcp6:8082:interface=\:\:1"
    assert parse()["admin"] == "tcp:8082:interface=127.0.0.1"


@pytest.mark.usefixtures("no_password_in_the_environment")
def test_an_admin_endpoint_twisted_cannot_parse_is_answered_with_why():
    with pytest.raises(UsageError, match=r"a colon in a value is written \\:"):
        parse("--admin", "tcp6:8082:interface=::1")
