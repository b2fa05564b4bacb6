/**
 * A small random Mamba2 model with the shapes that take the kernels' odd paths, for the GPU proxy:
 * d_model 50 and a group size of 50 (matvec's scalar path: not multiples of 4), d_state 14 (the SSM
 * block's scalar path), 2 groups of 5 heads, head_dim 10, chunk 16 (prompts of 37 tokens end in a
 * partial chunk), state_passing with partial threadgroups (P·N = 140 < 256). Written where asked,
 * never into the repository.
 *
 * @module
 */
import { join } from "node:path";

/** Writes config.json and model.safetensors (f32, or f16 matrices) of the odd model into `dir`. */
export async function writeOddFixture(dir: string, seed = 12, f16 = false): Promise<void> {
  const dModel = 50, nLayer = 2, dState = 14, headDim = 10, nGroups = 2, vocab = 83, chunk = 16;
  const dInner = 2 * dModel, nHeads = dInner / headDim, convDim = dInner + 2 * nGroups * dState;
  const dInProj = 2 * dInner + 2 * nGroups * dState + nHeads;
  const vocabRows = Math.ceil(vocab / 16) * 16;
  let s = seed >>> 0;
  const rand = () => { // mulberry32
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const uniform = (n: number, lo: number, hi: number) =>
    Float32Array.from({ length: n }, () => lo + (hi - lo) * rand());
  const tensors: [string, number[], Float32Array, boolean][] = [
    ["backbone.embedding.weight", [vocabRows, dModel], uniform(vocabRows * dModel, -0.5, 0.5), true],
  ];
  for (let l = 0; l < nLayer; l++) {
    const p = `backbone.layers.${l}.`;
    const r = 1 / Math.sqrt(dModel), o = 1 / Math.sqrt(dInner * nLayer);
    tensors.push(
      [p + "norm.weight", [dModel], uniform(dModel, 0.8, 1.2), false],
      [p + "mixer.in_proj.weight", [dInProj, dModel], uniform(dInProj * dModel, -r, r), true],
      [p + "mixer.conv1d.weight", [convDim, 1, 4], uniform(convDim * 4, -0.5, 0.5), false],
      [p + "mixer.conv1d.bias", [convDim], uniform(convDim, -0.5, 0.5), false],
      [p + "mixer.dt_bias", [nHeads], uniform(nHeads, -4, 0.5), false],
      [
        p + "mixer.A_log",
        [nHeads],
        Float32Array.from({ length: nHeads }, () => Math.log(1 + 15 * rand())),
        false,
      ],
      [p + "mixer.D", [nHeads], uniform(nHeads, 0.5, 1.5), false],
      [p + "mixer.norm.weight", [dInner], uniform(dInner, 0.8, 1.2), false],
      [p + "mixer.out_proj.weight", [dModel, dInner], uniform(dModel * dInner, -o, o), true],
    );
  }
  tensors.push(["backbone.norm_f.weight", [dModel], uniform(dModel, 0.8, 1.2), false]);
  const header: Record<string, unknown> = {};
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const [name, shape, data, big] of tensors) {
    let bytes: Uint8Array;
    if (big && f16) {
      const h = new Uint16Array(data.length);
      const f = new Float32Array(1), u = new Uint32Array(f.buffer);
      for (let i = 0; i < data.length; i++) {
        f[0] = data[i]; // round to nearest even into half (values here are normal halves or zero)
        const b = u[0], e = ((b >>> 23) & 0xff) - 112, m = b & 0x7fffff;
        let v = e <= 0 ? 0 : (e << 10) | (m >>> 13);
        const rem = m & 0x1fff;
        if (e > 0 && (rem > 0x1000 || (rem === 0x1000 && (v & 1)))) v++;
        h[i] = ((b >>> 16) & 0x8000) | v;
      }
      bytes = new Uint8Array(h.buffer);
    } else bytes = new Uint8Array(data.buffer);
    header[name] = {
      dtype: big && f16 ? "F16" : "F32",
      shape,
      data_offsets: [offset, offset + bytes.length],
    };
    chunks.push(bytes);
    offset += bytes.length;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - ((8 + json.length) % 8)) % 8);
  const head = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + head.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(head.length), true);
  out.set(head, 8);
  let at = 8 + head.length;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeFile(join(dir, "model.safetensors"), out);
  const config = {
    d_model: dModel,
    d_intermediate: 0,
    n_layer: nLayer,
    vocab_size: vocab,
    ssm_cfg: { layer: "Mamba2", d_state: dState, headdim: headDim, ngroups: nGroups, chunk_size: chunk },
    attn_layer_idx: [],
    attn_cfg: {},
    rms_norm: true,
    residual_in_fp32: true,
    fused_add_norm: true,
    pad_vocab_size_multiple: 16,
    tie_embeddings: true,
  };
  await Deno.writeTextFile(join(dir, "config.json"), JSON.stringify(config, null, 2) + "\n");
}

if (import.meta.main) await writeOddFixture(Deno.args[0] ?? "/tmp/odd-fixture", 12, Deno.args[1] === "f16");
