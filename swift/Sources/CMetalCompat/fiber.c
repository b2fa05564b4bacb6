// fiber.c: context switch for kernel fibers (see fiber.h for why it is hand-written).
#if defined(__linux__)
#define _GNU_SOURCE
#include "fiber.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Sanitizers track each thread's stack; a fiber switch changes stacks behind their back, so every
 * switch is announced: AddressSanitizer's start/finish_switch_fiber (or it takes the fiber's stack for
 * a huge overflow of the thread's), ThreadSanitizer's fibers (or it sees the fibers of one OS thread as
 * one thread, and their switches as no synchronisation). Switches synchronise under TSan: fibers of a
 * threadgroup run one at a time and hand over at barriers, which is what orders their memory accesses. */
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MC_ASAN 1
#endif
#if __has_feature(thread_sanitizer)
#define MC_TSAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) && !defined(MC_ASAN)
#define MC_ASAN 1
#endif
#if defined(__SANITIZE_THREAD__) && !defined(MC_TSAN)
#define MC_TSAN 1
#endif
#ifdef MC_ASAN
#include <sanitizer/common_interface_defs.h>
#endif
#ifdef MC_TSAN
#include <sanitizer/tsan_interface.h>
#endif

/*
 * mc_ctx_swap(void **save_sp, void *new_sp): pushes the callee-saved registers on the current stack,
 * stores the stack pointer in *save_sp, loads new_sp and pops the registers saved there. A new
 * fiber's stack is laid out as if it had been switched away from just before mc_ctx_boot, which
 * calls fiber_start(ctx) from two of the restored registers.
 *
 * The floating-point control registers (MXCSR, x87 control word, FPCR) are not switched: every fiber
 * runs kernel code that never changes them.
 */
#if defined(__x86_64__)
#define MC_HAVE_FAST_SWITCH 1
__asm__(
    ".text\n"
    ".p2align 4\n"
    ".globl mc_ctx_swap\n"
    ".hidden mc_ctx_swap\n"
    ".type mc_ctx_swap,@function\n"
    "mc_ctx_swap:\n"
    "    pushq %rbp\n"
    "    pushq %rbx\n"
    "    pushq %r12\n"
    "    pushq %r13\n"
    "    pushq %r14\n"
    "    pushq %r15\n"
    "    movq %rsp, (%rdi)\n"
    "    movq %rsi, %rsp\n"
    "    popq %r15\n"
    "    popq %r14\n"
    "    popq %r13\n"
    "    popq %r12\n"
    "    popq %rbx\n"
    "    popq %rbp\n"
    "    ret\n"
    ".size mc_ctx_swap, .-mc_ctx_swap\n"
    ".p2align 4\n"
    ".type mc_ctx_boot,@function\n"
    "mc_ctx_boot:\n"
    "    movq %r12, %rdi\n"
    "    callq *%r13\n"
    "    ud2\n"
    ".size mc_ctx_boot, .-mc_ctx_boot\n");
