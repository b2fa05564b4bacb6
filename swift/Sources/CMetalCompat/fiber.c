// fiber.c: context switch for kernel fibers (see fiber.h for why it is hand-written).
#if defined(__linux__)
#define _GNU_SOURCE
#include "fiber.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/*
 * mc_ctx_swap(void **save_sp, void *new_sp): pushes the callee-saved registers on the current stack,
 * stores the stack pointer in *save_sp, loads new_sp and pops the registers saved there. A new
 * fiber's stack is laid out as if it had been switched away from just before mc_ctx_boot, which
 * calls fn(arg) from two of the restored registers.
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

/* makecontext passes only int arguments: the start record's pointer travels as two halves. */
typedef struct uc_start {
    void (*fn)(void *);
    void *arg;
} uc_start;

static void uc_trampoline(unsigned hi, unsigned lo) {
    uc_start *s = (uc_start *)(((uintptr_t)hi << 32) | (uintptr_t)lo);
    s->fn(s->arg);
    abort(); /* unreachable: fibers never return (see fiber.h) */
}

int mc_context_init(mc_context *ctx, char *stack, size_t size, void (*fn)(void *), void *arg) {
    if (mc_fiber_uses_ucontext()) {
        if (ctx->uc == NULL) {
            /* One allocation holds the ucontext and the start record, freed by mc_context_free. */
            ctx->uc = malloc(sizeof(ucontext_t) + sizeof(uc_start));
            if (ctx->uc == NULL) return -1;
        }
        uc_start *s = (uc_start *)(ctx->uc + 1);
        s->fn = fn;
        s->arg = arg;
        if (getcontext(ctx->uc) != 0) return -1;
        ctx->uc->uc_stack.ss_sp = stack;
        ctx->uc->uc_stack.ss_size = size;
        ctx->uc->uc_link = NULL;
        uintptr_t p = (uintptr_t)s;
        makecontext(ctx->uc, (void (*)(void))uc_trampoline, 2, (unsigned)(p >> 32), (unsigned)(p & 0xffffffffu));
        return 0;
    }
#if MC_HAVE_FAST_SWITCH
    /* Once the switch has popped the frame, the stack pointer must be 16-byte aligned: that is where
     * mc_ctx_boot calls fn (the ABI's alignment at a call on both CPUs). */
    uintptr_t top = ((uintptr_t)stack + size) & ~(uintptr_t)15;
    void **frame = (void **)(top - 16 - MC_FRAME_WORDS * sizeof(void *));
    memset(frame, 0, MC_FRAME_WORDS * sizeof(void *));
    frame[MC_SLOT_ARG] = arg;
    frame[MC_SLOT_FN] = (void *)fn;
    frame[MC_SLOT_RET] = (void *)mc_ctx_boot;
    ctx->sp = frame;
    return 0;
#else
    return -1;
#endif
}

void mc_context_switch(mc_context *from, mc_context *to) {
#if MC_HAVE_FAST_SWITCH
    if (!use_ucontext) {
        mc_ctx_swap(&from->sp, to->sp);
        return;
    }
#endif
    if (from->uc == NULL) {
        /* The scheduler's own context: only ever saved into, never started. */
        from->uc = malloc(sizeof(ucontext_t) + sizeof(uc_start));
        if (from->uc == NULL) abort(); /* cannot continue without somewhere to save the scheduler */
    }
    swapcontext(from->uc, to->uc);
}

void mc_context_free(mc_context *ctx) {
    free(ctx->uc);
    ctx->uc = NULL;
}
#endif /* __linux__ */
