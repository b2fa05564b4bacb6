/* CMetalCompat: the C runtime behind MetalCompat (Linux only; see mc_host.h and mc_kernel_abi.h). */
#ifndef CMETALCOMPAT_H
#define CMETALCOMPAT_H
#include "mc_kernel_abi.h"
#include "mc_host.h"
#endif