/* Saved frame, from the saved stack pointer up: r15 r14 r13 r12 rbx rbp return-address. */
enum { MC_FRAME_WORDS = 7, MC_SLOT_ARG = 3 /* r12 */, MC_SLOT_FN = 2 /* r13 */, MC_SLOT_RET = 6 };
#elif defined(__aarch64__)
#define MC_HAVE_FAST_SWITCH 1
__asm__(
    ".text\n"
    ".p2align 4\n"
    ".globl mc_ctx_swap\n"
    ".hidden mc_ctx_swap\n"
    ".type mc_ctx_swap,%function\n"
    "mc_ctx_swap:\n"
    "    sub sp, sp, #160\n"
    "    stp x19, x20, [sp, #0]\n"
    "    stp x21, x22, [sp, #16]\n"
    "    stp x23, x24, [sp, #32]\n"
    "    stp x25, x26, [sp, #48]\n"
    "    stp x27, x28, [sp, #64]\n"
    "    stp x29, x30, [sp, #80]\n"
    "    stp d8, d9, [sp, #96]\n"
    "    stp d10, d11, [sp, #112]\n"
    "    stp d12, d13, [sp, #128]\n"
    "    stp d14, d15, [sp, #144]\n"
    "    mov x2, sp\n"
    "    str x2, [x0]\n"
    "    mov sp, x1\n"
    "    ldp x19, x20, [sp, #0]\n"
    "    ldp x21, x22, [sp, #16]\n"
    "    ldp x23, x24, [sp, #32]\n"
    "    ldp x25, x26, [sp, #48]\n"
    "    ldp x27, x28, [sp, #64]\n"
    "    ldp x29, x30, [sp, #80]\n"
    "    ldp d8, d9, [sp, #96]\n"
    "    ldp d10, d11, [sp, #112]\n"
    "    ldp d12, d13, [sp, #128]\n"
    "    ldp d14, d15, [sp, #144]\n"
    "    add sp, sp, #160\n"
    "    ret\n"
    ".size mc_ctx_swap, .-mc_ctx_swap\n"
    ".p2align 4\n"
    ".type mc_ctx_boot,%function\n"
    "mc_ctx_boot:\n"
    "    mov x0, x19\n"
    "    blr x20\n"
    "    brk #0\n"
    ".size mc_ctx_boot, .-mc_ctx_boot\n");
/* Saved frame (20 words): x19 x20 ... x28 x29 x30 d8 ... d15. */
enum { MC_FRAME_WORDS = 20, MC_SLOT_ARG = 0 /* x19 */, MC_SLOT_FN = 1 /* x20 */, MC_SLOT_RET = 11 /* x30 */ };
#else
#define MC_HAVE_FAST_SWITCH 0
#endif

#if MC_HAVE_FAST_SWITCH
void mc_ctx_swap(void **save_sp, void *new_sp);
void mc_ctx_boot(void);
#endif

static int use_ucontext;
static pthread_once_t backend_once = PTHREAD_ONCE_INIT;

static void choose_backend(void) {
    const char *env = getenv("METALCOMPAT_UCONTEXT");
    use_ucontext = !MC_HAVE_FAST_SWITCH || (env != NULL && env[0] == '1');
}

int mc_fiber_uses_ucontext(void) {
    pthread_once(&backend_once, choose_backend);
    return use_ucontext;
}

/* The context a switch on this thread is leaving: the one it resumes learns that context's stack. */
static __thread mc_context *switching_from;

static inline void before_switch(mc_context *from, mc_context *to, int exiting) {
    switching_from = from;
#ifdef MC_ASAN
    /* NULL: `from` is finished, so its fake stack (stack-use-after-return detection) can go. */
    __sanitizer_start_switch_fiber(exiting ? NULL : &from->asan_fake_stack, to->stack_bottom, to->stack_size);
#endif
#ifdef MC_TSAN
    /* A thread's own context (the scheduler) is the calling thread's fiber, which may change between
     * dispatches (dispatch.c's caller worker serves whichever thread dispatches). */
    from->tsan_fiber = __tsan_get_current_fiber();
    __tsan_switch_to_fiber(to->tsan_fiber, 0);
#endif
    (void)from;
    (void)to;
    (void)exiting;
}

/* Runs first in a context that was just resumed (or started). */
static inline void after_switch(mc_context *self) {
#ifdef MC_ASAN
    mc_context *from = switching_from;
    __sanitizer_finish_switch_fiber(self->asan_fake_stack, &from->stack_bottom, &from->stack_size);
#endif
    (void)self;
}

/* Where every fiber starts, on its own stack. */
static void fiber_start(mc_context *ctx) {
    ctx->asan_fake_stack = NULL;
    after_switch(ctx);
    ctx->fn(ctx->arg);
    abort(); /* unreachable: fibers never return (see fiber.h) */
}

