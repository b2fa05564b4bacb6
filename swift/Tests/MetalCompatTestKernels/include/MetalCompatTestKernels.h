/* MetalCompatTestKernels: the MetalCompat test kernels compiled as C++ for MetalCompat. Nothing to import: the generated files
 * register their kernel tables with the CMetalCompat runtime at load time (mc_register_file). */
#ifndef METAL_COMPAT_TEST_KERNELS_H
#define METAL_COMPAT_TEST_KERNELS_H
#endif
