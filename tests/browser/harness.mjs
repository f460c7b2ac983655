// Test harness for the Link browser tests: a running `linkvault serve --sandbox`, the test app (bundling the
// real @meshconnect/web-link-sdk with esbuild) on 127.0.0.1, a hostile page on localhost (another origin),
// and Debian's chromium driven by playwright-core. Nothing is downloaded at test time.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, mkdirSync, existsSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { build } from 'esbuild';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
export const repoRoot = resolve(here, '..', '..');
export const artifacts = join(repoRoot, 'tests-artifacts', 'browser');

export function linkvaultBinary() {
  const target = process.env.CARGO_TARGET_DIR ? resolve(repoRoot, process.env.CARGO_TARGET_DIR) : join(repoRoot, 'target');
  const bin = join(target, 'debug', 'linkvault');
  if (!existsSync(bin)) throw new Error(`${bin} is missing: run \`cargo build -p linkvault\` first`);
  return bin;
}

/** Starts `linkvault serve --sandbox` on a free port; resolves once it prints its URL. */
export async function startLinkvault() {
  const dataDir = mkdtempSync(join(tmpdir(), 'linkvault-browser-'));
  const child = spawn(linkvaultBinary(), ['--data-dir', dataDir, 'serve', '--sandbox', '--listen', '127.0.0.1:0'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, LINKVAULT_LOG: 'info' },
  });
  let output = '';
  const url = await new Promise((resolveUrl, reject) => {
    const timer = setTimeout(() => reject(new Error(`linkvault did not start in 30 s:\n${output}`)), 30_000);
    const onData = (chunk) => {
      output += chunk.toString();
      const m = output.match(/linkvault listening on (http:\/\/[^\s]+)/);
      if (m) { clearTimeout(timer); resolveUrl(m[1]); }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', (chunk) => { output += chunk.toString(); });
    child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`linkvault exited with ${code}:\n${output}`)); });
  });
  child.stdout.on('data', (chunk) => { output += chunk.toString(); });
  child.stderr.on('data', (chunk) => { output += chunk.toString(); });
  const demo = JSON.parse(readFileSync(join(dataDir, 'sandbox-client.json'), 'utf8'));
  return {
    url,
    clientId: demo.clientId,
    readKey: demo.keys.find((k) => k.scope === 'read').secret,
    writeKey: demo.keys.find((k) => k.scope === 'write').secret,
    output: () => output,
    async stop() {
      child.kill('SIGTERM');
      await new Promise((r) => { if (child.exitCode !== null) r(); else child.on('exit', r); });
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Serves the test app (127.0.0.1) and the hostile page (localhost), on two ports: two origins. */
export async function startAppServers(linkvaultUrl) {
  const bundle = await build({
    entryPoints: [join(here, 'app', 'mesh-entry.js')],
    bundle: true,
    format: 'iife',
    write: false,
    platform: 'browser',
    logLevel: 'silent',
  });
  const meshJs = bundle.outputFiles[0].text;
  const appHtml = readFileSync(join(here, 'app', 'app.html'), 'utf8').replaceAll('__LINKVAULT__', linkvaultUrl);
  const hostileHtml = readFileSync(join(here, 'app', 'hostile.html'), 'utf8');
  const serve = (routes) => createServer((req, res) => {
    const body = routes[new URL(req.url, 'http://x').pathname];
    if (!body) { res.writeHead(404); res.end(); return; }
    res.writeHead(200, { 'content-type': body[0], 'cache-control': 'no-store' });
    res.end(body[1]);
  });
  const app = serve({ '/app.html': ['text/html', appHtml], '/mesh.js': ['text/javascript', meshJs] });
  const hostile = serve({ '/hostile.html': ['text/html', hostileHtml] });
  const listen = (server, host) => new Promise((r) => server.listen(0, host, () => r(server.address().port)));
  const appPort = await listen(app, '127.0.0.1');
  const hostilePort = await listen(hostile, '127.0.0.1');
  return {
    appUrl: `http://127.0.0.1:${appPort}/app.html`,
    hostileUrl: `http://localhost:${hostilePort}/hostile.html`,
    close: () => { app.close(); hostile.close(); },
  };
}

export async function launchBrowser() {
  const executablePath = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
  if (!existsSync(executablePath)) {
    throw new Error(`${executablePath} is missing: install Debian's chromium (apt-get install chromium) or set CHROMIUM_PATH`);
  }
  return chromium.launch({
    executablePath,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run'],
  });
}

/** Calls linkvault's API as the sandbox demo client's read key (or its write key, `scope: 'write'`). */
export async function apiCall(lv, method, path, body, { scope = 'read' } = {}) {
  const res = await fetch(`${lv.url}${path}`, {
    method,
    headers: { 'X-Client-Id': lv.clientId, 'X-Client-Secret': scope === 'write' ? lv.writeKey : lv.readKey, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { code: res.status, body: text ? JSON.parse(text) : null };
}

/** A link token; `scope: 'write'` asks with the write key (what a transfer needs). */
export async function linkToken(lv, body, { scope = 'read' } = {}) {
  const answer = await apiCall(lv, 'POST', '/api/v1/linktoken', body, { scope });
  if (answer.code !== 200) throw new Error(`linktoken: ${JSON.stringify(answer.body)}`);
  return answer.body.content.linkToken;
}

export async function screenshot(page, name) {
  mkdirSync(artifacts, { recursive: true });
  await page.screenshot({ path: join(artifacts, `${name}.png`), fullPage: true });
}

/** Opens the sandbox demo app (`/demo`) as `userId` and presses `button` (its id); Link opens in the popup. */
export async function openDemo(browser, lv, { userId, button, viewport }) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  await page.goto(`${lv.url}/demo`);
  await page.locator('#demo-user').fill(userId);
  await page.locator(`#${button}`).click();
  return { context, page, frame: page.frameLocator('#linkvault-link-popup__iframe') };
}

/** The sandbox's request counters: per exchange `{requests, totalRequests, transfersCreated}`. */
export async function sandboxCounters(lv) {
  const res = await fetch(`${lv.url}/sandbox/admin/requests`);
  if (res.status !== 200) throw new Error(`sandbox counters: HTTP ${res.status}`);
  return res.json();
}

/** Polls `fn` (bounded) until it returns a truthy value. */
export async function waitFor(fn, what, timeoutMs = 15_000) {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (value) return value;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
