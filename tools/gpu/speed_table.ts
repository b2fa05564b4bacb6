/**
 * Turns the device run's timing.json (replay.py time) into bench/results/gpu-proxy.json and a markdown
 * table for docs/gpu-proxy.md. Rows are per token: a batch-B decode step's µs are divided by B.
 *
 *   deno run -A tools/gpu/speed_table.ts TIMING_JSON… [--out bench/results/gpu-proxy.json] [--date YYYY-MM-DD]
 *
 * Several timing files (calls on the same machine) are merged; each row keeps the fraction of the copy
 * bandwidth measured in its own run, and `runs` lists each run's bandwidth.
 *
 * @module
 */
import { parseArgs } from "node:util";

interface Row {
  model: string;
  dtype: string;
  batch: number;
  kind: string;
  role?: string;
  us: number;
  usMin?: number;
  bytes: number;
  GBs: number | null;
  fraction: number | null;
  dispatches?: number;
  usPerDispatch?: number;
  grid?: number[];
  threadgroup?: number[];
  tokensPerSecond?: number;
}

/** The gpu-proxy.json object: {gpu, copyBandwidthGBs, rows: [{model, dtype, batch, kind, us, bytes, fraction, …}]}. */
export function speedTable(
  timing: { gpu: string; copyBandwidthGBs: number; sms?: number; results: { trace?: string; rows: Row[] }[] },
  date: string,
) {
  // Each row names its traced session (e.g. 130m-f16-b8-tuned: the same shape traced with another tuning).
  const withSession = timing.results.flatMap((r) =>
    r.rows.map((row) => ({ ...row, session: r.trace?.split("/").filter((x) => x).pop() }))
  );
  const rows = withSession.map((r) => {
    const perToken = r.kind === "decode_step" || r.role?.match(/^(in_proj|out_proj|lm_head)$/) ||
      r.kind === "ssm_decode_block" || r.kind === "embedding_gather";
    const out: Record<string, unknown> = {
      model: r.model,
      dtype: r.dtype,
      batch: r.batch,
      kind: r.kind,
      ...(r.session ? { session: r.session } : {}),
      ...(r.role ? { role: r.role } : {}),
      us: r.us,
      bytes: r.bytes,
      GBs: r.GBs,
      fraction: r.fraction,
      dispatches: r.dispatches,
    };
    if (perToken) out.usPerToken = Math.round(r.us / r.batch * 100) / 100;
    if (r.usPerDispatch !== undefined) out.usPerDispatch = Math.round(r.usPerDispatch * 100) / 100;
    if (r.grid) out.grid = r.grid;
    if (r.threadgroup) out.threadgroup = r.threadgroup;
    if (r.tokensPerSecond) out.tokensPerSecond = Math.round(r.tokensPerSecond);
    return out;
  });
  return {
    note:
      "GPU proxy (docs/gpu-proxy.md): the Metal backend's traced plan replayed on an NVIDIA GPU through a CUDA " +
      "shim. Race-freedom and streaming behaviour transfer to Apple GPUs; absolute speeds do not, and the " +
      "simdgroup_matrix emulation says nothing about Apple's matrix units. us: median of CUDA-graph replays; " +
      "bytes: the least a dispatch must move (each input read once, each output written once); fraction: of " +
      "the device-to-device copy bandwidth measured in the same run.",
    date,
    gpu: timing.gpu,
    sms: timing.sms,
    copyBandwidthGBs: Math.round(timing.copyBandwidthGBs),
    rows,
  };
}

/** Markdown: decode steps and prefills per model/dtype/batch, then the decode step's kernels for 130m. */
export function markdown(table: ReturnType<typeof speedTable>): string {
  const rows = table.rows as Record<string, unknown>[];
  const out = [
    "| session | model | dtype | batch | decode step µs | µs/token | GB/s | of copy BW | prefill 512 tok/s |",
    "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
  ];
  for (const r of rows.filter((x) => x.kind === "decode_step")) {
    const pre = rows.find((x) => x.session === r.session && x.kind === "prefill_512");
    out.push(
      `| ${r.session ?? ""} | ${r.model} | ${r.dtype} | ${r.batch} | ${r.us} | ${r.usPerToken} | ${r.GBs} | ${
        (100 * (r.fraction as number)).toFixed(1)
      } % | ${pre?.tokensPerSecond ?? "—"} |`,
    );
  }
  out.push(
    "",
    "| session | kernel | role | dispatches | grid × threadgroup | µs/step | µs/dispatch | GB/s | of copy BW |",
  );
  out.push("| --- | --- | --- | ---: | --- | ---: | ---: | ---: | ---: |");
  for (
    const r of rows.filter((x) =>
      x.model === "130m" && x.dtype === "f16" && x.kind !== "decode_step" &&
      !String(x.kind).startsWith("prefill")
    )
  ) {
    const g = r.grid as number[] | undefined, t = r.threadgroup as number[] | undefined;
    out.push(
      `| ${r.session ?? `${r.model} ${r.dtype} b${r.batch}`} | ${r.kind} | ${
        r.role ?? ""
      } | ${r.dispatches} | ${g ? `(${g.join(", ")}) × ${t![0] * t![1] * t![2]}` : ""} | ${r.us} | ${
        r.usPerDispatch ?? ""
      } | ${r.GBs ?? "—"} | ${r.fraction ? (100 * (r.fraction as number)).toFixed(1) + " %" : "—"} |`,
    );
  }
  return out.join("\n");
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    allowPositionals: true,
    options: { out: { type: "string", default: "bench/results/gpu-proxy.json" }, date: { type: "string" } },
  });
  const timings = await Promise.all(positionals.map(async (p) => JSON.parse(await Deno.readTextFile(p))));
  const merged = { ...timings[0], results: timings.flatMap((t) => t.results) };
  const table = {
    ...speedTable(merged, values.date ?? new Date().toISOString().slice(0, 10)),
    runs: timings.map((t) => ({
      copyBandwidthGBs: Math.round(t.copyBandwidthGBs),
      traces: t.results.map((r: { trace: string }) => r.trace),
    })),
  };
  await Deno.writeTextFile(values.out!, JSON.stringify(table, null, 1) + "\n");
  console.log(markdown(table));
}
