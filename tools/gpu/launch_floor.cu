// The proxy GPU's floor for a chain of dependent dispatches (docs/gpu-proxy.md, issue 12 item 5): what a
// decode step of 74 dependent dispatches costs before any of its own work, measured the way replay.py
// times a step (one CUDA graph, dispatches in stream order, median of many replays).
//
// Each variant is a graph of N dependent kernels; µs per kernel = graph time / N:
//   empty_1x32        one threadgroup of 32 threads that does nothing
//   empty_838x128     in_proj's grid (838 threadgroups of 128) doing nothing
//   link1_838x128     each thread reads one float the previous kernel wrote and writes it back + 1:
//                     one dependent round trip to L2 per dispatch, as every decode dispatch has
//   link2_838x128     two dependent round trips (the second address comes from the first load)
//   stream_838x128    each kernel reads its own 5.1 MB (in_proj's f16 weights at 130m; 24 distinct
//                     buffers, 123 MB, more than the L2) and one float from the previous kernel
//   streamU_838x128   the same bytes, each thread's 3 loads issued before the first is used (unrolled)
//   streamU_out_768x128  out_proj's 2.36 MB (1536 × 768 f16) by 768 threadgroups, loads issued first
//   rw_ssm_b1 / rw_ssm_b8  the SSM state of one layer read and written back (0.79 MB at batch 1 by 96 × 256
//                     threads, 6.3 MB at batch 8 by 384 × 256), float4 per lane, loads issued first
//
//   nvcc -O3 -arch=sm_90 tools/gpu/launch_floor.cu -o /tmp/launch_floor && /tmp/launch_floor [N]
#include <cstdio>
#include <cstdlib>
#include <vector>
#include <algorithm>
#include <cuda_runtime.h>

#define CK(x)                                                                                              \
    do {                                                                                                   \
        cudaError_t e = (x);                                                                               \
        if (e != cudaSuccess) {                                                                            \
            fprintf(stderr, "%s: %s\n", #x, cudaGetErrorString(e));                                        \
            exit(1);                                                                                       \
        }                                                                                                  \
    } while (0)

__global__ void empty_kernel() {}

__global__ void link1(float *buf) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    buf[i] = buf[i] + 1.0f;
}

__global__ void link2(float *buf, const int *next) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    int j = next[i];  // written by nobody in the chain, but a load the second depends on
    buf[i] = buf[j] + 1.0f;
}

// Each thread sums its share of `bytes` (uint4 loads, coalesced) and adds one float of the chain.
__global__ void stream(const uint4 *w, size_t n16, float *buf) {
    int i = blockIdx.x * blockDim.x + threadIdx.x, T = gridDim.x * blockDim.x;
    unsigned s = 0;
    for (size_t k = i; k < n16; k += T) {
        uint4 v = w[k];
        s += v.x ^ v.y ^ v.z ^ v.w;
    }
    buf[i] = buf[i] + (float)(s & 1);
}

// The same stream with a compile-time count of loads per thread, all issued before the first is used.
template <int L>
__global__ void streamU(const uint4 *w, float *buf) {
    int i = blockIdx.x * blockDim.x + threadIdx.x, T = gridDim.x * blockDim.x;
    uint4 v[L];
#pragma unroll
    for (int j = 0; j < L; j++) v[j] = w[i + j * T];
    unsigned s = 0;
#pragma unroll
    for (int j = 0; j < L; j++) s += v[j].x ^ v[j].y ^ v[j].z ^ v[j].w;
    buf[i] = buf[i] + (float)(s & 1);
}

// Each thread reads L float4 of state, scales them and writes them back (the SSM block's state traffic).
template <int L>
__global__ void rw(float4 *st, float *buf) {
    int i = blockIdx.x * blockDim.x + threadIdx.x, T = gridDim.x * blockDim.x;
    float4 v[L];
#pragma unroll
    for (int j = 0; j < L; j++) v[j] = st[i + j * T];
    const float a = buf[i % 1024] * 0.5f + 1.0f;
#pragma unroll
    for (int j = 0; j < L; j++) st[i + j * T] = make_float4(v[j].x * a, v[j].y * a, v[j].z * a, v[j].w * a);
    buf[i] = buf[i] + 1.0f;
}

