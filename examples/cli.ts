/**
 * Command-line helpers shared by the generate and serve commands: option parsing that accepts negative
 * numbers as values and numbers checked with messages that name the option.
 *
 * @module
 */
import { parseArgs } from "node:util";

/** A `node:util` parseArgs option table. */
export type OptionTable = Record<string, { type: "string" | "boolean"; multiple?: boolean; short?: string }>;

/** Prints `error: message` on stderr and exits with status 1. */
export function fail(message: string): never {
  console.error(`error: ${message}`);
  Deno.exit(1);
}

/**
 * parseArgs over `argv` (a leading `--`, as `deno task x -- …` passes it, is dropped). A value that
 * starts with a dash but is a number (`--max-tokens -5`) is taken as the value, so that the range check
 * can say what is wrong, instead of parseArgs' "ambiguous" message.
 */
export function parseCli(argv: string[], options: OptionTable, help: string): Record<string, unknown> {
  const args = argv[0] === "--" ? argv.slice(1) : [...argv];
  const joined: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const name = args[i].startsWith("--") ? args[i].slice(2) : undefined;
    const next = args[i + 1];
    if (name && options[name]?.type === "string" && next !== undefined && /^-\d|^-\.\d/.test(next)) {
      joined.push(`--${name}=${next}`);
      i++;
    } else {
      joined.push(args[i]);
    }
  }
  try {
    return parseArgs({ args: joined, options, strict: true }).values as Record<string, unknown>;
  } catch (e) {
    fail(`${(e as Error).message}\n\n${help}`);
  }
}

/** The number given for `--name` (or `fallback`), checked against a range (`above`: an exclusive lower bound). */
export function numberOption(
  name: string,
  value: unknown,
  fallback: number,
  range: { min?: number; above?: number; max?: number; integer?: boolean } = {},
): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  const { min, above, max, integer = false } = range;
  const low = above !== undefined ? `(${above}` : min !== undefined ? `[${min}` : undefined;
  const bounds = low && max !== undefined
    ? ` in ${low}, ${max}]`
    : above !== undefined
    ? ` > ${above}`
    : min !== undefined
    ? ` ≥ ${min}`
    : max !== undefined
    ? ` ≤ ${max}`
    : "";
  const ok = String(value).trim() !== "" && Number.isFinite(n) && (!integer || Number.isInteger(n)) &&
    (min === undefined || n >= min) && (above === undefined || n > above) && (max === undefined || n <= max);
  if (!ok) fail(`--${name} expects ${integer ? "a whole number" : "a number"}${bounds}, got "${value}"`);
  return n;
}
