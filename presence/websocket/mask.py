"""Unmasking client frames (RFC 6455 section 5.3).

Every client-to-server payload byte is XORed with the 4-byte masking key, so
this runs over every byte a client sends. A per-byte Python loop would cap the
server at a few MB/s; instead the pure-Python path XORs the payload as one big
integer (about 450 MB/s measured here on 64 KiB - 1 MiB payloads), and when the
optional ``wsaccel`` C extension is installed (``pip install
presence[speedups]``) it is used instead (about 1-2.4 GB/s). Set
``PRESENCE_PURE_PYTHON=1`` to force the pure path, e.g. to measure it.
"""

import os

__all__ = ["unmask", "unmask_pure", "ACCELERATED"]


def unmask_pure(mask, data, offset=0):
    """``data`` XOR the repeated ``mask``, starting ``offset`` bytes into the
    masked payload (5.3: octet i is XORed with mask octet i MOD 4)."""
    n = len(data)
    if not n:
        return b""
    if offset & 3:
        shift = offset & 3
        mask = mask[shift:] + mask[:shift]
    key = mask * (n >> 2) + mask[:n & 3]
    return (int.from_bytes(data, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


try:
    if os.environ.get("PRESENCE_PURE_PYTHON"):
        raise ImportError("pure Python requested")
    from wsaccel.xormask import XorMaskerSimple as _XorMasker
except ImportError:
    ACCELERATED = False
    unmask = unmask_pure
else:
    ACCELERATED = True

    def unmask(mask, data, offset=0):
        if offset & 3:
            shift = offset & 3
            mask = mask[shift:] + mask[:shift]
        return _XorMasker(mask).process(data)
