// The source hash that ties compiled kernels to their .metal text: FNV-1a 64 over the UTF-8 bytes, with
// "\r\n" read as "\n" (Swift string literals normalize line endings). CMetalCompat's mc_source_hash
// computes the same value at run time.

export function sourceHash(text: string): string {
  const bytes = new TextEncoder().encode(text);
  let h = 0xcbf29ce484222325n;
  const prime = 0x100000001b3n;
  const mask = 0xffffffffffffffffn;
  for (let i = 0; i < bytes.length; i++) {
    if (bytes[i] === 13 && bytes[i + 1] === 10) continue;
    h ^= BigInt(bytes[i]);
    h = (h * prime) & mask;
  }
  return h.toString(16).padStart(16, "0");
}
