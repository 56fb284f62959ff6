# cython: language_level=3
"""The FLAME payload functions that ``_wire`` calls from C: see _flame.pyx."""

from avatar_nb._reader cimport Reader

cdef object decode_flame_payload(Reader* r)
cdef bytes encode_flame_payload(object keyframes)
