/**
 * onnxruntime-node 1.29+ on Linux and macOS collects usage telemetry for Microsoft by default: it
 * keeps a device id and an event database under ~/.cache/Microsoft, tries to upload them, and
 * leaves an empty /tmp/mat-debug-<pid>.log behind every process (measured with 1.30.0). graft works
 * on people's own pictures and offline, so it opts out, unless the user has set
 * ORT_DISABLE_TELEMETRY themselves (0 keeps onnxruntime's default).
 *
 * onnxruntime reads the variable when it creates its environment (at the first session), so every
 * module that imports onnxruntime-node imports this one first, and so does every module that starts
 * worker threads which do (set in a worker, the variable would stay in the worker's copy of the
 * environment).
 */
export const ORT_TELEMETRY_VARIABLE = 'ORT_DISABLE_TELEMETRY';

process.env[ORT_TELEMETRY_VARIABLE] ??= '1';
