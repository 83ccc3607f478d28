import type { Command } from 'commander';
import { spawn } from 'node:child_process';
import { intOption } from '../options.js';

/** `graft ui`: the local web page; its server lives in src/ui/ and loads only when this command runs. */
export function registerUi(program: Command): void {
  program
    .command('ui')
    .description('A local web page for the whole loop: look at the data, train and watch, find the mistakes, try an image and see where the model looked')
    .option('--runs <dir>', 'the runs folder (created if missing)', 'runs')
    .option('--port <n>', 'port (default: a free one)', intOption('port', 0, 65535))
    .option('--host <address>', 'address to listen on (anything but 127.0.0.1 or ::1 exposes the page, token-protected, to the network)', '127.0.0.1')
    .option('--open', 'open the page in the default browser')
    .action(async (opts: { runs: string; port?: number; host: string; open?: boolean }) => {
      const { startUiServer } = await import('../../ui/server.js');
      const ui = await startUiServer({ runsDir: opts.runs, port: opts.port, host: opts.host });
      console.log(`graft ui: open ${ui.url}`);
      console.log(`(runs in ${opts.runs}; the token in the URL is the key to this page: do not share it. Ctrl-C to stop)`);
      if (opts.open) {
        const opener = process.platform === 'darwin' ? 'open' : process.platform === 'win32' ? 'explorer' : 'xdg-open';
        spawn(opener, [ui.url], { stdio: 'ignore', detached: true }).on('error', () => console.error(`could not start ${opener}; open the URL above yourself`)).unref();
      }
      await new Promise<void>((resolve) => {
        let stopping = false;
        const stop = () => {
          if (stopping) return;
          stopping = true;
          console.log('graft ui: stopping (a running training gets a clean interrupt; its checkpoint stays)');
          void ui.close().then(resolve);
        };
        process.on('SIGINT', stop);
        process.on('SIGTERM', stop);
      });
    });
}
