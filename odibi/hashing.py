"""blake3 digests, the one hash odibi uses. Imports nothing from odibi but `ids`."""

from __future__ import annotations

from blake3 import blake3

from odibi.ids import Digest

DIGEST_CHARS = 32  # 128 bits of blake3, in hex: plenty for build identity, half the bytes


def digest_bytes(data: bytes) -> Digest:
    return Digest(blake3(data).hexdigest()[:DIGEST_CHARS])


def digest_text(text: str) -> Digest:
    return digest_bytes(text.encode("utf-8"))


def digest_parts(*parts: str) -> Digest:
    """A digest of several strings, unambiguous about where one ends (length-prefixed)."""
    h = blake3()
    for p in parts:
        b = p.encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return Digest(h.hexdigest()[:DIGEST_CHARS])


def new_hasher() -> blake3:
    return blake3()


def finish(h: blake3) -> Digest:
    return Digest(h.hexdigest()[:DIGEST_CHARS])
