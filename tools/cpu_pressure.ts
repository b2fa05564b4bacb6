/**
 * How busy the machine is, for the tools that time things (bench_report, compare_llamacpp, loadtest).
 * @module
 */

/** Percent of the last 10 s in which some runnable task waited for a CPU (Linux PSI), or null where
 * /proc/pressure is absent. */
export function cpuPressure(): number | null {
  try {
    const m = /some avg10=([\d.]+)/.exec(Deno.readTextFileSync("/proc/pressure/cpu"));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}
