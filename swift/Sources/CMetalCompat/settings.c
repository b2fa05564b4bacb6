// settings.c: process-wide counters and the checking-mode default.
#if defined(__linux__)
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "mc_host.h"

static _Atomic uint64_t counters[MC_COUNTER_COUNT];

void mc_counter_add(int32_t counter, uint64_t amount) {
    if (counter >= 0 && counter < MC_COUNTER_COUNT)
        atomic_fetch_add_explicit(&counters[counter], amount, memory_order_relaxed);
}

void mc_counters_snapshot(uint64_t *out) {
    for (int i = 0; i < MC_COUNTER_COUNT; i++) out[i] = atomic_load_explicit(&counters[i], memory_order_relaxed);
}

static _Atomic int32_t checking = -1; /* -1: not read from the environment yet */

int32_t mc_checking_enabled(void) {
    int32_t on = atomic_load(&checking);
    if (on < 0) {
        const char *env = getenv("METALCOMPAT_CHECK");
        int32_t from_env = env != NULL && env[0] == '1';
        int32_t expected = -1;
        atomic_compare_exchange_strong(&checking, &expected, from_env);
        on = atomic_load(&checking);
    }
    return on;
}

void mc_set_checking_enabled(int32_t on) { atomic_store(&checking, on != 0); }
#endif /* __linux__ */
