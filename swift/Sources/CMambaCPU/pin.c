/* Keeps the library loaded for the life of the process.
 *
 * Deno closes a dlopen'ed library when the worker that opened it ends (each test file is one). On
 * Linux the Swift runtime's one-time initialisations run through libdispatch, which leaves a
 * thread-specific value with a destructor on every thread that called in; if the library and its
 * dependencies are unloaded before such a thread exits, the destructor jumps into unmapped memory.
 * Marking this library "no delete" keeps it, and so libdispatch, mapped. */
#if defined(__linux__)
#define _GNU_SOURCE
#include <dlfcn.h>

__attribute__((constructor)) static void mcpu_pin_library(void) {
    Dl_info info;
    if (dladdr((void *)mcpu_pin_library, &info) && info.dli_fname)
        dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
}
#else
typedef int mcpu_pin_not_needed; /* elsewhere: nothing to do, but a C file may not be empty */
#endif
