/* Portable kernels: whatever the compiler's baseline vector ISA gives (SSE2 on x86-64, NEON on ARM). */
#define OPS_SUFFIX _generic
#define OPS_NAME "generic"
#include "ops.inc"

const mcpu_ops *mcpu_ops_generic(void) { return &ops_table_generic; }
