/**
 * Candidate traces for tuning the decode kernels on the GPU proxy (issue 12 item 5, docs/gpu-proxy.md):
 * one short dry session (a one-token prompt, then `--steps` decode steps) per candidate tuning and batch,
 * each traced under MetalCompat with that tuning, since grids are the host's choice. `replay.py sweep` then
 * times every candidate's decode step and each kernel role in it on one rebuilt heap (the heap's layout
 * does not depend on the tuning), and composes and times the best choices per role.
 *
 *   deno run -A tools/gpu/sweep.ts --model DIR --out .gpu/sweep [--batches 1,8] [--steps 2]
 *     [--in 2x2,1x2 --lm_head 4x1,2x2 --out_proj 1x4,2x4 --ssm 2,4,8]   (a narrower sweep: rows×slices
 *     layouts, splits)
 *
 * The candidates: every out_proj layout (rows per simdgroup 1, 2, 4 × K slices 1, 2, 4) with every SSM
 * split (1, 2, 4, 8), since out_proj's group norm reads one partial sum per SSM block and so must be
 * composed with its split; the in_proj and the lm_head layouts (the same 9 each) cycle through them, each
 * at least once when there are enough candidates (replay.py composes the roles independently).
 * Writes OUT/sweep.json: [{name, batch, tuning}].
 *
 * @module
 */
import { parseArgs } from "node:util";
import { join } from "node:path";
import { traceSession } from "./trace.ts";
import { packTrace } from "./prepare.ts";

/** The 9 matvec layouts: [rows per simdgroup, K slices]. */
export const MATVEC_LAYOUTS: [number, number][] = [1, 2, 4].flatMap((r) =>
  [1, 2, 4].map((k): [number, number] => [r, k])
);
export const SSM_SPLITS = [1, 2, 4, 8];

/** The candidate tunings of one batch size, named for their parameters: every out_proj layout with every
 * split, the in_proj layouts cycling through them. */
export function candidates(
  inLayouts = MATVEC_LAYOUTS,
  outLayouts = MATVEC_LAYOUTS,
  splits = SSM_SPLITS,
  lmLayouts = inLayouts,
): { name: string; tuning: Record<string, number> }[] {
  const out = [];
  let i = 0;
  for (const [outR, outK] of outLayouts) {
    for (const ssmSplit of splits) {
      const [lmR, lmK] = lmLayouts[i % lmLayouts.length];
      const [inR, inK] = inLayouts[i++ % inLayouts.length];
      out.push({
        name: `in${inR}x${inK}-lm${lmR}x${lmK}-out${outR}x${outK}-ssm${ssmSplit}`,
        tuning: {
          matvecRowsPerSimdgroup: inR,
          matvecSplitK: inK,
          lmHeadRowsPerSimdgroup: lmR,
          lmHeadSplitK: lmK,
          outProjRowsPerSimdgroup: outR,
          outProjSplitK: outK,
          ssmSplit,
        },
      });
    }
  }
  return out;
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      model: { type: "string" },
      out: { type: "string", default: ".gpu/sweep" },
      batches: { type: "string", default: "1,8" },
      steps: { type: "string", default: "2" },
      // a narrower sweep: layouts as RxK lists, e.g. --in 2x2,1x2 --out 1x4,2x4 --ssm 2,4,8
      in: { type: "string" },
      lm_head: { type: "string" },
      out_proj: { type: "string" },
      ssm: { type: "string" },
    },
  });
  const layouts = (v?: string) =>
    v ? v.split(",").map((x) => x.split("x").map(Number) as [number, number]) : MATVEC_LAYOUTS;
  if (!values.model) {
    console.error("deno run -A tools/gpu/sweep.ts --model DIR [--out DIR] [--batches 1,8] [--steps 2]");
    Deno.exit(2);
  }
  const manifest = [];
  for (const batch of values.batches!.split(",").map(Number)) {
    const splits = values.ssm ? values.ssm.split(",").map(Number) : SSM_SPLITS;
    const lm = values.lm_head ? layouts(values.lm_head) : layouts(values.in);
    for (const c of candidates(layouts(values.in), layouts(values.out_proj), splits, lm)) {
      const name = `b${batch}-${c.name}`;
      const dir = join(values.out!, name);
      const t0 = performance.now();
      await traceSession({
        model: values.model,
        out: dir,
        batch,
        prompts: [1],
        steps: Number(values.steps),
        dtype: "auto",
        recorded: false,
        dry: true,
        tuning: c.tuning,
        metalOnly: true,
      });
      // gzipped, fills in blobs shared by every candidate (the same heap): OUT/../blobs, as replay.py reads
      await packTrace(
        join(dir, "trace.jsonl"),
        join(dir, "trace.jsonl.gz"),
        join(values.out!, "..", "blobs"),
      );
      await Deno.remove(join(dir, "trace.jsonl"));
      manifest.push({ name, batch, tuning: c.tuning });
      console.error(`traced ${name} (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
    }
  }
  await Deno.writeTextFile(join(values.out!, "sweep.json"), JSON.stringify(manifest, null, 1) + "\n");
}
