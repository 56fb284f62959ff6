# cython: language_level=3
"""The FLAME keyframe layout as compile-time constants for the compiled decoder and encoder.

The layout's one definition is ``avatar_nb.flame`` (FIELDS, FIXED_COLUMNS,
EXPRESSION_FIELD); C code cannot read a Python module at compile time, so the numbers
are restated here once, ``_flame`` exposes them to Python (``LAYOUT``,
``FIXED_COLUMNS``, ``EXPRESSION_FIELD``, ``KEYFRAMES_FIELD``) and tests/test_layout.py
fails if they disagree with ``avatar_nb.flame`` or with the generated schema.
"""

cdef enum:  # Flame field numbers
    FLAME_TRANSLATION = 1
    FLAME_ROTATION = 2
    FLAME_NECK_POSE = 3
    FLAME_JAW_POSE = 4
    FLAME_EYE_POSE = 5
    FLAME_EYE_LID = 6
    FLAME_EXPRESSION = 7  # the E expression coefficients, after the fixed columns

cdef enum:
    FLAME_FIXED_FIELDS = 6   # fields 1..6 have a fixed width
    FIXED_COLUMNS = 20       # the sum of their widths
    KEYFRAMES_FIELD = 1      # FlameAnimation.keyframes (repeated Flame)

cdef extern from *:
    """
    /* column offset and width of Flame fields 1..6, indexed by field number (0 unused) */
    #if defined(__GNUC__)
    #define AVNB_MAYBE_UNUSED __attribute__((unused))
    #else
    #define AVNB_MAYBE_UNUSED
    #endif
    static const Py_ssize_t avnb_flame_offset[7] AVNB_MAYBE_UNUSED = {0, 0, 3, 6, 9, 12, 18};
    static const Py_ssize_t avnb_flame_width[7] AVNB_MAYBE_UNUSED = {0, 3, 3, 3, 3, 6, 2};
    """
    const Py_ssize_t FLAME_OFFSET "avnb_flame_offset"[7]
    const Py_ssize_t FLAME_WIDTH "avnb_flame_width"[7]
