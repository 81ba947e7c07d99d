"""The client IP behind proxies: forwarding headers count only from trusted
peers, and the client is the right-most address that is not a trusted proxy."""

import pytest

from presence.wire.clientip import TrustedProxies, counted_network, parse_address
from presence.wire.httphead import RequestHead

TRUSTED = TrustedProxies(["10.0.0.0/8", "2001:db8::/32", "192.0.2.1"])


def head(*fields):
    return RequestHead("GET", "/", (1, 1), [(name.lower(), value) for name, value in fields])


def test_without_trusted_proxies_the_peer_is_the_client():
    assert TrustedProxies().client_ip("203.0.113.9", head(
        ("X-Forwarded-For", "198.51.100.1"))) == ("203.0.113.9", None)


def test_a_spoofed_header_from_an_untrusted_peer_is_ignored():
    assert TRUSTED.client_ip("203.0.113.9", head(
        ("X-Forwarded-For", "198.51.100.1"), ("X-Real-IP", "198.51.100.2"))) \
        == ("203.0.113.9", None)


def test_a_trusted_proxy_names_the_client():
    assert TRUSTED.client_ip("10.1.2.3", head(("X-Forwarded-For", "198.51.100.1"))) \
        == ("198.51.100.1", "10.1.2.3")


def test_the_right_most_untrusted_address_is_the_client():
    # The client forged the first entry; the edge proxy appended the real one.
    assert TRUSTED.client_ip("10.0.0.2", head(
        ("X-Forwarded-For", "1.1.1.1, 198.51.100.7, 10.0.0.1"))) == ("198.51.100.7", "10.0.0.2")


def test_several_header_lines_are_one_list():
    assert TRUSTED.client_ip("10.0.0.2", head(
        ("X-Forwarded-For", "198.51.100.7"), ("X-Forwarded-For", "10.0.0.1"))) \
        == ("198.51.100.7", "10.0.0.2")


def test_when_every_hop_is_trusted_the_first_is_the_origin():
    assert TRUSTED.client_ip("10.0.0.2", head(("X-Forwarded-For", "10.9.9.9, 10.0.0.1"))) \
        == ("10.9.9.9", "10.0.0.2")


def test_garbage_in_the_chain_falls_back_to_the_peer():
    assert TRUSTED.client_ip("10.0.0.2", head(("X-Forwarded-For", "198.51.100.7, junk"))) \
        == ("10.0.0.2", None)


def test_x_real_ip_is_used_when_there_is_no_x_forwarded_for():
    assert TRUSTED.client_ip("192.0.2.1", head(("X-Real-IP", "198.51.100.3"))) \
        == ("198.51.100.3", "192.0.2.1")


def test_ipv6_peers_and_clients():
    assert TRUSTED.client_ip("2001:db8::5", head(("X-Forwarded-For", "[2001:db9::1]:4711"))) \
        == ("2001:db9::1", "2001:db8::5")


def test_an_ipv4_mapped_peer_is_matched_as_ipv4():
    assert TRUSTED.client_ip("::ffff:10.0.0.2", head(("X-Forwarded-For", "198.51.100.1"))) \
        == ("198.51.100.1", "::ffff:10.0.0.2")


@pytest.mark.parametrize("text, expected", [
    ("198.51.100.1", "198.51.100.1"),
    (" 198.51.100.1:8080 ", "198.51.100.1"),
    ("2001:db8::1", "2001:db8::1"),
    ("[2001:db8::1]:443", "2001:db8::1"),
    ("::ffff:192.0.2.1", "192.0.2.1"),
    ("unknown", None),
    ("", None),
    ("999.1.1.1", None),
])
def test_parse_address(text, expected):
    address = parse_address(text)
    assert (str(address) if address is not None else None) == expected


@pytest.mark.parametrize("ip, counted", [
    ("198.51.100.1", "198.51.100.1"),
    ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
    ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
    ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
    ("::1", "::/64"),
    ("::ffff:192.0.2.1", "192.0.2.1"),
    ("fe80::1%eth0", "fe80::/64"),
    ("not an address", "not an address"),
])
def test_ipv4_addresses_are_counted_one_by_one_and_ipv6_by_their_64(ip, counted):
    assert counted_network(ip) == counted
