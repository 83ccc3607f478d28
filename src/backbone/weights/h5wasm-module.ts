/**
 * h5wasm, loaded on first use rather than when graft is imported: starting its WebAssembly
 * module takes ~0.3 s and reserves memory that every command (predict, data...) would pay for,
 * and under a virtual-memory limit (ulimit -v) the reservation failed before any graft message.
 * HDF5 errors are thrown as JS errors instead of pages of HDF5-DIAG on stderr.
 */
type H5wasm = (typeof import('h5wasm/node'))['default'];

let loading: Promise<H5wasm> | undefined;
let loaded: H5wasm | undefined;

export function loadH5wasm(): Promise<H5wasm> {
  loading ??= import('h5wasm/node').then(async ({ default: h5wasm }) => {
    const module = await h5wasm.ready;
    module.activate_throwing_error_handler();
    loaded = h5wasm;
    return h5wasm;
  });
  return loading;
}

/** The module, for code that runs once loadH5wasm() has resolved (inside an open file's callback). */
export function h5wasmLoaded(): H5wasm {
  if (!loaded) throw new Error('h5wasm used before loadH5wasm() resolved');
  return loaded;
}
