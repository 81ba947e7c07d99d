"""Command-line options become the settings the server runs with."""

import dataclasses

import pytest
from twisted.python.usage import UsageError

from presence.app.config import hub_settings_from_options, server_settings_from_options
from presence.app.options import Options
from presence.hub.settings import HubSettings
from presence.net.settings import ServerSettings
from presence.redis.connection import DEFAULT_TIMEOUT


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