/* makecontext passes only int arguments: the context's pointer travels as two halves. */
static void uc_trampoline(unsigned hi, unsigned lo) {
    fiber_start((mc_context *)(((uintptr_t)hi << 32) | (uintptr_t)lo));
}

int mc_context_init(mc_context *ctx, char *stack, size_t size, void (*fn)(void *), void *arg) {
    ctx->fn = fn;
    ctx->arg = arg;
    ctx->stack_bottom = stack;
    ctx->stack_size = size;
    ctx->asan_fake_stack = NULL;
#ifdef MC_TSAN
    /* A fresh TSan fiber per initialisation. A run ends in mc_context_exit without returning through
     * fiber_start and fiber_main, so a reused TSan fiber would keep their frames on its shadow call
     * stack; after some thousands of threadgroups that stack overflows (a SEGV inside
     * __tsan_func_entry). Initialisation runs on the scheduler, never on this context's own fiber. */
    if (ctx->tsan_fiber != NULL) __tsan_destroy_fiber(ctx->tsan_fiber);
    ctx->tsan_fiber = __tsan_create_fiber(0);
#endif
    if (mc_fiber_uses_ucontext()) {
        if (ctx->uc == NULL) {
            ctx->uc = malloc(sizeof(ucontext_t));
            if (ctx->uc == NULL) return -1;
        }
        if (getcontext(ctx->uc) != 0) return -1;
        ctx->uc->uc_stack.ss_sp = stack;
        ctx->uc->uc_stack.ss_size = size;
        ctx->uc->uc_link = NULL;
        uintptr_t p = (uintptr_t)ctx;
        makecontext(ctx->uc, (void (*)(void))uc_trampoline, 2, (unsigned)(p >> 32), (unsigned)(p & 0xffffffffu));
        return 0;
    }
#if MC_HAVE_FAST_SWITCH
    /* Once the switch has popped the frame, the stack pointer must be 16-byte aligned: that is where
     * mc_ctx_boot calls fn (the ABI's alignment at a call on both CPUs). */
    uintptr_t top = ((uintptr_t)stack + size) & ~(uintptr_t)15;
    void **frame = (void **)(top - 16 - MC_FRAME_WORDS * sizeof(void *));
    memset(frame, 0, MC_FRAME_WORDS * sizeof(void *));
    frame[MC_SLOT_ARG] = ctx;
    frame[MC_SLOT_FN] = (void *)fiber_start;
    frame[MC_SLOT_RET] = (void *)mc_ctx_boot;
    ctx->sp = frame;
    return 0;
#else
    return -1;
#endif
}

static void raw_switch(mc_context *from, mc_context *to) {
#if MC_HAVE_FAST_SWITCH
    if (!use_ucontext) {
        mc_ctx_swap(&from->sp, to->sp);
        return;
    }
#endif
    if (from->uc == NULL) {
        /* The scheduler's own context: only ever saved into, never started. */
        from->uc = malloc(sizeof(ucontext_t));
        if (from->uc == NULL) abort(); /* cannot continue without somewhere to save the scheduler */
    }
    swapcontext(from->uc, to->uc);
}

void mc_context_switch(mc_context *from, mc_context *to) {
    before_switch(from, to, 0);
    raw_switch(from, to);
    after_switch(from);
}

_Noreturn void mc_context_exit(mc_context *from, mc_context *to) {
    before_switch(from, to, 1);
    raw_switch(from, to);
    abort(); /* unreachable: an exited context is only ever initialised again */
}

void mc_context_free(mc_context *ctx) {
    free(ctx->uc);
    ctx->uc = NULL;
#ifdef MC_TSAN
    if (ctx->tsan_fiber != NULL) __tsan_destroy_fiber(ctx->tsan_fiber);
    ctx->tsan_fiber = NULL;
#endif
}
#endif /* __linux__ */
