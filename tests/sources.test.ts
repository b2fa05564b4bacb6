// Generated files must match their sources: a stale manifest would make remote builds miss files.
import assert from "node:assert/strict";
import { manifest } from "../tools/gen_source_manifest.ts";

Deno.test("ffi/sources.ts lists the current swift/ and metal/ files (deno task gen:sources)", () => {
  const current = Deno.readTextFileSync(new URL("../ffi/sources.ts", import.meta.url));
  assert.equal(current, manifest(), "ffi/sources.ts is stale: run `deno task gen:sources`");
});

Deno.test("ffi/version.ts, deno.json and the native library agree on the version", async () => {
  const { VERSION } = await import("../ffi/version.ts");
  const denoJson = JSON.parse(Deno.readTextFileSync(new URL("../deno.json", import.meta.url)));
  assert.equal(VERSION, denoJson.version);
  const engine = Deno.readTextFileSync(new URL("../swift/Sources/MambaMetal/Engine.swift", import.meta.url));
  assert.match(engine, new RegExp(`let mambaVersion = "${VERSION.replaceAll(".", "\\.")}"`));
});

Deno.test("layers: ffi/ (the native library) imports nothing from src/ (the API above it)", () => {
  for (const e of Deno.readDirSync(new URL("../ffi/", import.meta.url))) {
    const text = Deno.readTextFileSync(new URL(`../ffi/${e.name}`, import.meta.url));
    for (const m of text.matchAll(/from\s+"([^"]+)"/g)) {
      assert.ok(!m[1].includes("/src/"), `ffi/${e.name} imports ${m[1]}`);
    }
  }
});
