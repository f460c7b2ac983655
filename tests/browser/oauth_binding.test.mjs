// Link's OAuth sign-in is bound to the browser that started it (issue 14, finding 1): a second browser
// context that approves the first context's authorize URL cannot complete the first context's session. The
// first context's Link shows the failure; no connection is made for its user (checked through the API);
// the first context can then connect normally.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { apiCall, launchBrowser, linkToken, screenshot, startAppServers, startLinkvault, waitFor } from './harness.mjs';

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
  await lv?.stop();
});

async function newApp() {
  const context = await browser.newContext({ viewport: { width: 1000, height: 900 } });
  const page = await context.newPage();
  await page.goto(servers.appUrl);
  return { context, page };
}

/** What the API reports for all of `userId`'s connections (Mesh's portfolio over every connection). */
async function portfolio(userId) {
  const answer = await apiCall(lv, 'GET', `/api/v1/balance/portfolio?userId=${encodeURIComponent(userId)}`);
  assert.equal(answer.code, 200, JSON.stringify(answer.body));
  return answer.body.content;
}

/** Opens Link (linkvault-link.js) for `userId` and starts the Coinbase-like OAuth sign-in: the popup. */
async function startCoinbase(context, page, userId) {
  const token = await linkToken(lv, { userId });
  await page.evaluate(([t]) => window.openLinkWith('linkvault', t, {}), [token]);
  const frame = page.frameLocator('#linkvault-link-popup__iframe');
  await frame.locator('button[data-type="coinbase"]').click();
  const popupPromise = context.waitForEvent('page');
  await frame.locator('#lv-oauth-continue').click();
  const popup = await popupPromise;
  await popup.locator('input[name="username"]').waitFor();
  return { frame, popup };
}

async function approve(page) {
  await page.locator('input[name="username"]').fill('Mesh');
  await page.locator('input[name="password"]').fill('Pass123');
  await page.locator('button[value="allow"]').click();
}

test('a second browser context approving the authorize URL cannot complete the first context\'s session', async () => {
  const user = `bound-${Date.now()}`;
  const empty = await portfolio(`nobody-${Date.now()}`);
  assert.deepEqual(await portfolio(user), empty);

  const first = await newApp();
  const { frame, popup } = await startCoinbase(first.context, first.page, user);
  const authorizeUrl = popup.url();
  assert.match(new URL(authorizeUrl).pathname, /\/oauth\/authorize$/, `the popup went on to the integration: ${authorizeUrl}`);

  // Another browser (no cookies of the first) approves that URL, as a phished victim would.
  const victim = await browser.newContext();
  const victimPage = await victim.newPage();
  await victimPage.goto(authorizeUrl);
  await approve(victimPage);
  await victimPage.waitForURL((url) => url.pathname.endsWith('/link/oauth/callback'));
  await victimPage.locator('body[data-status="failed"]').waitFor();
  assert.match(await victimPage.locator('[role="status"]').innerText(), /started in another browser/);
  await screenshot(victimPage, 'oauth-binding-victim-refused');

  // The first context's Link shows the failure; nothing was connected for its user.
  const error = frame.locator('.lv-error:not([hidden])');
  await error.waitFor();
  assert.match(await error.innerText(), /another browser/);
  await screenshot(first.page, 'oauth-binding-first-failed');
  assert.equal(await frame.locator('#lv-connected').count(), 0);
  assert.deepEqual(await portfolio(user), empty, 'no connection was made for the session\'s user');
  await popup.close();
  await victim.close();

  // The starting browser itself still connects (the same flow the other suites run).
  const retry = await frame.locator('#lv-oauth-continue');
  const popupPromise = first.context.waitForEvent('page');
  await retry.click();
  const own = await popupPromise;
  await own.locator('input[name="username"]').waitFor();
  await approve(own);
  await frame.locator('#lv-connected').waitFor();
  await waitFor(async () => JSON.stringify(await portfolio(user)) !== JSON.stringify(empty), 'the connection in the portfolio');
  await first.context.close();
});
