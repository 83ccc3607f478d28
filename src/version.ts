/** graft's version (package.json's), for --version and the producer field of exported models. */
export const GRAFT_VERSION = '0.1.0';
