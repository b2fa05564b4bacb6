/* Packed weight matrices (layout in ops.h) and huge-page memory for them. */
#ifndef MCPU_PACK_H
#define MCPU_PACK_H

#include <stddef.h>

#include "ops.h"

/* Anonymous memory aligned to 2 MiB, asking for transparent huge pages where the OS has them.
 * NULL on failure. Free with the same byte count. */
void *mcpu_alloc_huge(size_t bytes);
void mcpu_free_huge(void *p, size_t bytes);

/* Bytes W takes packed (whole panels, rounded up to a page). */
size_t mcpu_packed_bytes(const mcpu_matrix *W);
/* The packed descriptor of W once packed into dst. */
mcpu_packed mcpu_packed_view(const mcpu_matrix *W, void *dst);
/* Packs panels [p0, p1) of W into dst (callers split the panels over threads). */
void mcpu_pack_panels(const mcpu_matrix *W, void *dst, int p0, int p1);

#endif
