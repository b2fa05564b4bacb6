// A .metal file's library source: its text with every `#include "name.h"` of a header beside it
// replaced by that header's text. device.makeLibrary(source:) compiles one string and has no files to
// include from, so this is the text MetalSources.swift embeds, MetalCompat hashes, and the parser and
// the C++ view read. `#line` directives keep compiler messages pointing into the right file.

const LOCAL_INCLUDE = /^\s*#\s*include\s+"([^"]+)"\s*(\/\/.*)?$/;

/**
 * `text` (the file `name` in `dir`, shown as `displayDir/name`) with its local includes inlined,
 * recursively; a header included twice, or including itself, is an error naming both files.
 */
export async function librarySource(
  dir: string,
  displayDir: string,
  name: string,
  text: string,
  seen: string[] = [],
): Promise<string> {
  const lines = text.split("\n");
  const out: string[] = [];
  for (const [i, line] of lines.entries()) {
    const m = LOCAL_INCLUDE.exec(line);
    if (!m) {
      out.push(line);
      continue;
    }
    const header = m[1];
    if (seen.includes(header) || header === name) {
      throw new Error(
        `${displayDir}/${name}:${i + 1}: "${header}" is included twice (headers here have no guard)`,
      );
    }
    seen.push(header);
    let body: string;
    try {
      body = await Deno.readTextFile(`${dir}/${header}`);
    } catch {
      throw new Error(`${displayDir}/${name}:${i + 1}: cannot read the included "${header}"`);
    }
    const inlined = await librarySource(dir, displayDir, header, body.replace(/\n$/, ""), seen);
    out.push(`#line 1 "${displayDir}/${header}"`, inlined, `#line ${i + 2} "${displayDir}/${name}"`);
  }
  return out.join("\n");
}
