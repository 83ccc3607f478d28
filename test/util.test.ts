import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, readdir, symlink, writeFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Random } from '../src/util/random.js';
import { writeFileAtomic } from '../src/util/atomic.js';
import { GraftError } from '../src/util/errors.js';
import { MALLOC_TUNABLES } from '../src/util/malloc-tunables.js';
import { makeFolder } from '../src/util/folders.js';

test('Random is reproducible from its seed and differs across seeds', () => {
  const a = new Random(42), b = new Random(42), c = new Random(43);
  const xa = Array.from({ length: 5 }, () => a.uint32());
  const xb = Array.from({ length: 5 }, () => b.uint32());
  const xc = Array.from({ length: 5 }, () => c.uint32());
  assert.deepEqual(xa, xb);
  assert.notDeepEqual(xa, xc);
});

test('Random.next is uniform on [0,1) and permutation is a permutation', () => {
  const r = new Random(1);
  let sum = 0;
  for (let i = 0; i < 20000; i++) {
    const x = r.next();
    assert.ok(x >= 0 && x < 1);
    sum += x;
  }
  assert.ok(Math.abs(sum / 20000 - 0.5) < 0.01);
  const p = Array.from(r.permutation(100)).sort((x, y) => x - y);
  assert.deepEqual(p, Array.from({ length: 100 }, (_, i) => i));
});

test('writeFileAtomic replaces the file whole and leaves no temp files', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'graft-atomic-'));
  const file = join(dir, 'a.json');
  await writeFile(file, 'old');
  await writeFileAtomic(file, 'new content');
  assert.equal(await readFile(file, 'utf8'), 'new content');
  assert.deepEqual(await readdir(dir), ['a.json']);
  await rm(dir, { recursive: true });
});

test('writeFileAtomic where the folder cannot exist fails with a GraftError naming the file', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'graft-atomic-'));
  const blocker = join(dir, 'not-a-folder');
  await writeFile(blocker, 'old');
  const file = join(blocker, 'a.json');
  await assert.rejects(writeFileAtomic(file, 'new'), (e: unknown) => e instanceof GraftError && e.message.includes(file));
  assert.equal(await readFile(blocker, 'utf8'), 'old');
  await rm(dir, { recursive: true });
});

/** Runs test/support/ort-telemetry-child.ts in a fresh process with the given environment. */
async function ortChild(env: NodeJS.ProcessEnv, arg = ''): Promise<{ pid: number; value: string | null }> {
  const script = fileURLToPath(new URL('./support/ort-telemetry-child.ts', import.meta.url));
  const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', script, arg], { env });
  return JSON.parse(stdout.trim().split('\n').pop()!) as { pid: number; value: string | null };
}

test("onnxruntime's telemetry is off in graft: no device id, event database or /tmp log is written", async () => {
  const home = await mkdtemp(join(tmpdir(), 'graft-home-'));
  try {
    // A clean environment as a user's shell would give (this process already has graft's setting).
    const env: NodeJS.ProcessEnv = { ...process.env, HOME: home, XDG_CACHE_HOME: join(home, '.cache') };
    delete env.ORT_DISABLE_TELEMETRY;
    // onnxruntime on the main thread, and only in a head trainer's worker threads.
    for (const mode of ['matmul', 'head']) {
      const { pid, value } = await ortChild(env, mode);
      assert.equal(value, '1');
      assert.deepEqual(await readdir(home), [], `${mode}: nothing written under HOME`);
      assert.ok(!existsSync(`/tmp/mat-debug-${pid}.log`), `${mode}: no mat-debug log in /tmp`);
    }
    // A user's own choice is kept.
    assert.equal((await ortChild({ ...env, ORT_DISABLE_TELEMETRY: '0' }, 'no-session')).value, '0');
  } finally {
    await rm(home, { recursive: true, force: true });
  }
});

const relaunchScript = fileURLToPath(new URL('./support/relaunch-child.ts', import.meta.url));
interface RelaunchLine {
  stage: string;
  pid: number;
  ppid: number;
  tunables: string | null;
  launcherVar: string | null;
}

