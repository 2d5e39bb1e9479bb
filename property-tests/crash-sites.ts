/**
 * Where injected crashes landed: for each crash, the innermost function of src/ (outside the
 * simulators) on the JavaScript stack of the storage call that did not happen, so a run can show
 * (and check) that every storage call site of the WAL, apply, checkpoint, rebuild and recovery
 * code was crashed at.
 */

// The storage call is often 15+ frames below the function of src/ that made it (abstract-level, awaits).
Error.stackTraceLimit = Math.max(Error.stackTraceLimit, 60);

const SIMULATORS = /\/src\/(testing\/|wal\/sim-)/;
const FRAME = /^\s*at (?:async )?(?:(.+?) \()?(.*\/src\/[^:)]+)(?::\d+){0,2}\)?$/;

const sites = new Map<string, number>();

/**
 * The innermost src/ frame of `stack` outside the simulators, and its nearest caller in another
 * file of src/ (which tells, say, the apply's LevelDB write from a rebuild's): "src/a.ts f ← src/b.ts g".
 */
export function crashSiteOf(stack: string): string {
  const frames: { file: string; name: string }[] = [];
  for (const line of stack.split('\n').slice(1)) {
    const match = FRAME.exec(line);
    if (match === null) continue;
    const file = match[2]!;
    if (SIMULATORS.test(file)) continue;
    frames.push({ file: file.slice(file.lastIndexOf('/src/') + 1), name: match[1] ?? '(anonymous)' });
  }
  const inner = frames[0];
  if (inner === undefined) return '(no src frame)';
  const caller = frames.find((frame) => frame.file !== inner.file);
  return `${inner.file} ${inner.name}${caller === undefined ? '' : ` ← ${caller.file} ${caller.name}`}`;
}

const innerSites = new Map<string, number>();

export function recordCrashSite(stack: string, call: string): void {
  const site = `${crashSiteOf(stack)} [${call}]`;
  sites.set(site, (sites.get(site) ?? 0) + 1);
  const inner = `${site.split(' ← ')[0]!.replace(/ \[.*$/, '')} [${call}]`;
  innerSites.set(inner, (innerSites.get(inner) ?? 0) + 1);
}

/**
 * The storage call sites that must each be crashed at (innermost function of src/ and the
 * call), and those that were crashed at without being listed: both lists must be empty. `seldom`
 * lists sites a crash may reach but not every run does (each with its own test elsewhere).
 */
export function crashSiteGaps(required: readonly string[], seldom: readonly string[] = []): { missing: string[]; unlisted: string[] } {
  const listed = new Set([...required, ...seldom]);
  return {
    missing: required.filter((site) => (innerSites.get(site) ?? 0) === 0),
    unlisted: [...innerSites.keys()].filter((site) => !listed.has(site)).sort(),
  };
}

/** Crash counts by site. */
export function crashSites(): ReadonlyMap<string, number> {
  return sites;
}

export function crashSiteTable(): string {
  const rows = [...sites.entries()].sort(([a], [b]) => (a < b ? -1 : 1));
  const width = Math.max(10, ...rows.map(([site]) => site.length));
  return ['crashes  site', ...rows.map(([site, n]) => `${String(n).padStart(7)}  ${site.padEnd(width)}`)].join('\n');
}
