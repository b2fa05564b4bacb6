// Generated files must match their sources: a stale manifest would make remote builds miss files.
import assert from "node:assert/strict";
import { manifest } from "../tools/gen_source_manifest.ts";

Deno.test("ffi/sources.ts lists the current swift/ and metal/ files (deno task gen:sources)", () => {
  const current = Deno.readTextFileSync(new URL("../ffi/sources.ts", import.meta.url));
  assert.equal(current, manifest(), "ffi/sources.ts is stale: run `deno task gen:sources`");
});
