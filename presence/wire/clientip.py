"""The client's IP address, behind proxies that can be trusted.

Anyone can send ``X-Forwarded-For``; it means something only when the TCP
peer is a proxy the operator trusts (``--trusted-proxy CIDR``). Each proxy
appends the address it received the request from, so the header reads
``client, proxy1, proxy2`` and the peer is the last proxy. Walking from the
right, every address that is itself a trusted proxy is skipped; the first
one that is not is the client (anything to its left was written by that
client, or by proxies nobody vouches for, and could be forged). Without
``X-Forwarded-For``, a trusted peer's ``X-Real-IP`` is used.

TCP-level balancers use the PROXY protocol instead (``haproxy:`` listen
endpoints): there the transport's peer already is the client.
"""

import ipaddress

__all__ = ["TrustedProxies", "parse_address", "counted_network"]


def parse_address(text):
    """An ``ipaddress`` address from a header element, or ``None``. Accepts
    ``1.2.3.4``, ``1.2.3.4:5678``, ``2001:db8::1``, ``[2001:db8::1]:443``;
    an IPv4-mapped IPv6 address is read as the IPv4 address it carries."""
    text = text.strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if address.version == 6 and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def counted_network(ip):
    """What ``--max-connections-per-ip`` counts a client under: an IPv4
    address as itself; an IPv6 address as its /64 (written ``2001:db8::/64``).
    A /64 is the smallest prefix a host or a subscriber is given (RFC 4291
    section 2.5.4, RFC 6177), and a client can pick any address inside it, so
    counting IPv6 addresses one by one would not limit it at all."""
    if ":" not in ip:
        return ip
    address = parse_address(ip)
    if address is None:
        return ip
    if address.version == 4:  # IPv4-mapped
        return str(address)
    network = ipaddress.IPv6Network((address, 64), strict=False)
    return "%s/64" % network.network_address


class TrustedProxies:
    """The proxies whose forwarding headers are believed."""

    def __init__(self, networks=()):
        self.networks = tuple(ipaddress.ip_network(network, strict=False) for network in networks)

    def __bool__(self):
        return bool(self.networks)

    def __eq__(self, other):
        if not isinstance(other, TrustedProxies):
            return NotImplemented
        return self.networks == other.networks

    def trusts(self, address):
        """Whether ``address`` (text or an ``ipaddress`` address) is a
        trusted proxy."""
        if isinstance(address, str):
            address = parse_address(address)
        return address is not None and any(address in network for network in self.networks)

    def client_ip(self, peer, head):
        """``(client_ip, proxy)`` for a request ``head`` received from the TCP
        peer ``peer``: ``proxy`` is the peer when its headers were used,
        else ``None``."""
        if not self.networks or not self.trusts(peer):
            return peer, None
        forwarded = []
        for value in head.get_all("x-forwarded-for"):
            forwarded.extend(value.split(","))
        if forwarded:
            for element in reversed(forwarded):
                address = parse_address(element)
                if address is None:
                    # Garbage in the chain: nothing left of it can be
                    # vouched for.
                    return peer, None
                if not self.trusts(address):
                    return str(address), peer
            # Every hop is a trusted proxy: the first one is the origin.
            return str(parse_address(forwarded[0])), peer
        real_ip = head.get_all("x-real-ip")
        if len(real_ip) == 1:
            address = parse_address(real_ip[0])
            if address is not None:
                return str(address), peer
        return peer, None
