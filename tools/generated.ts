// What every generator here shares: compare the files it would write with the tree, write the ones that
// changed (and remove stray ones it no longer makes), and a command line with --check for the tests.

/** The text of `path`, or undefined when there is no such file. */
export async function readIfPresent(path: string): Promise<string | undefined> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

/** A generator's outputs (repo-relative path → text), and files it once made that should go. */
export interface Generated {
  expected: Map<string, string>;
  stray?: string[];
}

/** Files that differ from what the generator would write (missing, changed or stray). */
export async function staleFiles(root: string, g: Generated): Promise<string[]> {
  const stale: string[] = [];
  for (const [path, text] of g.expected) {
    if ((await readIfPresent(`${root}/${path}`)) !== text) stale.push(path);
  }
  return [...stale, ...(g.stray ?? [])];
}

/** Writes every output that changed and removes stray files; returns the paths touched. */
export async function writeFiles(root: string, g: Generated): Promise<string[]> {
  const touched: string[] = [];
  for (const [path, text] of g.expected) {
    if ((await readIfPresent(`${root}/${path}`)) === text) continue;
    await Deno.mkdir(`${root}/${path.slice(0, path.lastIndexOf("/"))}`, { recursive: true });
    await Deno.writeTextFile(`${root}/${path}`, text);
    touched.push(path);
  }
  for (const path of g.stray ?? []) {
    await Deno.remove(`${root}/${path}`);
    touched.push(path);
  }
  return touched;
}

export interface GeneratorSpec {
  /** The outputs for a checkout at `root`. */
  expected: (root: string) => Promise<Map<string, string>>;
  /** Files present under `root` that the generator no longer makes. */
  stray?: (root: string, expected: Map<string, string>) => Promise<string[]>;
  /** The deno task that reruns it, and what it makes, for messages. */
  task: string;
  what: string;
}

/** `[--check] [--root DIR]`: with --check write nothing, list stale files and return 1 if any. */
export async function runGenerator(args: string[], spec: GeneratorSpec): Promise<number> {
  const rootAt = args.indexOf("--root");
  const root = rootAt >= 0 ? args[rootAt + 1] : new URL("..", import.meta.url).pathname.replace(/\/$/, "");
  try {
    const expected = await spec.expected(root);
    const g = { expected, stray: await spec.stray?.(root, expected) };
    if (args.includes("--check")) {
      const stale = await staleFiles(root, g);
      if (stale.length === 0) return 0;
      console.error(`Stale ${spec.what} (run \`deno task ${spec.task}\`, then rebuild):`);
      for (const p of stale) console.error(`  ${p}`);
      return 1;
    }
    for (const p of await writeFiles(root, g)) console.log(`updated ${p}`);
    return 0;
  } catch (e) {
    console.error(e instanceof Error ? e.message : String(e));
    return 2;
  }
}