/** Starts relaunch-child.ts without graft's tunables (a user's own GLIBC_TUNABLES kept), collecting its lines. */
function startRelaunchChild(mode: 'exit' | 'wait', launcherPid?: number) {
  const env: NodeJS.ProcessEnv = { ...process.env, GLIBC_TUNABLES: 'glibc.malloc.arena_max=4' };
  delete env.GRAFT_LAUNCHER_PID;
  if (launcherPid) env.GRAFT_LAUNCHER_PID = String(launcherPid);
  const child = spawn(process.execPath, ['--import', 'tsx', relaunchScript, mode], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  // Written by the launcher and (through it, inherited) by the relaunched process.
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const lines: RelaunchLine[] = [];
  const waiters: (() => void)[] = [];
  let buffered = '';
  child.stdout.on('data', (chunk: Buffer) => {
    buffered += chunk.toString();
    const parts = buffered.split('\n');
    buffered = parts.pop()!;
    for (const p of parts) if (p.trim()) lines.push(JSON.parse(p) as RelaunchLine);
    waiters.splice(0).forEach((w) => w());
  });
  const exited = new Promise<number | null>((res) => child.on('exit', (code) => res(code)));
  const stage = async (name: string): Promise<RelaunchLine> => {
    for (;;) {
      const found = lines.find((l) => l.stage === name);
      if (found) return found;
      await new Promise<void>((res) => waiters.push(res));
    }
  };
  return { child, lines, exited, stage, stderr: () => stderr };
}

test('relaunchWithMallocTunables runs the script again under the tunables and exits with its status', { skip: process.platform !== 'linux' }, async () => {
  const run = startRelaunchChild('exit');
  assert.equal(await run.exited, 3);
  // The launcher prints its first line only; the script runs again from the top in the child.
  const [parent, child, relaunched, ...rest] = run.lines;
  assert.deepEqual([parent!.stage, child!.stage, relaunched!.stage, rest.length], ['start', 'start', 'relaunched', 0]);
  assert.equal(parent!.tunables, 'glibc.malloc.arena_max=4');
  assert.equal(child!.ppid, parent!.pid);
  assert.equal(relaunched!.pid, child!.pid);
  assert.equal(child!.tunables, `glibc.malloc.arena_max=4:${MALLOC_TUNABLES}`);
  // The child learns its launcher's pid, then drops it so that processes it starts do not inherit it.
  assert.equal(child!.launcherVar, String(parent!.pid));
  assert.equal(relaunched!.launcherVar, null);
});

test('relaunchWithMallocTunables passes SIGTERM on, and the child stops at once, silently, when the launcher is killed outright', { skip: process.platform !== 'linux' }, async () => {
  const run = startRelaunchChild('wait');
  const child = await run.stage('relaunched');
  assert.equal(child.tunables, `glibc.malloc.arena_max=4:${MALLOC_TUNABLES}`);
  run.child.kill('SIGTERM');
  assert.equal(await run.exited, 5);
  assert.equal((await run.stage('sigterm')).pid, child.pid);

  const again = startRelaunchChild('wait');
  const orphan = await again.stage('relaunched');
  again.child.kill('SIGKILL');
  await again.exited;
  const alive = () => {
    try {
      process.kill(orphan.pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  // Silently (no "terminate called..." from native code torn down mid-call), and at once: ~0.1-0.2 s
  // measured; the bound leaves room for a machine shared by many jobs (it measured up to ~2 s at a
  // load average of 20 on 2 cores).
  const deadline = Date.now() + 3000;
  while (alive() && Date.now() < deadline) await new Promise((res) => setTimeout(res, 20));
  assert.ok(!alive(), 'the relaunched process exits at once when its launcher is gone');
  await new Promise((res) => setTimeout(res, 100));
  assert.equal(again.stderr(), '');
});

test('makeFolder creates missing levels and names the real obstacle', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'graft-folders-'));
  try {
    await makeFolder(join(dir, 'a', 'b', 'c'));
    await makeFolder(join(dir, 'a', 'b', 'c')); // already there: fine
    assert.ok(existsSync(join(dir, 'a', 'b', 'c')));
    await writeFile(join(dir, 'file'), 'x');
    await assert.rejects(makeFolder(join(dir, 'file', 'sub')), (err: unknown) => err instanceof GraftError && /cannot create .*file.sub: .*file is a file, not a folder/.test(err.message));
    await symlink(join(dir, 'nowhere'), join(dir, 'dangling'));
    await assert.rejects(makeFolder(join(dir, 'dangling', 'run')), /cannot create .*dangling.run: .*dangling is a broken symbolic link \(to .*nowhere\)/);
    if (process.platform === 'linux') {
      // Node's recursive mkdir spins forever here; one level at a time gets procfs's answer.
      await assert.rejects(makeFolder('/proc/graft-no-such/run'), /cannot create \/proc\/graft-no-such\/run: no such file or folder/);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a process relaunched already does not start another, even when its tunables were lost on the way', { skip: process.platform !== 'linux' }, async () => {
  // As if this test process were its launcher and GLIBC_TUNABLES had been scrubbed.
  const run = startRelaunchChild('exit', process.pid);
  assert.equal(await run.exited, 3);
  assert.deepEqual(run.lines.map((l) => [l.stage, l.pid, l.tunables]), [
    ['start', run.child.pid, 'glibc.malloc.arena_max=4'],
    ['relaunched', run.child.pid, 'glibc.malloc.arena_max=4'],
  ]);
});

test("GRAFT_VERSION is package.json's version", async () => {
  const { GRAFT_VERSION } = await import('../src/version.js');
  const pkg = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
  assert.equal(GRAFT_VERSION, pkg.version);
});

test('firstFew names five items, then how many more, in the separator given', async () => {
  const { firstFew } = await import('../src/util/errors.js');
  const items = ['a', 'b', 'c', 'd', 'e', 'f', 'g'];
  assert.equal(firstFew(items.slice(0, 5)), 'a, b, c, d, e');
  assert.equal(firstFew(items), 'a, b, c, d, e and 2 more');
  assert.equal(firstFew(items, '; '), 'a; b; c; d; e; and 2 more');
  assert.equal(firstFew([]), '');
});

test('isSameOrInside: the folder itself and what lies below it, not a sibling sharing a prefix', async () => {
  const { isSameOrInside } = await import('../src/util/folders.js');
  assert.ok(isSameOrInside('/data/train', '/data/train'));
  assert.ok(isSameOrInside('/data/train/cats/run', '/data/train'));
  assert.ok(!isSameOrInside('/data/train-runs', '/data/train'));
  assert.ok(!isSameOrInside('/data', '/data/train'));
  assert.ok(isSameOrInside('/data/train/..foo', '/data/train'));
});

test('CLI number options: a fraction strictly inside (0, 1) and a range open at its low end', async () => {
  const { floatOption, fractionOption } = await import('../src/cli/options.js');
  const split = fractionOption('validation-split');
  assert.equal(split('0.2'), 0.2);
  assert.equal(split('0.95'), 0.95);
  for (const bad of ['0', '1', '-0.1', 'x', '']) {
    assert.throws(() => split(bad), new GraftError(`--validation-split must be a fraction between 0 and 1 (exclusive), e.g. 0.2; found '${bad}'`));
  }
  const lr = floatOption('lr', 0, 10, { aboveMin: true });
  assert.equal(lr('10'), 10);
  assert.throws(() => lr('0'), /--lr must be a number above 0 and at most 10, found '0'/);
  assert.throws(() => floatOption('momentum', 0, 1)('1.5'), /--momentum must be a number from 0 to 1, found '1.5'/);
  assert.equal(floatOption('momentum', 0, 1)('0'), 0);
});

test('messages name settings as the library takes them, or as flags once the CLI says so', async () => {
  const { optionName, setting, useFlagNames } = await import('../src/util/option-names.js');
  assert.equal(optionName('validationData'), 'validationData');
  assert.equal(setting('stepsPerEpoch', 4), 'stepsPerEpoch: 4');
  assert.equal(setting('overwrite'), 'overwrite: true');
  assert.equal(setting('onBadImage', 'skip'), "onBadImage: 'skip'");
  assert.equal(setting('mode', 'faithful', "{ kind: 'faithful' }"), "mode: { kind: 'faithful' }");
  useFlagNames(); // this file's process only (the runner isolates test files)
  assert.equal(optionName('validationData'), '--val');
  assert.equal(setting('stepsPerEpoch', 4), '--steps 4');
  assert.equal(setting('overwrite'), '--overwrite');
  assert.equal(setting('mode', 'faithful', "{ kind: 'faithful' }"), '--mode faithful');
});
