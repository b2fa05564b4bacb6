/*
 * fiber.h: minimal stackful coroutines for the threads of one threadgroup.
 *
 * All fibers of a threadgroup run on one OS thread and switch only at barriers and SIMD-group
 * collectives, so a switch must be cheap: a hand-written register swap on x86_64 and aarch64 (callee-
 * saved registers only, no signal mask). ucontext is the fallback elsewhere, or when
 * METALCOMPAT_UCONTEXT=1 asks for it (its swapcontext makes a signal-mask syscall per switch: ~100x
 * slower).
 */
#ifndef MC_FIBER_H
#define MC_FIBER_H

#include <stddef.h>
#include <ucontext.h>

typedef struct mc_context {
    void *sp;        /* fast backend: saved stack pointer */
    ucontext_t *uc;  /* ucontext backend, allocated on first use */
    void (*fn)(void *);
    void *arg;
    /* For the sanitizers, which must be told about every stack switch (fiber.c): the stack (for a
     * thread's own context, learnt when it switches away), AddressSanitizer's fake stack while the
     * context is switched away, ThreadSanitizer's fiber. */
    const void *stack_bottom;
    size_t stack_size;
    void *asan_fake_stack;
    void *tsan_fiber;
} mc_context;

/* 1 when the ucontext backend is in use (no fast switch for this CPU, or METALCOMPAT_UCONTEXT=1). */
int mc_fiber_uses_ucontext(void);

/* Prepares `ctx` to run fn(arg) on the stack [stack, stack + size) at its first resume. fn must never
 * return: it ends by switching away for good. Returns 0, or -1 when out of memory. */
int mc_context_init(mc_context *ctx, char *stack, size_t size, void (*fn)(void *), void *arg);

/* Saves the running context into `from` and resumes `to`. */
void mc_context_switch(mc_context *from, mc_context *to);

/* Leaves `from` for good (its fn has finished; it is never resumed, only initialised again) for `to`. */
_Noreturn void mc_context_exit(mc_context *from, mc_context *to);

/* Releases what mc_context_init allocated (not the stack). */
void mc_context_free(mc_context *ctx);

#endif /* MC_FIBER_H */
