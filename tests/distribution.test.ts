// The module as users meet it: imported over HTTP (as from JSR), with no library anywhere but what it
// finds or builds itself. A local server serves only the files `deno publish` would ship.
import assert from "node:assert/strict";
import { FIXTURES, ROOT } from "./helpers.ts";
import { libraryFileName, localBuildPath } from "../ffi/library.ts";
import { cacheKey } from "../ffi/build.ts";

const denoJson = JSON.parse(Deno.readTextFileSync(`${ROOT}deno.json`));
const published: string[] = denoJson.publish.include;

function isPublished(path: string): boolean {
  return published.some((p) => p.endsWith("/") ? path.startsWith(p) : path === p) &&
    !path.includes("/.build/");
}

/** Serves the package's published files; returns its base URL and a way to stop it. */
function servePackage(): { url: string; close: () => Promise<void>; requests: string[] } {
  const requests: string[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const path = decodeURIComponent(new URL(req.url).pathname).replace(/^\/+/, "");
    requests.push(path);
    if (path.includes("..") || !isPublished(path)) return new Response("not found", { status: 404 });
    try {
      const body = await Deno.readFile(ROOT + path);
      const type = path.endsWith(".ts") ? "application/typescript" : "application/octet-stream";
      return new Response(body, { headers: { "content-type": type } });
    } catch {
      return new Response("not found", { status: 404 });
    }
  });
  const { port } = server.addr as Deno.NetAddr;
  return { url: `http://127.0.0.1:${port}/`, close: () => server.shutdown(), requests };
}

/** Runs a script that imports the served module, with exactly the given permissions. */
async function runClient(
  moduleUrl: string,
  cache: string,
  permissions: string[],
  extraEnv: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const script = `
    import { MambaEngine } from "${moduleUrl}mod.ts";
    const engine = await MambaEngine.load(${JSON.stringify(FIXTURES + "tiny-g1")}, {
      backend: "cpu",
      onProgress: (line) => console.error(line),
    });
    const row = engine.prefill([1, 2, 3]);
    console.log(JSON.stringify({ library: engine.libraryPath, vocab: row.length }));
    engine.close();
  `;
  const file = await Deno.makeTempFile({ suffix: ".ts" });
  await Deno.writeTextFile(file, script);
  const out = await new Deno.Command(Deno.execPath(), {
    // --reload of the module's URL: Deno caches remote modules by host and port, and an earlier run (of
    // any checkout) on the same port may have left other sources there.
    args: [
      "run",
      "--quiet",
      "--no-lock",
      `--reload=${moduleUrl}`,
      `--allow-import=${new URL(moduleUrl).host}`,
      ...permissions,
      file,
    ],
    env: { MAMBA_METAL_CACHE: cache, ...extraEnv },
    stdout: "piped",
    stderr: "piped",
  }).output();
  await Deno.remove(file);
  return {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
  };
}

const READ_WRITE = (cache: string) => [`--allow-read`, `--allow-write=${cache}`];
const ALL = (cache: string, host: string) => [
  ...READ_WRITE(cache),
  `--allow-net=${host}`,
  "--allow-ffi",
  "--allow-run=swift",
  "--allow-env",
];

Deno.test("remote import: the library is found in the per-user cache", async () => {
  const local = localBuildPath();
  assert.ok(local, "the test runs from a checkout with a built library (deno task build)");
  const cache = await Deno.makeTempDir({ prefix: "mamba-cache-" });
  const server = servePackage();
  try {
    const entry = `${cache}/${cacheKey()}`;
    await Deno.mkdir(entry, { recursive: true });
    await Deno.copyFile(local!, `${entry}/${libraryFileName()}`);
    const r = await runClient(server.url, cache, ALL(cache, new URL(server.url).host));
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).library, `${entry}/${libraryFileName()}`);
    assert.ok(!server.requests.some((p) => p.startsWith("swift/")), "nothing was fetched to build");
  } finally {
    await server.close();
    await Deno.remove(cache, { recursive: true });
  }
});

Deno.test("remote import: too few permissions name the missing one", async () => {
  const cache = await Deno.makeTempDir({ prefix: "mamba-cache-" });
  const server = servePackage();
  const host = new URL(server.url).host;
  try {
    const entry = `${cache}/${cacheKey()}`;
    await Deno.mkdir(entry, { recursive: true });
    await Deno.copyFile(localBuildPath()!, `${entry}/${libraryFileName()}`);
    const noFfi = await runClient(server.url, cache, ALL(cache, host).filter((p) => p !== "--allow-ffi"));
    assert.notEqual(noFfi.code, 0);
    assert.match(noFfi.stderr, /needs --allow-ffi/);

    const empty = await Deno.makeTempDir({ prefix: "mamba-cache-" });
    const noRun = await runClient(
      server.url,
      empty,
      ALL(empty, host).filter((p) => p !== "--allow-run=swift"),
    );
    assert.notEqual(noRun.code, 0);
    assert.match(noRun.stderr, /needs --allow-run=swift/);
    await Deno.remove(empty, { recursive: true });
  } finally {
    await server.close();
    await Deno.remove(cache, { recursive: true });
  }
});

// A full `swift build -c release` of the fetched sources: minutes on two cores. CI runs it; set
// MAMBA_SKIP_REMOTE_BUILD=1 to skip it locally.
Deno.test({
  name: "remote import with an empty cache: two processes fetch, build and verify the library once",
  ignore: Deno.env.get("MAMBA_SKIP_REMOTE_BUILD") === "1",
  async fn() {
    const cache = await Deno.makeTempDir({ prefix: "mamba-cache-" });
    const server = servePackage();
    const host = new URL(server.url).host;
    try {
      const [a, b] = await Promise.all([
        runClient(server.url, cache, ALL(cache, host)),
        runClient(server.url, cache, ALL(cache, host)),
      ]);
      assert.equal(a.code, 0, a.stderr);
      assert.equal(b.code, 0, b.stderr);
      const lib = `${cache}/${cacheKey()}/${libraryFileName()}`;
      assert.equal(JSON.parse(a.stdout).library, lib);
      assert.equal(JSON.parse(b.stdout).library, lib);
      const builds = [a, b].filter((r) => r.stderr.includes("building libMambaMetal")).length;
      assert.equal(builds, 1, "exactly one process built the library; the other waited for it");
      // Nothing but the finished entry is left in the cache.
      const left = [...Deno.readDirSync(cache)].map((e) => e.name).sort();
      assert.deepEqual(left, [cacheKey()]);
    } finally {
      await server.close();
      await Deno.remove(cache, { recursive: true });
    }
  },
});
