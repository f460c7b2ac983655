// Starts `linkvault serve --sandbox` on a fresh data dir for the Node compatibility tests, and stops it.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const binary = process.env.LINKVAULT_BIN
  ?? join(process.env.CARGO_TARGET_DIR ? resolve(repo, process.env.CARGO_TARGET_DIR) : join(repo, 'target'), 'debug', 'linkvault');

/** Resolves to `{ baseURL, dataDir, stop }` once the server prints its "listening" line (30 s at most). */
export async function startServer(prefix) {
  const dataDir = mkdtempSync(join(tmpdir(), prefix));
  const server = spawn(binary, ['serve', '--sandbox', '--listen', '127.0.0.1:0', '--data-dir', dataDir], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, LINKVAULT_LOG: 'warn' },
  });
  const stop = () => {
    server.kill('SIGTERM');
    rmSync(dataDir, { recursive: true, force: true });
  };
  const baseURL = await new Promise((resolvePromise, reject) => {
    const timer = setTimeout(() => reject(new Error(`no "listening" line from ${binary} within 30 s`)), 30_000);
    server.on('error', (e) => { clearTimeout(timer); reject(new Error(`cannot start ${binary}: ${e.message} (build it with cargo build -p linkvault)`)); });
    createInterface({ input: server.stdout }).on('line', (line) => {
      const m = line.match(/^linkvault listening on (\S+)/);
      if (m) { clearTimeout(timer); resolvePromise(m[1]); }
    });
  }).catch((e) => { stop(); throw e; });
  return { baseURL, dataDir, stop };
}

/** The demo client `serve --sandbox` wrote to the data dir: `{clientId, read, write}` secrets. */
export function demoClient(dataDir) {
  const creds = JSON.parse(readFileSync(join(dataDir, 'sandbox-client.json'), 'utf8'));
  creds.read = creds.keys.find((k) => k.scope === 'read').secret;
  creds.write = creds.keys.find((k) => k.scope === 'write').secret;
  return creds;
}
