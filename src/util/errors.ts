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
  return new GraftError(`cannot ${doing} ${file}: ${fsErrorReason(err)}`, { file, cause: err });
}

/** A file-system error's cause in words ("no such file or folder", "permission denied"...). */
export function fsErrorReason(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return (
    code === 'ENOENT' ? 'no such file or folder'
    : code === 'EACCES' || code === 'EPERM' ? 'permission denied'
    : code === 'EISDIR' ? 'is a folder, not a file'
    : code === 'ENOTDIR' ? 'a parent of it is not a folder'
    : code === 'ENOSPC' ? 'no space left on the device'
    : code === 'EROFS' ? 'read-only file system'
    : code === 'ELOOP' ? 'too many levels of symbolic links'
    : (err as Error | undefined)?.message ?? String(err)
  );
}

/**
 * The first five of `items` for a message, then how many more: "a, b, c, d, e and 2 more", or with
 * another separator (for items holding commas) "a; b; c; d; e; and 2 more".
 */
export function firstFew(items: readonly string[], separator = ', '): string {
  const shown = items.slice(0, 5).join(separator);
  if (items.length <= 5) return shown;
  return `${shown}${separator === ', ' ? ' ' : separator}and ${items.length - 5} more`;
}
