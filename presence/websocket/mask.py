"""Unmasking client frames (RFC 6455 section 5.3).

Every client-to-server payload byte is XORed with the 4-byte masking key, so
this runs over every byte a client sends. A per-byte Python loop would cap the
server at a few MB/s. The pure-Python path XORs a short payload as one big
integer and a longer one as four strided ``bytes.translate`` passes (one
256-byte table per mask octet: about 1 GB/s here). When a C accelerator is
installed it is used instead (``pip install presence[speedups]``), the first
of:

- ``websockets.speedups.apply_mask`` (the websockets library's C function:
  16 bytes per step, about 50 GB/s on 1 MiB here);
- ``wsaccel`` (the one Autobahn|Python uses: a byte loop, about 2.4 GB/s).

``PRESENCE_UNMASK=pure`` (or ``websockets``, ``wsaccel``) picks a path instead,
e.g. to measure it.
docs/performance.md has the measurements.
"""

import os

__all__ = ["unmask", "unmask_pure", "AVAILABLE", "UNMASKING"]

#: ``_XOR_TABLES[b]`` maps every byte to itself XOR ``b``.
_XOR_TABLES = tuple(bytes(i ^ b for i in range(256)) for b in range(256))

#: From this many bytes up, four strided translations beat the big-integer
#: XOR (equal at about 1 KiB, 1.4x at 64 KiB, 2.2x at 1 MiB: measured here).
_TRANSLATE_FROM = 2048


def _rotate(mask, offset):
    """The key for a piece starting ``offset`` bytes into the payload: octet
    i of the payload is XORed with mask octet i MOD 4 (5.3)."""
    shift = offset & 3
    return mask[shift:] + mask[:shift] if shift else mask


def unmask_pure(mask, data, offset=0):
    """``data`` XOR the repeated ``mask``, starting ``offset`` bytes into the
    masked payload (5.3: octet i is XORed with mask octet i MOD 4)."""
    n = len(data)
    if not n:
        return b""
    mask = _rotate(mask, offset)
    if n < _TRANSLATE_FROM:
        key = mask * (n >> 2) + mask[:n & 3]
        return (int.from_bytes(data, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")
    data = bytes(data)  # no copy when it is bytes already; a memoryview has no translate
    out = bytearray(n)  # every byte is set below
    tables = _XOR_TABLES
    out[0::4] = data[0::4].translate(tables[mask[0]])
    out[1::4] = data[1::4].translate(tables[mask[1]])
    out[2::4] = data[2::4].translate(tables[mask[2]])
    out[3::4] = data[3::4].translate(tables[mask[3]])
    return bytes(out)


def _available():
    """Every unmasking path this process can use, fastest first: the C
    accelerators that are installed, then the pure path."""
    found = {}
    try:
        from websockets.speedups import apply_mask
    except ImportError:
        pass
    else:
        def unmask_websockets(mask, data, offset=0):
            # A whole frame's payload starts at offset 0: no rotation call.
            return apply_mask(data, _rotate(mask, offset) if offset else mask)
        found["websockets"] = unmask_websockets
    try:
        from wsaccel.xormask import XorMaskerSimple
    except ImportError:
        pass
    else:
        def unmask_wsaccel(mask, data, offset=0):
            return XorMaskerSimple(_rotate(mask, offset)).process(data)
        found["wsaccel"] = unmask_wsaccel
    found["pure"] = unmask_pure
    return found


#: Name -> function for every path available here (the tests check each one).
AVAILABLE = _available()


def _choose(requested):
    if not requested:
        return next(iter(AVAILABLE))
    if requested not in AVAILABLE:
        raise ImportError("PRESENCE_UNMASK=%s, but the paths available here are: %s"
                          % (requested, ", ".join(AVAILABLE)))
    return requested


#: The path this process uses (the fastest, or ``PRESENCE_UNMASK``), for the
#: start-up log and the benchmarks.
UNMASKING = _choose(os.environ.get("PRESENCE_UNMASK"))
unmask = AVAILABLE[UNMASKING]
