"""Type stubs for avatar_nb._envelope, the Message walker (C-level API; see _envelope.pyx)."""

MESSAGE_TYPES: dict[str, int]
"""MessageType name -> value, as the compiled core writes them."""
DATA_FIELDS: frozenset[int]
"""The ``Message.data`` oneof member numbers the walker reads."""
FIELD_NUMBERS: dict[str, dict[str, int]]
"""Message name -> {field name: number} for every message of the envelope."""
