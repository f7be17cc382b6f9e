/* Byte offset -> line, for the three line table formats of CPython 3.9-3.13
 * (Objects/lnotab_notes.txt of each version describes its format). */
#include <limits.h>
#include "target.h"

static int
lnotab_line(const unsigned char *p, size_t size, int line, int64_t offset)
{
    /* (bytecode delta, signed line delta) pairs; the line changes once the
     * offset is reached. */
    int64_t addr = 0;
    for (size_t i = 0; i + 1 < size; i += 2) {
        addr += p[i];
        if (addr > offset) {
            break;
        }
        line += (signed char)p[i + 1];
    }
    return line;
}

static int
pairs_line(const unsigned char *p, size_t size, int line, int64_t offset)
{
    /* (size in bytes, signed line delta) of consecutive ranges; a delta of
     * -128 marks a range without a line. */
    int64_t end = 0;
    for (size_t i = 0; i + 1 < size; i += 2) {
        int delta = (signed char)p[i + 1];
        int range_line = -1;
        if (delta != -128) {
            line += delta;
            range_line = line;
        }
        end += p[i];
        if (offset < end) {
            return range_line;
        }
    }
    return -1;
}

static uint64_t
varint(const unsigned char *p, size_t size, size_t *i)
{
    uint64_t value = 0;
    unsigned shift = 0;
    while (*i < size) {
        unsigned char b = p[(*i)++];
        value |= (uint64_t)(b & 63) << shift;
        shift += 6;
        if (!(b & 64) || shift > 60) {
            break;
        }
    }
    return value;
}

static int64_t
svarint(const unsigned char *p, size_t size, size_t *i)
{
    uint64_t u = varint(p, size, i);
    return (u & 1) ? -(int64_t)(u >> 1) : (int64_t)(u >> 1);
}

/* line += delta, unless that leaves int's range (a torn or foreign table). */
static int
add_delta(int *line, int64_t delta)
{
    int64_t next = (int64_t)*line + delta;
    if (next < INT_MIN || next > INT_MAX) {
        return -1;
    }
    *line = (int)next;
    return 0;
}

static int
locations_line(const unsigned char *p, size_t size, int line, int64_t offset)
{
    /* Entries of PEP 657: a head byte 1cccclll (code c, l+1 code units),
     * then what its code needs.  Codes: 15 no location, 14 long form, 13 no
     * columns, 10-12 one line (delta c-10), 0-9 short form (same line). */
    int64_t end = 0;
    size_t i = 0;
    while (i < size) {
        unsigned char head = p[i++];
        if (!(head & 0x80)) {
            return -1;      /* not at an entry: a table the reader misread */
        }
        int code = (head >> 3) & 15;
        int64_t units = (head & 7) + 1;
        int entry_line = line;
        switch (code) {
        case 15:
            entry_line = -1;
            break;
        case 14:
            if (add_delta(&line, svarint(p, size, &i)) < 0) {
                return -1;
            }
            entry_line = line;
            (void)varint(p, size, &i);
            (void)varint(p, size, &i);
            (void)varint(p, size, &i);
            break;
        case 13:
            if (add_delta(&line, svarint(p, size, &i)) < 0) {
                return -1;
            }
            entry_line = line;
            break;
        case 10: case 11: case 12:
            line += code - 10;
            entry_line = line;
            i += 2;
            break;
        default:
            i += 1;
            break;
        }
        end += units * 2;
        if (offset < end) {
            return entry_line;
        }
    }
    return -1;
}

int
li_line_of(int format, const unsigned char *table, size_t size, int firstlineno,
           int64_t offset)
{
    if (offset < 0) {
        return firstlineno;
    }
    switch (format) {
    case LI_LINETABLE_LNOTAB:
        return lnotab_line(table, size, firstlineno, offset);
    case LI_LINETABLE_PAIRS:
        return pairs_line(table, size, firstlineno, offset);
    case LI_LINETABLE_LOCATIONS:
        return locations_line(table, size, firstlineno, offset);
    default:
        return -1;
    }
}
