// anchor.cpp: keeps MetalCompatTestKernels a valid target whatever the test kernels are; the compiled kernels
// are the generated/ files (tools/gen_metal_bindings.ts). Compiles to nothing off Linux.
#if defined(__linux__)
extern "C" int mc_test_kernels_anchor(void) { return 0; }
#endif
