/* The C half of _reader.pxd: the decoders' UTF-8 check (in C, so that no Python object
 * is made for a string that is only validated) and the raising of their errors (out of
 * line and marked cold, so that the compiler inlines the readers' fast paths). Included
 * by Cython-generated code, after Python.h. */
#ifndef AVATAR_NB_READER_H
#define AVATAR_NB_READER_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__GNUC__)
#define AVNB_COLD __attribute__((cold, noinline))
#else
#define AVNB_COLD
#endif

/* Raise ValueError("<what> at byte offset <offset>"), <what> formatted as by
 * PyUnicode_FromFormat; returns -1. */
static AVNB_COLD int avnb_fail(Py_ssize_t offset, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    PyObject *what = PyUnicode_FromFormatV(fmt, ap);
    va_end(ap);
    if (what != NULL) {
        PyErr_Format(PyExc_ValueError, "%U at byte offset %zd", what, offset);
        Py_DECREF(what);
    }
    return -1;
}

/* Strict UTF-8 (Unicode 15, table 3-7), as protobuf checks string fields: no overlong
 * forms, no surrogates (U+D800..DFFF), nothing above U+10FFFF. ASCII runs are checked
 * eight bytes at a time. Returns 1 when valid. */
static inline int avnb_utf8_valid(const uint8_t *s, ptrdiff_t n)
{
    ptrdiff_t i = 0;
    while (i < n) {
        if (n - i >= 8) {
            uint64_t word;
            memcpy(&word, s + i, 8);
            if ((word & 0x8080808080808080ULL) == 0) {
                i += 8;
                continue;
            }
        }
        uint8_t c = s[i];
        if (c < 0x80) {
            i += 1;
            continue;
        }
        ptrdiff_t len;
        uint8_t lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
        if (c >= 0xC2 && c <= 0xDF) {
            len = 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            if (c == 0xE0) lo = 0xA0;
            if (c == 0xED) hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            if (c == 0xF0) lo = 0x90;
            if (c == 0xF4) hi = 0x8F;
        } else {
            return 0;
        }
        if (n - i < len) return 0;
        if (s[i + 1] < lo || s[i + 1] > hi) return 0;
        for (ptrdiff_t k = 2; k < len; k++) {
            if (s[i + k] < 0x80 || s[i + k] > 0xBF) return 0;
        }
        i += len;
    }
    return 1;
}

#endif /* AVATAR_NB_READER_H */
