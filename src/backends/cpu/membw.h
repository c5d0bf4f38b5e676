/* membw.h - memory-bandwidth probe: how fast this machine streams a buffer much larger than
 * its last-level cache, with a given number of threads. Decode speed is bounded by this
 * number divided by the bytes of weights read per token. */
#ifndef VB_MEMBW_H
#define VB_MEMBW_H

#include <stddef.h>

#include "threadpool.h"

/* Allocates `bytes` (rounded up to 4 KiB; use >= 512 MiB: several times the L3), fills it,
 * then streams it `reps` times with every thread of tp (tp may be NULL: one thread), each
 * thread reading its own contiguous slice. Returns the best rep's read rate in GB/s
 * (1e9 bytes/s), or a negative value if the buffer could not be allocated. */
double vb_membw_measure(vb_threadpool *tp, size_t bytes, int reps);

#endif
