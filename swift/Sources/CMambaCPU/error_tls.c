/* Thread-local storage for mamba_last_error(): the message must outlive the failing call and be
 * independent per thread, which C's _Thread_local gives without any Swift runtime machinery. */
#include "mamba_cpu.h"

static _Thread_local char last_error[4096];

char *mcpu_error_buffer(void) { return last_error; }
int32_t mcpu_error_buffer_size(void) { return (int32_t)sizeof last_error; }
