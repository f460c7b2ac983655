// End-to-end tests of the hosted Link page in chromium: the same flows through Mesh's real web SDK
// (@meshconnect/web-link-sdk, bundled with esbuild) and through linkvault's own linkvault-link.js, plus the
// hostile-frame origin test. Screenshots go to tests-artifacts/browser/.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import {
  apiCall, launchBrowser, linkToken, openDemo, screenshot, startAppServers, startLinkvault, waitFor,
} from './harness.mjs';

let lv;
let servers;
let browser;

before(async () => {
  lv = await startLinkvault();
  servers = await startAppServers(lv.url);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  servers?.close();
  if (lv) {
    // No token may appear in a log line: the server's whole output is checked at the end.
    const log = lv.output();
    await lv.stop();
    for (const secret of seenSecrets) {
      assert.ok(!log.includes(secret), 'a token or auth code appeared in the server output');
    }
  }
});

/** tokenIds, link tokens and auth codes seen during the run, checked against the server log at the end. */
const seenSecrets = new Set();

function remember(linkTokenValue) {
  seenSecrets.add(linkTokenValue);
  const url = Buffer.from(linkTokenValue, 'base64').toString('utf8');
  seenSecrets.add(new URL(url).searchParams.get('auth_code'));
  return linkTokenValue;
}

async function newApp() {
  const context = await browser.newContext({ viewport: { width: 1000, height: 900 } });
  const page = await context.newPage();
  page.on('console', (m) => { if (m.type() === 'error') console.log(`[browser] ${m.text()}`); });
  await page.goto(servers.appUrl);
  return { context, page };
}

const calls = (page) => page.evaluate(() => window.__calls);
const connectedPayloads = async (page) => (await calls(page)).filter((c) => c.kind === 'connected').map((c) => c.payload.accessToken);
const exits = async (page) => (await calls(page)).filter((c) => c.kind === 'exit');
/** For waitFor: an empty list counts as not there yet. */
const nonEmpty = (fn) => async () => { const list = await fn(); return list.length > 0 ? list : null; };
const events = async (page) => (await calls(page)).filter((c) => c.kind === 'event').map((c) => c.type);

function iframeSelector(sdk, options) {
  if (options?.renderType === 'embedded') return '#embed';
  return sdk === 'mesh' ? '#mesh-link-popup__iframe' : '#linkvault-link-popup__iframe';
}

async function open(page, sdk, token, options = {}) {
  await page.evaluate(([s, t, o]) => window.openLinkWith(s, t, o), [sdk, token, options]);
  return page.frameLocator(iframeSelector(sdk, options));
}

async function signInCredentials(frame) {
  await frame.locator('#lv-username').fill('Mesh');
  await frame.locator('#lv-password').fill('Pass123');
  await frame.locator('#lv-signin').click();
  await frame.locator('#lv-mfa').fill('123456');
  await frame.locator('#lv-mfa-submit').click();
}

async function tokenStatus(tokenId) {
  const answer = await apiCall(lv, 'GET', `/api/v1/tokens/${tokenId}`);
  return answer.code === 200 ? answer.body.content.status : `HTTP ${answer.code}`;
}

