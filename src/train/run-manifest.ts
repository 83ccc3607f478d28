/**
 * The record of what graft wrote in a run folder (graft-run.json): each file's path (relative,
 * '/'-separated), size and SHA-256. --overwrite removes exactly these files; a file graft would
 * write that is not in it is the user's, and refused; predict, evaluate and --resume check the
 * files they read against it.
 *
 * Writers use it in two steps: claim(path) before writing (so that a file cut short by a crash is
 * still known as graft's, and cleared next time), record(path) once written. Results that must
 * change together are written into a staging folder (stage()) and committed as one set
 * (commitStaged): the manifest names the set first (the commit point), then the files are moved
 * into place; a run cut short between the two is finished by the next open().
 */
import { randomBytes } from 'node:crypto';
import { lstat, mkdir, readdir, readFile, realpath, rename, rm, rmdir } from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';
import { writeFileAtomic } from '../util/atomic.js';
import { sha256Bytes, sha256File } from '../util/checksum.js';
import { GraftError } from '../util/errors.js';

export const MANIFEST_NAME = 'graft-run.json';
const FORMAT = 'graft-run-1';
/** Staging folders of commitStaged: `.graft-staged.<pid>.<hex>`. */
export const STAGING_PATTERN = /^\.graft-staged\.\d+\.[0-9a-f]{8}$/;

/** A file graft wrote (size and checksum), or claimed and is writing (checked elsewhere, or not yet written). */
export interface ManifestEntry {
  size?: number;
  sha256?: string;
}

interface ManifestJson {
  format: string;
  files: Record<string, ManifestEntry>;
  /** A set of results committed but perhaps not all moved into place yet. */
  commit?: { staging: string; files: string[]; remove: string[] };
}

const toRel = (dir: string, file: string) => relative(dir, file).split(sep).join('/');

export class RunManifest {
  private constructor(
    /** The run folder (absolute). */
    readonly dir: string,
    private files: Map<string, ManifestEntry>,
    private commit: ManifestJson['commit'] | undefined,
    /** Whether graft-run.json exists. */
    private saved: boolean,
  ) {}

  get file(): string {
    return join(this.dir, MANIFEST_NAME);
  }

  /** Whether the folder has a manifest (a run of this graft wrote into it). */
  get exists(): boolean {
    return this.saved;
  }

  /**
   * The manifest of run folder `dir` (empty when it has none). With `recover`, a commit cut short
   * is finished first (the caller must hold the folder's lock, or know no run writes there).
   */
  static async open(dir: string, opts: { recover?: boolean } = {}): Promise<RunManifest> {
    const file = join(dir, MANIFEST_NAME);
    let text: string | null = null;
    try {
      const st = await lstat(file);
      if (!st.isFile()) throw new GraftError(`${file} is not a file graft wrote (a ${st.isSymbolicLink() ? 'symbolic link' : 'folder'}): move it, or choose another output folder`, { file });
      text = await readFile(file, 'utf8');
    } catch (err) {
      if (err instanceof GraftError) throw err;
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new GraftError(`cannot read ${file}: ${(err as Error).message}`, { file });
    }
    if (text === null) return new RunManifest(dir, new Map(), undefined, false);
    let json: ManifestJson;
    try {
      json = JSON.parse(text) as ManifestJson;
    } catch {
      throw new GraftError(`${file} is damaged (not JSON): graft cannot tell which files in ${dir} are its own; move the folder's files elsewhere, or choose another output folder`, { file });
    }
    if (json?.format !== FORMAT || typeof json.files !== 'object' || json.files === null) {
      throw new GraftError(`${file} is not a graft run record (format ${String(json?.format)})`, { file });
    }
    const manifest = new RunManifest(dir, new Map(Object.entries(json.files)), json.commit, true);
    if (opts.recover && manifest.commit) await manifest.finishCommit();
    return manifest;
  }

  /** Paths (relative) of every file recorded or claimed. */
  paths(): string[] {
    return [...this.files.keys()].sort();
  }

  entry(rel: string): ManifestEntry | undefined {
    return this.files.get(rel);
  }

  /** Whether graft wrote (or claimed) `rel`. */
  owns(rel: string): boolean {
    return this.files.has(rel);
  }

  /** Whether a set of results is committed but not yet all in place (a run cut short while moving them). */
  get committing(): boolean {
    return this.commit !== undefined;
  }

  private async save(): Promise<void> {
    const json: ManifestJson = { format: FORMAT, files: Object.fromEntries([...this.files].sort(([a], [b]) => (a < b ? -1 : 1))), ...(this.commit && { commit: this.commit }) };
    await writeFileAtomic(this.file, JSON.stringify(json, null, 1) + '\n');
    this.saved = true;
  }

  /** Marks `rels` as graft's before they are written (one write of the manifest for all). */
  async claim(...rels: string[]): Promise<void> {
    const added = rels.filter((r) => !this.files.has(r));
    if (added.length === 0 && this.saved) return;
    for (const r of added) this.files.set(r, {});
    await this.save();
  }

  /** Records `rel`, written: its size and checksum (computed from the file unless given). */
  async record(rel: string, known?: { size: number; sha256: string }): Promise<void> {
    this.files.set(rel, known ?? (await sha256File(join(this.dir, rel))));
    await this.save();
  }

  /** Drops `rels` from the record (after removing them). */
  async forget(...rels: string[]): Promise<void> {
    for (const r of rels) this.files.delete(r);
    await this.save();
  }

