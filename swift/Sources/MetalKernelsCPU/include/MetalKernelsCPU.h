/* MetalKernelsCPU: metal/ kernels compiled as C++ for MetalCompat. Nothing to import: the generated files
 * register their kernel tables with the CMetalCompat runtime at load time (mc_register_file). */
#ifndef METAL_KERNELS_CPU_H
#define METAL_KERNELS_CPU_H
#endif
