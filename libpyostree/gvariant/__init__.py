"""The GVariant serialization format, as GLib writes and reads it (little-endian).

Public API (see ``contract.md``)::

    encode(type_string, value) -> bytes          # always normal form
    decode(type_string, data, *, strict=True)    # strict: normal form only
    Variant(type, value)                         # the value of a ``v``
    Just(value)                                  # explicit Just, for ``mmT``

Value mapping: ``b``→bool; ``y n q i u x t h``→int; ``d``→float; ``s o g``→str;
``ay``→bytes; other ``aT``→list; ``a{KV}``→dict; tuples and dict entries→tuple;
``mT``→None or the value; ``v``→:class:`Variant`.

OSTree's own fixed layouts have hand-tuned readers in :mod:`libpyostree.objects`
that must agree with this generic codec (the tests check that they do).
"""

from ._decode import decode, is_normal_form, offset_size
from ._encode import encode, offset_width, pack_offsets
from ._types import MAX_DEPTH, GVType, is_valid_type_string, parse_type
from ._values import Just, Variant

__all__ = [
    "MAX_DEPTH",
    "GVType",
    "Just",
    "Variant",
    "decode",
    "encode",
    "is_normal_form",
    "is_valid_type_string",
    "offset_size",
    "offset_width",
    "pack_offsets",
    "parse_type",
]
