/**
 * The one error type graft shows to users: a plain sentence naming the file (and layer, shape, ...)
 * at fault. The CLI prints its message without a stack trace; anything else is a bug.
 */
export class GraftError extends Error {
  /** The file or folder the problem is about, when there is one. */
  readonly file?: string;

  constructor(message: string, options: { file?: string; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'GraftError';
    this.file = options.file;
  }
}

/** Node's errno errors (ENOENT, EACCES, ...) turned into one readable line about `file`. */
export function describeFsError(err: unknown, file: string, doing = 'read'): GraftError {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  const reason =
    code === 'ENOENT' ? 'no such file or folder'
    : code === 'EACCES' || code === 'EPERM' ? 'permission denied'
    : code === 'EISDIR' ? 'is a folder, not a file'
    : code === 'ENOTDIR' ? 'a parent of it is not a folder'
    : code === 'ENOSPC' ? 'no space left on the device'
    : code === 'ELOOP' ? 'too many levels of symbolic links'
    : (err as Error | undefined)?.message ?? String(err);
  return new GraftError(`cannot ${doing} ${file}: ${reason}`, { file, cause: err });
}
