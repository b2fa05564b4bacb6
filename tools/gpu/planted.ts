/**
 * Planted bugs: copies of real kernels with one mistake each, which the GPU proxy's checks must catch
 * (tests/gpu_proxy.test.ts checks the edits apply; the device run replays them and records the reports).
 *
 * @module
 */

/** One planted variant of a .metal file: `find` must occur exactly once and becomes `replace`. */
export interface PlantedBug {
  /** The variant's file name, as pipelines name it (the base file's kernels, same constants). */
  name: string;
  /** The real file it copies. */
  file: string;
  what: string;
  find: string;
  replace: string;
  /** What must report it. */
  caughtBy: "racecheck" | "simd-check";
}

export const PLANTED: PlantedBug[] = [
  {
    name: "ssm_decode.planted_no_barrier.metal",
    file: "ssm_decode.metal",
    what: "the barrier between the conv stage (writes xs, B, C) and the SSM update (reads them) removed",
    find:
      "            shared[i < rows ? 2 * N + i : i - rows] = silu(acc[t]);\n        }\n    }\n    threadgroup_barrier(mem_flags::mem_threadgroup);\n",
    replace: "            shared[i < rows ? 2 * N + i : i - rows] = silu(acc[t]);\n        }\n    }\n",
    caughtBy: "racecheck",
  },
  {
    name: "matmul.planted_no_barrier.metal",
    file: "matmul.metal",
    what: "the barrier after each k-slice's multiply removed (the next slice overwrites tiles still read)",
    find:
      "                for (int j = 0; j < FN; j++) simdgroup_multiply_accumulate(acc[i][j], a[i], b[j], acc[i][j]);\n" +
      "        }\n        threadgroup_barrier(mem_flags::mem_threadgroup);\n    }\n",
    replace:
      "                for (int j = 0; j < FN; j++) simdgroup_multiply_accumulate(acc[i][j], a[i], b[j], acc[i][j]);\n" +
      "        }\n    }\n",
    caughtBy: "racecheck",
  },
  {
    name: "matvec.planted_divergent_simd_sum.metal",
    file: "matvec.metal",
    what: "simd_sum of the gated norm's group scales reached by half a simdgroup (models of several groups)",
    find:
      "            ss = simd_sum(ss);\n            if (lane == 0) scale[i] = rsqrt(ss / float(group) + MV_EPS);",
    replace:
      "            if (lane < 16) ss = simd_sum(ss);\n            if (lane == 0) scale[i] = rsqrt(ss / float(group) + MV_EPS);",
    caughtBy: "simd-check",
  },
];

/** The planted source; throws when the edit no longer applies (the real kernel changed). */
export function plant(source: string, bug: PlantedBug): string {
  const at = source.indexOf(bug.find);
  if (at < 0 || source.indexOf(bug.find, at + 1) >= 0) {
    throw new Error(
      `planted bug ${bug.name}: the text to replace in metal/${bug.file} is not there exactly once`,
    );
  }
  return source.slice(0, at) + bug.replace + source.slice(at + bug.find.length);
}
