import type { AbstractLevel } from 'abstract-level';

/**
 * Any abstract-level database (classic-level, memory-level, …) whatever its default encodings:
 * factstore passes 'view' encodings on every call, so the defaults never matter. The `any`s are
 * abstract-level's encoding parameters, which vary by instance and are not observed here.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type LevelDatabase = AbstractLevel<string | Buffer | Uint8Array, any, any>;

export const VIEW = { keyEncoding: 'view', valueEncoding: 'view' } as const;

export type Bytes = Uint8Array;