for (const sdk of ['mesh', 'linkvault']) {
  describe(`Link through ${sdk === 'mesh' ? "Mesh's web-link-sdk" : 'linkvault-link.js'}`, () => {
    const userA = `alice-${sdk}`;
    const state = {};

    test('(a) Coinbase-like OAuth connect gives a tokenId that GET /api/v1/tokens/{id} knows', async () => {
      const { context, page } = await newApp();
      state.usedToken = remember(await linkToken(lv, { userId: userA }));
      const frame = await open(page, sdk, state.usedToken, { theme: 'light', language: 'en' });
      await frame.locator('#lv-catalog').waitFor();
      await frame.locator('#lv-search').fill('coin');
      await screenshot(page, `${sdk}-a1-catalog-search`);
      await frame.locator('button[data-type="coinbase"]').click();
      const popupPromise = context.waitForEvent('page');
      await frame.locator('#lv-oauth-continue').click();
      const popup = await popupPromise;
      await popup.waitForLoadState();
      await popup.locator('input[name="username"]').fill('Mesh');
      await popup.locator('input[name="password"]').fill('Pass123');
      await screenshot(popup, `${sdk}-a2-oauth-consent`);
      await popup.locator('button[value="allow"]').click();
      await frame.locator('#lv-connected').waitFor();
      await screenshot(page, `${sdk}-a3-connected`);
      const [payload] = await waitFor(nonEmpty(() => connectedPayloads(page)), 'onIntegrationConnected');
      assert.equal(payload.brokerType, 'coinbase');
      const tokenId = payload.accountTokens[0].tokenId;
      assert.match(tokenId, /^[0-9a-f-]{36}$/);
      assert.equal(payload.accountTokens[0].accessToken, tokenId, 'managed mode: accessToken is the tokenId');
      seenSecrets.add(tokenId);
      assert.equal(await tokenStatus(tokenId), 'active');
      const types = await events(page);
      for (const t of ['pageLoaded', 'integrationSelected', 'integrationOAuthStarted', 'integrationConnected']) {
        assert.ok(types.includes(t), `event ${t} in ${types}`);
      }
      await frame.locator('#lv-done').click();
      const [exit] = await waitFor(nonEmpty(() => exits(page)), 'onExit');
      assert.equal(exit.error, null);
      assert.equal(exit.summary.page, 'integrationConnectedPage');
      await context.close();
    });

    test('(b) Binance-like credentials with the MFA step', async () => {
      const { context, page } = await newApp();
      const frame = await open(page, sdk, remember(await linkToken(lv, { userId: userA })), { theme: 'dark' });
      await frame.locator('button[data-type="binanceInternationalDirect"]').click();
      await frame.locator('#lv-username').fill('Mesh');
      await frame.locator('#lv-password').fill('Pass123');
      await screenshot(page, `${sdk}-b1-credentials`);
      await frame.locator('#lv-signin').click();
      await frame.locator('#lv-mfa').waitFor();
      await screenshot(page, `${sdk}-b2-mfa`);
      await frame.locator('#lv-mfa').fill('123456');
      await frame.locator('#lv-mfa-submit').click();
      await frame.locator('#lv-connected').waitFor();
      await screenshot(page, `${sdk}-b3-connected`);
      const [payload] = await waitFor(nonEmpty(() => connectedPayloads(page)), 'onIntegrationConnected');
      assert.equal(payload.brokerType, 'binanceInternationalDirect');
      state.binanceToken = payload.accountTokens[0].tokenId;
      seenSecrets.add(state.binanceToken);
      assert.equal(await tokenStatus(state.binanceToken), 'active');
      const types = await events(page);
      for (const t of ['credentialsEntered', 'integrationMfaRequired', 'integrationMfaEntered']) {
        assert.ok(types.includes(t), `event ${t} in ${types}`);
      }
      await context.close();
    });

    const returnTokens = () => [{
      accessToken: state.binanceToken, brokerType: 'binanceInternationalDirect', brokerName: '', accountId: '', accountName: '',
    }];

    test('(c) the same user with accessTokens sees it marked connected in the catalog, skips sign-in and gets the same tokenId', async () => {
      const { context, page } = await newApp();
      const frame = await open(page, sdk, remember(await linkToken(lv, { userId: userA })), { accessTokens: returnTokens() });
      await frame.locator('#lv-catalog').waitFor();
      const item = frame.locator('button[data-type="binanceInternationalDirect"]');
      await item.locator('.lv-badge').waitFor();
      assert.equal(await frame.locator('.lv-badge').count(), 1, 'only the connected integration is marked');
      await screenshot(page, `${sdk}-c0-return-user-catalog`);
      await item.click();
      await frame.locator('#lv-connected').waitFor();
      await screenshot(page, `${sdk}-c1-return-user`);
      assert.equal(await frame.locator('#lv-username').count(), 0, 'no sign-in form');
      const [payload] = await waitFor(nonEmpty(() => connectedPayloads(page)), 'onIntegrationConnected');
      assert.equal(payload.accountTokens[0].tokenId, state.binanceToken);
      assert.ok(!(await events(page)).includes('credentialsEntered'));
      await context.close();
    });

    test('(d) an expired Binance session asks to sign in again and reactivates the same tokenId', async () => {
      const expired = await fetch(`${lv.url}/sandbox/admin/binance/expire-sessions`, { method: 'POST' });
      assert.equal(expired.status, 200);
      const { context, page } = await newApp();
      const frame = await open(page, sdk, remember(await linkToken(lv, { userId: userA })), { accessTokens: returnTokens() });
      await frame.locator('#lv-reauth').waitFor();
      await screenshot(page, `${sdk}-d1-reauth-prompt`);
      await signInCredentials(frame);
      await frame.locator('#lv-connected').waitFor();
      await screenshot(page, `${sdk}-d2-reconnected`);
      const [payload] = await waitFor(nonEmpty(() => connectedPayloads(page)), 'onIntegrationConnected');
      assert.equal(payload.accountTokens[0].tokenId, state.binanceToken, 'same tokenId after re-authentication');
      assert.equal(await tokenStatus(state.binanceToken), 'active');
      await context.close();
    });

    test("(e) another user's Link ignores user A's tokenId", async () => {
      const { context, page } = await newApp();
      const tokens = [...returnTokens(), {
        accessToken: '00000000-0000-4000-8000-000000000000', brokerType: 'coinbase', brokerName: '', accountId: '', accountName: '',
      }];
      const frame = await open(page, sdk, remember(await linkToken(lv, { userId: `bob-${sdk}` })), { accessTokens: tokens });
      await frame.locator('#lv-catalog').waitFor();
      await screenshot(page, `${sdk}-e1-other-user-catalog`);
      assert.equal(await frame.locator('.lv-badge').count(), 0, 'no integration shows as connected');
      assert.deepEqual(await connectedPayloads(page), []);
      await context.close();
    });

    test('(f) a used link token shows a clear error page and onExit gets the error', async () => {
      const { context, page } = await newApp();
      const frame = await open(page, sdk, state.usedToken);
      const message = frame.locator('#lv-error-message');
      await message.waitFor();
      assert.match(await message.textContent(), /already used/);
      await screenshot(page, `${sdk}-f1-used-token`);
      await frame.locator('#lv-error-close').click();
      const [exit] = await waitFor(nonEmpty(() => exits(page)), 'onExit');
      assert.match(exit.error, /already used/);
      await context.close();

      // An unknown (or expired) auth_code: the same page, with the expiry wording.
      const ctx2 = await newApp();
      const bogus = Buffer.from(`${lv.url}/link/broker-connect?auth_code=unknown-code-000000000000000000000000000`).toString('base64');
      const frame2 = await open(ctx2.page, sdk, bogus);
      await frame2.locator('#lv-error-message').waitFor();
      assert.match(await frame2.locator('#lv-error-message').textContent(), /expired/);
      await screenshot(ctx2.page, `${sdk}-f2-expired-token`);
      await ctx2.context.close();
    });

    test('(g) integrationId skips the catalog', async () => {
      const list = await apiCall(lv, 'GET', '/api/v1/integrations');
      const binance = list.body.content.items.find((i) => i.type === 'binanceInternationalDirect');
      const { context, page } = await newApp();
      const frame = await open(page, sdk, remember(await linkToken(lv, { userId: `carol-${sdk}`, integrationId: binance.id })), { language: 'fr' });
      await frame.locator('#lv-username').waitFor();
      assert.equal(await frame.locator('#lv-catalog').count(), 0);
      await screenshot(page, `${sdk}-g1-integration-id`);
      await context.close();
    });

    test('embedded mode on a phone-sized screen, and a hostile frame of another origin is ignored', async () => {
      const context = await browser.newContext({ viewport: { width: 390, height: 844 } });
      const page = await context.newPage();
      await page.goto(servers.appUrl);
      const frame = await open(page, sdk, remember(await linkToken(lv, { userId: userA })), { renderType: 'embedded' });
      await frame.locator('#lv-catalog').waitFor();
      await page.evaluate((url) => window.loadHostile(url), servers.hostileUrl);
      const hostile = page.frameLocator('#hostile');
      await hostile.locator('p').waitFor();
      const hostileFrame = page.frames().find((f) => f.url().startsWith(servers.hostileUrl));
      await hostileFrame.evaluate(([t]) => window.attack(t, 'binanceInternationalDirect'), [state.binanceToken]);
      await new Promise((r) => setTimeout(r, 1500));
      await screenshot(page, `${sdk}-h1-hostile-ignored`);
      assert.equal(await frame.locator('#lv-catalog').count(), 1, 'Link stayed on the catalog');
      assert.deepEqual(await connectedPayloads(page), [], 'no forged or return-user payload');
      assert.deepEqual(await exits(page), [], 'neither closeRequested nor a forged close was obeyed');
      assert.deepEqual(await hostileFrame.evaluate(() => window.__received), [], 'Link posted nothing to the hostile frame');
      // The legitimate parent can still close it.
      await page.evaluate(() => window.__link.closeLinkRequested());
      await waitFor(nonEmpty(() => exits(page)), 'onExit after closeRequested from the parent');
      await context.close();
    });
  });
}

