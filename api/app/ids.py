"""The ids the server makes: a request's X-Request-ID when the client sent none, and every answered penguin's
`prediction_id`. Version-4 UUIDs in hex, made straight from os.urandom: `uuid.uuid4().hex` builds a UUID
object per id, most of its cost, and a big batch needs thousands."""

import os

import numpy as np

# Below this many, one id at a time is cheaper than the array operations.
_FEW = 32


def new_id() -> str:
    """`uuid.uuid4().hex`, without the UUID object."""
    random = bytearray(os.urandom(16))
    random[6] = random[6] & 0x0F | 0x40  # version 4
    random[8] = random[8] & 0x3F | 0x80  # RFC 4122 variant
    return random.hex()


def new_ids(count: int) -> list[str]:
    """`count` ids as `new_id` makes them; many from one read of the random source and a few array
    operations."""
    if count < _FEW:
        return [new_id() for _ in range(count)]
    random = np.frombuffer(os.urandom(16 * count), np.uint8).reshape(count, 16).copy()
    random[:, 6] = random[:, 6] & 0x0F | 0x40
    random[:, 8] = random[:, 8] & 0x3F | 0x80
    text = random.tobytes().hex()
    return [text[start : start + 32] for start in range(0, len(text), 32)]
