"""OpenPGP public keys, read with the standard library only: the fingerprints of an ASCII-armored
key block (RFC 4880 / RFC 9580), enough to check a downloaded repository key against a pinned one.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable


class OpenPGPError(ValueError):
    """The text is not a readable OpenPGP public key."""


def dearmor(text: str) -> bytes:
    """The binary packets of an ASCII-armored OpenPGP block (RFC 4880, section 6.2)."""
    lines = [line.strip() for line in str(text or "").splitlines()]
    try:
        start = next(i for i, line in enumerate(lines) if line.startswith("-----BEGIN PGP PUBLIC KEY BLOCK"))
    except StopIteration:
        raise OpenPGPError(
            "not an ASCII-armored OpenPGP public key (no BEGIN PGP PUBLIC KEY BLOCK)"
        ) from None
    body: list[str] = []
    in_headers = True
    for line in lines[start + 1 :]:
        if line.startswith("-----END PGP"):
            break
        if in_headers:
            if line == "":
                in_headers = False
            elif ":" not in line:
                in_headers = False
                body.append(line)
            continue
        if line.startswith("="):
            break  # the CRC-24 checksum line
        body.append(line)
    try:
        return base64.b64decode("".join(body), validate=True)
    except ValueError:
        raise OpenPGPError("the OpenPGP key block is not valid base64") from None


def _packets(data: bytes) -> Iterable[tuple[int, bytes]]:
    pos = 0
    while pos < len(data):
        head = data[pos]
        if not head & 0x80:
            raise OpenPGPError(f"bad OpenPGP packet header at byte {pos}")
        if head & 0x40:  # new format
            tag = head & 0x3F
            first = data[pos + 1]
            if first < 192:
                length, pos = first, pos + 2
            elif first < 224:
                length, pos = ((first - 192) << 8) + data[pos + 2] + 192, pos + 3
            elif first == 255:
                length, pos = int.from_bytes(data[pos + 2 : pos + 6], "big"), pos + 6
            else:
                raise OpenPGPError("partial-length OpenPGP packets do not belong in a public key")
        else:  # old format
            tag = (head >> 2) & 0x0F
            size = head & 0x03
            if size == 3:
                raise OpenPGPError("indeterminate-length OpenPGP packets do not belong in a public key")
            width = 1 << size
            length = int.from_bytes(data[pos + 1 : pos + 1 + width], "big")
            pos += 1 + width
        yield tag, data[pos : pos + length]
        pos += length


def openpgp_fingerprints(text: str) -> list[str]:
    """Fingerprints of the primary keys in an armored public key block (v4: SHA-1, v6: SHA-256)."""
    prints = []
    for tag, body in _packets(dearmor(text)):
        if tag != 6 or not body:
            continue
        version = body[0]
        if version == 4:
            digest = hashlib.sha1(b"\x99" + len(body).to_bytes(2, "big") + body).hexdigest()
        elif version == 6:
            digest = hashlib.sha256(b"\x9b" + len(body).to_bytes(4, "big") + body).hexdigest()
        else:
            raise OpenPGPError(f"OpenPGP key version {version} is not supported (only 4 and 6)")
        prints.append(digest.upper())
    if not prints:
        raise OpenPGPError("the OpenPGP block holds no public key")
    return prints
