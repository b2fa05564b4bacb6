// registry.c: the compiled .metal files, found by the hash of their source text.
//
// Generated C++ registers each file at load time; MetalCompat's makeLibrary(source:options:) hashes the
// source it is given and looks the file up here, so a .metal file edited without rerunning the
// generator (and rebuilding) is reported instead of silently running old code.
#if defined(__linux__)
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "mc_host.h"

#define MC_MAX_FILES 4096

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static const mc_file_desc *files[MC_MAX_FILES];
static int32_t n_files;

void mc_register_file(const mc_file_desc *file) {
    pthread_mutex_lock(&registry_lock);
    if (n_files < MC_MAX_FILES) files[n_files++] = file;
    pthread_mutex_unlock(&registry_lock);
}

const mc_file_desc *mc_find_file(const char *hash) {
    const mc_file_desc *found = NULL;
    pthread_mutex_lock(&registry_lock);
    for (int32_t i = 0; i < n_files && found == NULL; i++)
        if (strcmp(files[i]->source_hash, hash) == 0) found = files[i];
    pthread_mutex_unlock(&registry_lock);
    return found;
}

int32_t mc_file_count(void) {
    pthread_mutex_lock(&registry_lock);
    int32_t n = n_files;
    pthread_mutex_unlock(&registry_lock);
    return n;
}

const mc_file_desc *mc_file_at(int32_t index) {
    pthread_mutex_lock(&registry_lock);
    const mc_file_desc *f = index >= 0 && index < n_files ? files[index] : NULL;
    pthread_mutex_unlock(&registry_lock);
    return f;
}

void mc_source_hash(const char *text, size_t length, char out[17]) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < length; i++) {
        if (text[i] == '\r' && i + 1 < length && text[i + 1] == '\n') continue;
        h ^= (unsigned char)text[i];
        h *= 0x100000001b3ull;
    }
    snprintf(out, 17, "%016llx", (unsigned long long)h);
}
#endif /* __linux__ */