test('Link pages send the security headers', async () => {
  const token = remember(await linkToken(lv, { userId: 'headers' }));
  const url = Buffer.from(token, 'base64').toString('utf8');
  const res = await fetch(url);
  const csp = res.headers.get('content-security-policy');
  assert.match(csp, /script-src 'self'/);
  assert.doesNotMatch(csp, /unsafe-inline/);
  assert.match(csp, /frame-ancestors [^;]*http:\/\/127\.0\.0\.1:\*/);
  assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
  assert.equal(res.headers.get('referrer-policy'), 'no-referrer');
  for (const asset of ['/link/assets/link.js', '/link/assets/link.css', '/link/sdk/linkvault-link.js']) {
    const a = await fetch(`${lv.url}${asset}`);
    assert.equal(a.status, 200, asset);
    assert.equal(a.headers.get('x-content-type-options'), 'nosniff', asset);
    assert.ok(a.headers.get('content-security-policy'), asset);
  }
});

test('the sandbox demo page gets link tokens from its backend route', async () => {
  const { context, page, frame } = await openDemo(browser, lv, { userId: 'demo-browser-test', button: 'demo-open', viewport: { width: 1000, height: 900 } });
  await frame.locator('button[data-type="binanceInternationalDirect"]').click();
  await signInCredentials(frame);
  await frame.locator('#lv-connected').waitFor();
  await frame.locator('#lv-done').click();
  await page.locator('#demo-tokens li').waitFor();
  const saved = await page.locator('#demo-tokens li').textContent();
  await screenshot(page, 'demo-1-after-connect');
  // Reopen as a return user: the catalog marks it connected; picking it needs no sign-in, same tokenId.
  await page.locator('#demo-open').click();
  await frame.locator('button[data-type="binanceInternationalDirect"] .lv-badge').waitFor();
  await frame.locator('button[data-type="binanceInternationalDirect"]').click();
  await frame.locator('#lv-connected').waitFor();
  const tokenId = saved.split(': ')[1];
  assert.equal(await frame.locator('#lv-connected').getAttribute('data-token-id'), tokenId);
  await screenshot(page, 'demo-2-return-user');
  await context.close();
});

test("linkvault-link.js forwards exactly Mesh's Link event types", async () => {
  const { readFile } = await import('node:fs/promises');
  const { join } = await import('node:path');
  const { repoRoot } = await import('./harness.mjs');
  const list = (text, start) => {
    const at = text.indexOf(start);
    assert.ok(at >= 0, start);
    const body = text.slice(text.indexOf('[', at) + 1, text.indexOf(']', at));
    return [...body.matchAll(/'([A-Za-z]+)'/g)].map((m) => m[1]).sort();
  };
  const mesh = await readFile(join(repoRoot, 'tests/browser/node_modules/@meshconnect/web-link-sdk/utils/event-types.js'), 'utf8');
  const ours = await readFile(join(repoRoot, 'crates/server/assets/link/linkvault-link.js'), 'utf8');
  assert.deepEqual(list(ours, 'var EVENT_TYPES'), list(mesh, 'var LINK_EVENT_TYPE_KEYS'));
});