template <typename F>
static float time_graph(int N, F launch) {
    cudaStream_t st;
    CK(cudaStreamCreate(&st));
    cudaGraph_t g;
    cudaGraphExec_t ge;
    CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal));
    for (int k = 0; k < N; k++) launch(st, k);
    CK(cudaStreamEndCapture(st, &g));
    CK(cudaGraphInstantiate(&ge, g, 0));
    for (int r = 0; r < 5; r++) CK(cudaGraphLaunch(ge, st));
    CK(cudaStreamSynchronize(st));
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    std::vector<float> ms;
    for (int r = 0; r < 50; r++) {
        CK(cudaEventRecord(a, st));
        CK(cudaGraphLaunch(ge, st));
        CK(cudaEventRecord(b, st));
        CK(cudaEventSynchronize(b));
        float t;
        CK(cudaEventElapsedTime(&t, a, b));
        ms.push_back(t);
    }
    std::sort(ms.begin(), ms.end());
    CK(cudaGraphExecDestroy(ge));
    CK(cudaGraphDestroy(g));
    CK(cudaStreamDestroy(st));
    return ms[ms.size() / 2] * 1000.0f / N;  // µs per kernel
}

int main(int argc, char **argv) {
    int N = argc > 1 ? atoi(argv[1]) : 74;
    const int blocks = 838, threads = 128, n = blocks * threads;
    float *buf;
    int *next;
    CK(cudaMalloc(&buf, 2 * n * sizeof(float)));  // room for the larger grids below
    CK(cudaMalloc(&next, n * sizeof(int)));
    std::vector<int> h(n);
    for (int i = 0; i < n; i++) h[i] = (i * 7919) % n;
    CK(cudaMemcpy(next, h.data(), n * sizeof(int), cudaMemcpyHostToDevice));
    CK(cudaMemset(buf, 0, 2 * n * sizeof(float)));
    const size_t wbytes = 3352ull * 768 * 2, n16 = wbytes / 16;
    std::vector<uint4 *> w(24);
    const size_t alloc = 6600000;  // ≥ wbytes and the batch-8 state of one layer (6.3 MB)
    for (auto &p : w) {
        CK(cudaMalloc(&p, alloc));
        CK(cudaMemset(p, 0, alloc));
    }
    printf("{\"kernels\": %d, \"usPerKernel\": {", N);
    printf("\"empty_1x32\": %.3f, ", time_graph(N, [&](cudaStream_t s, int) { empty_kernel<<<1, 32, 0, s>>>(); }));
    printf("\"empty_838x128\": %.3f, ",
           time_graph(N, [&](cudaStream_t s, int) { empty_kernel<<<blocks, threads, 0, s>>>(); }));
    printf("\"link1_838x128\": %.3f, ", time_graph(N, [&](cudaStream_t s, int) { link1<<<blocks, threads, 0, s>>>(buf); }));
    printf("\"link2_838x128\": %.3f, ",
           time_graph(N, [&](cudaStream_t s, int) { link2<<<blocks, threads, 0, s>>>(buf, next); }));
    printf("\"stream_838x128\": %.3f",
           time_graph(N, [&](cudaStream_t s, int k) { stream<<<blocks, threads, 0, s>>>(w[k % 24], n16, buf); }));
    // 5.1 MB = 838 × 128 threads × 3 uint4
    printf(", \"streamU_838x128\": %.3f", time_graph(N, [&](cudaStream_t s, int k) {
               streamU<3><<<blocks, threads, 0, s>>>(w[k % 24], buf);
           }));
    // 2.36 MB = 768 × 128 threads × 1.5 uint4: 2 loads per thread over 768 threadgroups reading 1536·768·2
    // bytes (the second load of half the threads past the matrix reads the next buffer's start)
    printf(", \"streamU_out_768x128\": %.3f", time_graph(N, [&](cudaStream_t s, int k) {
               streamU<1><<<768 * 3 / 2, 128, 0, s>>>(w[k % 24], buf);
           }));
    // SSM state per layer: 24 heads × 64 × 128 floats = 0.79 MB at batch 1, 6.3 MB at batch 8; 24 distinct
    // layers' worth, as in a step
    printf(", \"rw_ssm_b1_96x256\": %.3f", time_graph(N, [&](cudaStream_t s, int k) {
               rw<2><<<96, 256, 0, s>>>((float4 *)w[k % 24], buf);
           }));
    printf(", \"rw_ssm_b8_384x256\": %.3f", time_graph(N, [&](cudaStream_t s, int k) {
               rw<4><<<384, 256, 0, s>>>((float4 *)w[k % 24], buf);
           }));
    printf("}}\n");
    CK(cudaDeviceSynchronize());
    return 0;
}
