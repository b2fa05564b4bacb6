/* Weight repacking and the memory it lives in.
 *
 * Decode reads every weight once per token, so its speed is the memory system's: the matrices are
 * copied once, at load, into anonymous memory backed by 2 MiB pages where the kernel offers them
 * (fewer TLB misses, and prefetch streams that are not cut every 4 KiB), in the panel layout of
 * ops.h. The dtype is kept: f16 and bf16 weights stay half the bytes and are widened in registers. */
#include "pack.h"

#include <string.h>
#include <sys/mman.h>

#define HUGE_PAGE ((size_t)2 << 20)

void *mcpu_alloc_huge(size_t bytes) {
    if (bytes == 0) bytes = 1;
    size_t size = (bytes + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
    /* over-allocate by one huge page so the block can start on a 2 MiB boundary */
    char *raw = mmap(NULL, size + HUGE_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) return NULL;
    char *start = (char *)(((uintptr_t)raw + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE);
    if (start > raw) munmap(raw, (size_t)(start - raw));
    char *end = raw + size + HUGE_PAGE;
    if (end > start + size) munmap(start + size, (size_t)(end - (start + size)));
#ifdef MADV_HUGEPAGE
    madvise(start, size, MADV_HUGEPAGE);
#endif
    return start;
}

void mcpu_free_huge(void *p, size_t bytes) {
    if (!p) return;
    if (bytes == 0) bytes = 1;
    munmap(p, (bytes + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE);
}

static size_t panel_bytes(const mcpu_matrix *W) {
    if (mcpu_is_quant(W->dtype))
        return (size_t)(W->cols / W->group_size) * mcpu_group_bytes(W->dtype, W->group_size, W->scale_dtype);
    return (size_t)MCPU_PANEL * (size_t)W->cols * mcpu_dtype_size(W->dtype);
}

size_t mcpu_packed_bytes(const mcpu_matrix *W) {
    size_t panels = ((size_t)W->rows + MCPU_PANEL - 1) / MCPU_PANEL;
    return (panels * panel_bytes(W) + 4095) / 4096 * 4096; /* the next matrix starts on a page */
}

mcpu_packed mcpu_packed_view(const mcpu_matrix *W, void *dst) {
    int q = mcpu_is_quant(W->dtype);
    return (mcpu_packed){dst, W->dtype, W->rows, W->cols, (W->rows + MCPU_PANEL - 1) / MCPU_PANEL,
                         q ? W->group_size : 0, q ? W->scale_dtype : 0, panel_bytes(W)};
}

/* Code of element (r, c) of a quantized matrix in the contract's row-major form. */
static inline unsigned code_at(const mcpu_matrix *W, int r, int c) {
    const uint8_t *row = (const uint8_t *)W->data + (size_t)r * (size_t)W->cols * mcpu_bits(W->dtype) / 8;
    if (W->dtype == MCPU_Q8) return row[c];
    return (row[c >> 1] >> ((c & 1) * 4)) & 15u;
}

/* One panel of a quantized W in the group-block layout of ops.h. */
static void pack_quant_panel(const mcpu_matrix *W, char *panel, int p) {
    const int G = W->group_size, groups = W->cols / G, q8 = W->dtype == MCPU_Q8;
    const int step = MCPU_STEP(W->dtype), half = MCPU_HALF(W->dtype), per = q8 ? 2 : 4;
    const size_t ss = mcpu_dtype_size(W->scale_dtype), codes = mcpu_group_codes(W->dtype, G);
    for (int g = 0; g < groups; g++) {
        uint8_t *block = (uint8_t *)panel + (size_t)g * mcpu_group_bytes(W->dtype, G, W->scale_dtype);
        for (int i = 0; i < MCPU_PANEL; i++) {
            int r = p * MCPU_PANEL + i, h = i / 8, lane = i % 8, live = r < W->rows;
            for (int s = 0; s < G / step; s++) {
                uint8_t *b = block + (size_t)(2 * s + h) * half + per * lane;
                int k = g * G + s * step;
                for (int c = 0; c < per; c++)
                    b[c] = !live ? 0 : (uint8_t)(q8 ? code_at(W, r, k + c) : code_at(W, r, k + c) | code_at(W, r, k + 4 + c) << 4);
            }
            uint8_t *sc = block + codes + (size_t)i * ss, *bi = sc + MCPU_PANEL * ss;
            if (!live) {
                memset(sc, 0, ss);
                memset(bi, 0, ss);
                continue;
            }
            size_t at = ((size_t)r * (size_t)groups + (size_t)g) * ss;
            memcpy(sc, (const char *)W->scales + at, ss);
            memcpy(bi, (const char *)W->biases + at, ss);
        }
    }
}

void mcpu_pack_panels(const mcpu_matrix *W, void *dst, int p0, int p1) {
    if (mcpu_is_quant(W->dtype)) {
        for (int p = p0; p < p1; p++) pack_quant_panel(W, (char *)dst + (size_t)p * panel_bytes(W), p);
        return;
    }
    const size_t es = mcpu_dtype_size(W->dtype), K = (size_t)W->cols;
    for (int p = p0; p < p1; p++) {
        char *panel = (char *)dst + (size_t)p * MCPU_PANEL * K * es;
        for (int i = 0; i < MCPU_PANEL; i++) {
            int r = p * MCPU_PANEL + i;
            if (r >= W->rows) {
                for (size_t k = 0; k < K; k++) memset(panel + (k * MCPU_PANEL + (size_t)i) * es, 0, es);
                continue;
            }
            const char *row = (const char *)W->data + (size_t)r * K * es;
            if (es == 2) {
                const uint16_t *src = (const uint16_t *)row;
                uint16_t *out = (uint16_t *)panel + i;
                for (size_t k = 0; k < K; k++) out[k * MCPU_PANEL] = src[k];
            } else {
                const float *src = (const float *)row;
                float *out = (float *)panel + i;
                for (size_t k = 0; k < K; k++) out[k * MCPU_PANEL] = src[k];
            }
        }
    }
}
