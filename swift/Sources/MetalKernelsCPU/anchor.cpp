// anchor.cpp: keeps MetalKernelsCPU a valid target while metal/ holds no kernels; the compiled kernels
// are the generated/ files (tools/gen_metal_bindings.ts). Compiles to nothing off Linux.
#if defined(__linux__)
extern "C" int mc_kernels_cpu_anchor(void) { return 0; }
#endif