  /**
   * Throws a GraftError naming `rel` when it does not match its record (size or checksum); `bytes`:
   * its content, when already read. Files recorded without a checksum (claimed only) pass.
   */
  async verify(rel: string, bytes?: Uint8Array): Promise<void> {
    const entry = this.files.get(rel);
    if (!entry?.sha256) return;
    const file = join(this.dir, rel);
    const actual = bytes ? { size: bytes.length, sha256: sha256Bytes(bytes) } : await sha256File(file);
    if (actual.size !== entry.size || actual.sha256 !== entry.sha256) {
      throw new GraftError(
        `${file} is damaged: ${actual.size !== entry.size ? `it holds ${actual.size} bytes, ${entry.size} were written` : 'its checksum differs from the one recorded when it was written'} (${this.file}); train again or restore it from a copy`,
        { file },
      );
    }
  }

  /** Checks every file recorded with a checksum (verify), naming the first damaged or missing one. */
  async verifyAll(): Promise<void> {
    for (const rel of this.paths()) {
      if (!this.files.get(rel)?.sha256) continue;
      if (!(await lstat(join(this.dir, rel)).catch(() => null))) throw new GraftError(`${join(this.dir, rel)} is missing (${this.file} records it)`, { file: join(this.dir, rel) });
      await this.verify(rel);
    }
  }

  /** A new staging folder for results to commit together (commitStaged); claimed, so a crash leaves nothing foreign. */
  async stage(): Promise<string> {
    const name = `.graft-staged.${process.pid}.${randomBytes(4).toString('hex')}`;
    await this.claim(name);
    const staging = join(this.dir, name);
    await mkdir(staging);
    return staging;
  }

  /** Removes a staging folder whose results are not to be committed. */
  async removeStaging(staging: string): Promise<void> {
    await rm(staging, { recursive: true, force: true }).catch(() => {});
    await this.forget(toRel(this.dir, staging)).catch(() => {});
  }

  /**
   * Moves every file under `staging` to the same place in the run folder, as one set: recorded
   * with their checksums and named in the manifest first, so that a crash while moving them is
   * finished by the next open(). Files recorded under `replaceFolders` that the set lacks go.
   */
  async commitStaged(staging: string, opts: { replaceFolders?: string[] } = {}): Promise<void> {
    const rels = (await listFiles(staging)).map((f) => toRel(staging, f));
    const entries = [] as [string, ManifestEntry][];
    for (const rel of rels) entries.push([rel, await sha256File(join(staging, rel))]);
    const set = new Set(rels);
    const remove = this.paths().filter((p) => !set.has(p) && (opts.replaceFolders ?? []).some((f) => p.startsWith(`${f}/`)));
    for (const [rel, entry] of entries) this.files.set(rel, entry);
    this.commit = { staging: toRel(this.dir, staging), files: rels, remove };
    await this.save();
    await this.finishCommit();
  }

  /** Moves a committed set into place (again, where a crash left it half done) and drops the staging folder. */
  private async finishCommit(): Promise<void> {
    const commit = this.commit!;
    const staging = join(this.dir, commit.staging);
    for (const rel of commit.files) {
      const from = join(staging, rel), to = join(this.dir, rel);
      if (!(await lstat(from).catch(() => null))) continue; // moved before the crash
      await this.checkInside(to);
      await mkdir(dirname(to), { recursive: true });
      await rename(from, to);
    }
    for (const rel of commit.remove) {
      const file = join(this.dir, rel);
      if ((await lstat(file).catch(() => null))?.isFile()) await rm(file, { force: true });
      this.files.delete(rel);
    }
    await rm(staging, { recursive: true, force: true });
    this.files.delete(commit.staging);
    this.commit = undefined;
    await this.save();
  }

  /** Refuses a path whose folder is reached through a link out of the run folder. */
  async checkInside(file: string): Promise<void> {
    const parent = dirname(file);
    const real = await realpath(parent).catch(() => null);
    if (real === null) return; // not there yet: created as a plain folder
    const expected = join(await realpath(this.dir), relative(this.dir, parent));
    if (real !== expected) {
      throw new GraftError(`${parent} is a symbolic link (to ${real}): graft writes and removes files only inside ${this.dir}; move the link, or choose another output folder`, { file: parent });
    }
  }

  /**
   * Removes every file recorded (regular files only: a link put in a recorded file's place is not
   * followed, nor a folder reached through one) and forgets them; then the folders that left empty.
   */
  async removeAll(): Promise<void> {
    for (const rel of this.paths()) {
      const file = join(this.dir, rel);
      await this.checkInside(file);
      const st = await lstat(file).catch(() => null);
      if (st?.isFile()) await rm(file, { force: true });
      else if (st?.isDirectory() && STAGING_PATTERN.test(rel)) await rm(file, { recursive: true, force: true });
    }
    const folders = new Set(this.paths().filter((p) => p.includes('/')).map((p) => p.slice(0, p.lastIndexOf('/'))));
    for (const f of [...folders].sort((a, b) => b.length - a.length)) await rmdir(join(this.dir, f)).catch(() => undefined);
    this.files.clear();
    this.commit = undefined;
    await this.save();
  }
}

/** Every file under `dir` (absolute paths), links not followed. */
async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await listFiles(p)));
    else if (e.isFile()) out.push(p);
  }
  return out.sort();
}
