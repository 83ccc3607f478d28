/**
 * graft ui's security model, as Jupyter's: a random token in the printed URL is required on every
 * request (then carried by an HttpOnly SameSite=Strict cookie), the Host header must name this
 * server (against DNS rebinding), and every state-changing request must come from this page's
 * own origin (against cross-site requests).
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

/** A fresh random token: 32 url-safe characters (192 bits). */
export function newToken(): string {
  return randomBytes(24).toString('base64url');
}

/** The cookie carrying the token; named after the port so two servers on one host do not clash. */
export function cookieName(port: number): string {
  return `graft_ui_${port}`;
}

function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a), y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

function cookies(req: IncomingMessage): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0) out.set(part.slice(0, eq).trim(), part.slice(eq + 1).trim());
  }
  return out;
}

/**
 * How the request proves it knows the token: 'query' (the printed URL's ?token=), 'cookie', or
 * 'header' (X-Graft-Token, for scripts); null when it does not.
 */
export function tokenSource(req: IncomingMessage, url: URL, token: string, port: number): 'query' | 'cookie' | 'header' | null {
  const q = url.searchParams.get('token');
  if (q !== null && sameSecret(q, token)) return 'query';
  const c = cookies(req).get(cookieName(port));
  if (c !== undefined && sameSecret(c, token)) return 'cookie';
  const h = req.headers['x-graft-token'];
  if (typeof h === 'string' && sameSecret(h, token)) return 'header';
  return null;
}

export function tokenCookie(token: string, port: number): string {
  return `${cookieName(port)}=${token}; HttpOnly; SameSite=Strict; Path=/`;
}

/** The host:port names under which this server may be reached (a rebinding attacker's name is none of them). */
export function allowedHosts(host: string, port: number): Set<string> {
  const names = new Set([host, '127.0.0.1', 'localhost', '[::1]']);
  if (host.includes(':') && !host.startsWith('[')) names.add(`[${host}]`);
  return new Set([...names].map((n) => `${n}:${port}`.toLowerCase()));
}

/** Whether the Host header names this server. */
export function hostAllowed(req: IncomingMessage, hosts: Set<string>): boolean {
  const h = req.headers.host;
  return typeof h === 'string' && hosts.has(h.toLowerCase());
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** A request that may change state (anything but GET/HEAD/OPTIONS) must carry an Origin of this server. */
export function originAllowed(req: IncomingMessage, hosts: Set<string>): boolean {
  if (SAFE_METHODS.has(req.method ?? 'GET')) return true;
  const origin = req.headers.origin;
  if (typeof origin !== 'string' || !origin.startsWith('http://')) return false;
  return hosts.has(origin.slice('http://'.length).toLowerCase());
}

/** Headers on every response: no sniffing, no framing, no referrer (the token may be in the URL), scripts only from here. */
export const SECURITY_HEADERS: Record<string, string> = {
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cross-origin-resource-policy': 'same-origin',
  'content-security-policy':
    "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob: mediastream:; style-src 'self' 'unsafe-inline'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
};
