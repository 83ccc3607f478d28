/**
 * The only folders graft ui serves files from: the runs folder and the folders the user opened.
 * A file is named by its folder's id and a relative path; it is served only when its real path
 * (links resolved) lies inside that folder's real path. No '..', no absolute path, no escape
 * through a symbolic link.
 */
import { realpath, stat } from 'node:fs/promises';
import { isAbsolute, join, resolve, sep } from 'node:path';
import { isSameOrInside } from '../util/folders.js';
import { HttpError } from './http.js';

export interface ServedFolder {
  id: string;
  /** As the user gave it (absolute). */
  path: string;
  /** With links resolved: what containment is checked against. */
  real: string;
}

export class ServedFolders {
  private readonly folders = new Map<string, ServedFolder>();
  private next = 1;

  /** Adds the runs folder under the id 'runs'. */
  async addRuns(path: string): Promise<ServedFolder> {
    return this.add(path, 'runs');
  }

  /** Opens a folder (it must exist and be a folder); the same real folder keeps its id. */
  async open(path: string): Promise<ServedFolder> {
    if (typeof path !== 'string' || path.length === 0 || path.includes('\0')) throw new HttpError(400, 'give the folder as a path');
    return this.add(path);
  }

  private async add(path: string, id?: string): Promise<ServedFolder> {
    const abs = resolve(path);
    let real: string;
    try {
      real = await realpath(abs);
    } catch {
      throw new HttpError(404, `${abs}: no such folder`);
    }
    if (!(await stat(real)).isDirectory()) throw new HttpError(400, `${abs} is a file, not a folder`);
    const existing = [...this.folders.values()].find((f) => f.real === real && (id === undefined || f.id === id));
    if (existing) return existing;
    const folder = { id: id ?? String(this.next++), path: abs, real };
    this.folders.set(folder.id, folder);
    return folder;
  }

  get(id: string): ServedFolder {
    const f = this.folders.get(id);
    if (!f) throw new HttpError(404, `no open folder ${JSON.stringify(id)}`);
    return f;
  }

  list(): ServedFolder[] {
    return [...this.folders.values()];
  }

  /**
   * The real path of `rel` inside folder `id`, refused (403) unless it stays inside: `rel` must be
   * relative, without '..' segments, and its real path inside the folder's real path.
   */
  async resolveFile(id: string, rel: string): Promise<string> {
    const folder = this.get(id);
    if (typeof rel !== 'string' || rel.includes('\0')) throw new HttpError(400, 'bad path');
    const parts = rel.split(/[\\/]/);
    if (isAbsolute(rel) || /^[a-zA-Z]:/.test(rel) || parts.includes('..')) throw new HttpError(403, 'the path must be relative to the folder, without ..');
    let real: string;
    try {
      real = await realpath(join(folder.real, ...parts));
    } catch {
      throw new HttpError(404, 'no such file');
    }
    if (!isSameOrInside(real, folder.real)) throw new HttpError(403, 'outside the opened folder');
    return real;
  }

  /**
   * Which open folder an absolute path lies in (real paths compared), as [id, relative path], or
   * null: how a run's files (say its misclassified images) are offered to the page.
   */
  async locate(path: string): Promise<{ folder: string; path: string } | null> {
    let real: string;
    try {
      real = await realpath(path);
    } catch {
      return null;
    }
    for (const f of this.folders.values()) {
      if (isSameOrInside(real, f.real) && real !== f.real) return { folder: f.id, path: real.slice(f.real.length + 1).split(sep).join('/') };
    }
    return null;
  }
}
