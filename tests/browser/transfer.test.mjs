// End-to-end tests of the transfer flow inside the hosted Link page (issue 13), in chromium at 390×844: the
// seeds' return-user journey (integrationId + tokenId → straight into the transfer; the catalog with connected
// integrations marked), a fresh sign-in that continues into the transfer, Coinbase's 2FA step, an expired
// preview, insufficient balance, nothing eligible, a read-scoped link token, and another user's tokenId. Driven
// through Mesh's unmodified web SDK and linkvault-link.js against `serve --sandbox`; the sandbox's own counters
// prove how many sends reached the exchange. Every screen is captured in light and dark into
// tests-artifacts/browser/.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import {
  apiCall, launchBrowser, linkToken, openDemo, sandboxCounters, screenshot, startAppServers, startLinkvault, waitFor,
} from './harness.mjs';

let lv;
let servers;
let browser;
let ids;
let styles;

const ETHEREUM = 'e3c7fdd8-b1fc-4e51-85ae-bb276e075611';
const POLYGON = '7436e9d0-ba42-4d2b-b4c0-8e4e606b2c12';
const DESTINATION = '0x2222222222222222222222222222222222222222';

before(async () => {
  lv = await startLinkvault();
  servers = await startAppServers(lv.url);
  browser = await launchBrowser();
  const list = await apiCall(lv, 'GET', '/api/v1/integrations');
  ids = Object.fromEntries(list.body.content.items.map((i) => [i.type, i.id]));
  styles = Object.fromEntries(list.body.content.items.map((i) => [i.type, i.style]));
});

after(async () => {
  await browser?.close();
  servers?.close();
  await lv?.stop();
});

/** A deposit of USDC on Ethereum (and, with `polygon`, the choice of Polygon too); `amount` null: the user
 *  chooses it, else the app fixed it. */
function depositOptions(amount, { polygon = false } = {}) {
  const to = (networkId) => ({ networkId, symbol: 'USDC', address: DESTINATION, ...(amount === null ? {} : { amount }) });
  const toAddresses = [to(ETHEREUM)];
  if (polygon) toAddresses.push(to(POLYGON));
  return { toAddresses, transactionId: `order-${Math.random().toString(16).slice(2, 10)}`, transferType: 'deposit' };
}

async function newApp({ clock = false } = {}) {
  const context = await browser.newContext({ viewport: { width: 390, height: 844 } });
  if (clock) await context.clock.install();
  const page = await context.newPage();
  page.on('console', (m) => { if (m.type() === 'error') console.log(`[browser] ${m.text()}`); });
  await page.goto(servers.appUrl);
  return { context, page };
}

const calls = (page) => page.evaluate(() => window.__calls);
const kinds = async (page, kind) => (await calls(page)).filter((c) => c.kind === kind);
const events = async (page) => (await kinds(page, 'event')).map((c) => c.type);
const eventPayload = async (page, type) => (await kinds(page, 'event')).find((c) => c.type === type)?.payload;
const nonEmpty = (fn) => async () => { const list = await fn(); return list.length > 0 ? list : null; };

function frameOf(page, sdk, options) {
  if (options?.renderType === 'embedded') return page.frameLocator('#embed');
  return page.frameLocator(sdk === 'mesh' ? '#mesh-link-popup__iframe' : '#linkvault-link-popup__iframe');
}

async function open(page, sdk, token, options = {}) {
  await page.evaluate(([s, t, o]) => window.openLinkWith(s, t, o), [sdk, token, options]);
  return frameOf(page, sdk, options);
}

/** The screen in the light and the dark theme (Link follows the system theme when the SDK sets none). */
async function shots(page, name) {
  for (const scheme of ['light', 'dark']) {
    await page.emulateMedia({ colorScheme: scheme });
    await screenshot(page, `transfer-${name}-${scheme}`);
  }
  await page.emulateMedia({ colorScheme: 'light' });
}

/** Signs in to an OAuth integration in the popup Link opens, as the sandbox user `username`. */
async function oauthSignIn(context, frame, username = 'Mesh') {
  const popupPromise = context.waitForEvent('page');
  await frame.locator('#lv-oauth-continue').click();
  const popup = await popupPromise;
  await popup.waitForLoadState();
  await popup.locator('input[name="username"]').fill(username);
  await popup.locator('input[name="password"]').fill('Pass123');
  await popup.locator('button[value="allow"]').click();
}

const returnToken = (tokenId, brokerType) => [{ accessToken: tokenId, brokerType, brokerName: '', accountId: '', accountName: '' }];

async function transfersCreated(exchange) {
  return (await sandboxCounters(lv))[exchange].transfersCreated;
}

/** From the amount screen (prefilled by the app) through preview, 2FA, pending to the success screen. */
async function confirmWithMfa(page, frame, { prefix, wrongCodeFirst = false } = {}) {
  await frame.locator('#lv-preview').waitFor();
  if (prefix) await shots(page, `${prefix}-preview`);
  await frame.locator('#lv-confirm').click();
  await frame.locator('#lv-transfer-mfa').waitFor();
  if (prefix) await shots(page, `${prefix}-mfa`);
  if (wrongCodeFirst) {
    await frame.locator('#lv-transfer-mfa').fill('000000');
    await frame.locator('#lv-transfer-mfa-submit').click();
    await frame.locator('#lv-transfer-mfa-error:not([hidden])').waitFor();
    assert.match(await frame.locator('#lv-transfer-mfa-error').textContent(), /not accepted/);
    if (prefix) await shots(page, `${prefix}-mfa-failed`);
  }
  await frame.locator('#lv-transfer-mfa').fill('123456');
  await frame.locator('#lv-transfer-mfa').press('Enter');
  await frame.locator('#lv-pending, #lv-success').first().waitFor();
  if (prefix && await frame.locator('#lv-pending').count()) await shots(page, `${prefix}-pending`);
  await frame.locator('#lv-success').waitFor({ timeout: 30_000 });
  if (prefix) await shots(page, `${prefix}-success`);
}

const state = {};

describe('the transfer flow inside Link', () => {
  test('a new user signs in to Coinbase and goes on into the transfer: asset, network, amount, preview, a refused then accepted 2FA code, pending, done', async () => {
    const { context, page } = await newApp();
    const options = depositOptions(null, { polygon: true });
    const token = await linkToken(lv, { userId: 'alice', integrationId: ids.coinbase, transferOptions: options }, { scope: 'write' });
    const frame = await open(page, 'mesh', token);
    await frame.locator('#lv-oauth-continue').waitFor();
    assert.equal(await frame.locator('#lv-catalog').count(), 0, 'integrationId skips the catalog');
    assert.equal(await frame.locator('#lv-purpose').getAttribute('data-scope'), 'transfer');
    assert.match(await frame.locator('#lv-purpose').textContent(), /Sandbox demo asks you to send funds/);
    assert.doesNotMatch(await frame.locator('#lv-main').textContent(), /null|undefined/);
    // Coinbase's brand colours (its catalog style) on its screens, in the theme in use.
    const accent = () => frame.locator('#lv-oauth-continue').evaluate((b) => getComputedStyle(b).backgroundColor);
    const rgb = (hex) => `rgb(${[0, 2, 4].map((i) => parseInt(hex.slice(i, i + 2), 16)).join(', ')})`;
    assert.ok(styles.coinbase?.buttonPrimaryLight, 'the catalog carries Coinbase style');
    assert.equal(await accent(), rgb(styles.coinbase.buttonPrimaryLight));
    await page.emulateMedia({ colorScheme: 'dark' });
    if (styles.coinbase.buttonPrimaryDark) assert.equal(await accent(), rgb(styles.coinbase.buttonPrimaryDark));
    await page.emulateMedia({ colorScheme: 'light' });
    await shots(page, '01-sign-in');
    const before = await transfersCreated('coinbase');
    await oauthSignIn(context, frame);

    // Straight on into the transfer: the eligible holding with its balance.
    await frame.locator('#lv-assets button[data-symbol="USDC"]').waitFor();
    await shots(page, '02-asset');
    const [connected] = await waitFor(nonEmpty(() => kinds(page, 'connected')), 'onIntegrationConnected');
    state.aliceCoinbase = connected.payload.accessToken.accountTokens[0].tokenId;
    // Keyboard only from here: focus is on the first asset.
    assert.equal(await frame.locator('#lv-assets button').first().evaluate((b) => b === document.activeElement), true);
    await page.keyboard.press('Enter');
    await frame.locator('#lv-networks').waitFor();
    await shots(page, '03-network');
    await frame.locator(`#lv-networks button[data-network-id="${ETHEREUM}"]`).focus();
    await page.keyboard.press('Enter');

    // No amount fixed by the app: the user enters it; the fiat toggle converts it.
    const amount = frame.locator('#lv-amount');
    await amount.waitFor();
    assert.equal(await amount.inputValue(), '');
    await amount.fill('5');
    await shots(page, '04-amount');
    await frame.locator('#lv-amount-unit').click();
    assert.equal(await amount.inputValue(), '5.00', 'USDC at $1');
    await frame.locator('#lv-amount-unit').click();
    await amount.fill('0');
    await amount.press('Enter');
    await frame.locator('#lv-amount-error:not([hidden])').waitFor();
    await shots(page, '05-amount-invalid');
    await amount.fill('5');
    await amount.press('Enter');

    await confirmWithMfa(page, frame, { prefix: '06', wrongCodeFirst: true });
    // The preview showed what was sent, the fee and the total, and a countdown.
    const [finished] = await waitFor(nonEmpty(() => kinds(page, 'transferFinished')), 'onTransferFinished');
    const p = finished.payload;
    assert.equal(p.status, 'success');
    assert.equal(p.symbol, 'USDC');
    assert.equal(p.amount, 5);
    assert.equal(p.toAddress.toLowerCase(), DESTINATION);
    assert.equal(p.networkId, ETHEREUM);
    assert.equal(p.clientTransactionId, options.transactionId);
    assert.ok(p.txId && p.txHash, 'txId and the transaction hash');
    assert.equal(await frame.locator('#lv-tx-hash').textContent(), p.txHash);
    assert.equal(await transfersCreated('coinbase'), before + 1, 'the refused 2FA code sent nothing; the accepted one sent once');

    const types = await events(page);
    for (const t of ['transferStarted', 'transferAssetSelected', 'transferNetworkSelected', 'transferAmountEntered',
      'transferPreviewed', 'transferMfaRequired', 'transferMfaEntered', 'transferExecuted', 'transferCompleted']) {
      assert.ok(types.includes(t), `event ${t} in ${types}`);
    }
    assert.deepEqual(await eventPayload(page, 'transferNetworkSelected'), { id: ETHEREUM, name: 'Ethereum' });
    assert.equal((await eventPayload(page, 'transferPreviewed')).symbol, 'USDC');
    await frame.locator('#lv-transfer-done').click();
    const [exit] = await waitFor(nonEmpty(() => kinds(page, 'exit')), 'onExit');
    assert.equal(exit.summary.page, 'transferExecutedPage');
    assert.equal(exit.summary.transfer.symbol, 'USDC');
    assert.equal(exit.summary.transfer.networkId, ETHEREUM);
    assert.equal(exit.summary.transfer.transactionId, options.transactionId);
    assert.ok(exit.summary.transfer.previewId);
    await context.close();
  });

  for (const sdk of ['mesh', 'linkvault']) {
    test(`the deposit path through ${sdk}: integrationId + the user's tokenId go straight into the transfer (no catalog, no sign-in), one send`, async () => {
      assert.ok(state.aliceCoinbase, 'needs the first test');
      const { context, page } = await newApp();
      const options = depositOptions(5);
      const token = await linkToken(lv, { userId: 'alice', integrationId: ids.coinbase, transferOptions: options }, { scope: 'write' });
      const before = await transfersCreated('coinbase');
      const embedded = sdk === 'linkvault';
      const frame = await open(page, sdk, token, {
        accessTokens: returnToken(state.aliceCoinbase, 'coinbase'), ...(embedded ? { renderType: 'embedded' } : {}),
      });
      await frame.locator('#lv-assets button[data-symbol="USDC"]').click();
      // One network: its screen is skipped.
      await frame.locator('#lv-amount').waitFor();
      // The app fixed the amount in the link token: prefilled, and not editable.
      assert.equal(await frame.locator('#lv-amount').inputValue(), '5');
      assert.equal(await frame.locator('#lv-amount').getAttribute('readonly'), '');
      if (embedded) await shots(page, '07-embedded-amount-fixed');
      assert.equal(await frame.locator('#lv-catalog').count(), 0);
      assert.equal(await frame.locator('#lv-oauth-continue').count(), 0);
      await frame.locator('#lv-amount-continue').click();
      await confirmWithMfa(page, frame, embedded ? { prefix: '07-embedded' } : {});
      const [finished] = await waitFor(nonEmpty(() => kinds(page, 'transferFinished')), 'onTransferFinished');
      const p = finished.payload;
      assert.equal(p.symbol, 'USDC');
      assert.equal(p.amount, 5);
      assert.equal(p.toAddress.toLowerCase(), DESTINATION);
      assert.equal(p.networkId, ETHEREUM);
      assert.ok(p.txId);
      assert.equal(await transfersCreated('coinbase'), before + 1, 'exactly one send reached the sandbox');
      const types = await events(page);
      assert.ok(!types.includes('integrationOAuthStarted') && !types.includes('credentialsEntered'), 'no sign-in');
      assert.ok(types.includes('transferCompleted'));
      await context.close();
    });
  }

  test("the return user's catalog: without integrationId the connected integration is marked, picking it skips sign-in, back leads to the catalog", async () => {
    const { context, page } = await newApp();
    const token = await linkToken(lv, { userId: 'alice', transferOptions: depositOptions(5) }, { scope: 'write' });
    const frame = await open(page, 'linkvault', token, { accessTokens: returnToken(state.aliceCoinbase, 'coinbase') });
    const coinbase = frame.locator('button[data-type="coinbase"]');
    await coinbase.locator('.lv-badge').waitFor();
    assert.equal(await frame.locator('.lv-badge').count(), 1);
    await shots(page, '08-catalog-connected');
    await coinbase.click();
    await frame.locator('#lv-assets').waitFor();
    assert.equal(await frame.locator('#lv-oauth-continue').count(), 0, 'no sign-in');
    // Escape (or the back button) returns to the catalog.
    await page.keyboard.press('Escape');
    await frame.locator('#lv-catalog').waitFor();
    // Another integration signs in as usual.
    await frame.locator('button[data-type="uphold"]').click();
    await frame.locator('#lv-oauth-continue').waitFor();
    await context.close();
  });

  test('insufficient balance: a clear screen naming the reason, and a way to change the amount', async () => {
    const { context, page } = await newApp();
    const token = await linkToken(lv, { userId: 'alice', integrationId: ids.coinbase, transferOptions: depositOptions(null) }, { scope: 'write' });
    const before = await transfersCreated('coinbase');
    const frame = await open(page, 'mesh', token, { accessTokens: returnToken(state.aliceCoinbase, 'coinbase') });
    await frame.locator('#lv-assets button[data-symbol="USDC"]').click();
    await frame.locator('#lv-amount').fill('900000');
    await frame.locator('#lv-amount-continue').click();
    const refusal = frame.locator('#lv-refusal');
    await refusal.waitFor();
    assert.equal(await refusal.getAttribute('data-reason'), 'insufficientBalance');
    await shots(page, '09-insufficient-balance');
    assert.ok((await events(page)).includes('transferPreviewError'));
    await frame.locator('#lv-change-amount').click();
    await frame.locator('#lv-amount').waitFor();
    assert.equal(await transfersCreated('coinbase'), before, 'nothing sent');
    await context.close();
  });

  test("Uphold: below the exchange's minimum gets a clear screen; a preview the exchange let expire is refused at confirm (previewExpired) and one click re-quotes; the transfer finishes", async () => {
    const { context, page } = await newApp({ clock: true });
    const token = await linkToken(lv, { userId: 'alice', integrationId: ids.uphold, transferOptions: depositOptions(null) }, { scope: 'write' });
    const frame = await open(page, 'linkvault', token);
    await oauthSignIn(context, frame);
    await frame.locator('#lv-assets button[data-symbol="USDC"]').click();
    await frame.locator('#lv-amount').fill('1');
    await frame.locator('#lv-amount-continue').click();
    const refusal = frame.locator('#lv-refusal');
    await refusal.waitFor();
    assert.equal(await refusal.getAttribute('data-reason'), 'belowMinimum');
    await shots(page, '09-below-minimum');
    await frame.locator('#lv-change-amount').click();
    await frame.locator('#lv-amount').fill('6');
    // The page's clock stands still: its countdown never ends, so only the server can say the preview expired.
    await context.clock.setFixedTime(Date.now());
    await frame.locator('#lv-amount').press('Enter');
    await frame.locator('#lv-preview').waitFor();
    const seconds = Number((await frame.locator('#lv-countdown').textContent()).match(/(\d+):(\d\d)/).slice(1).reduce((m, s) => m * 60 + Number(s), 0));
    assert.ok(seconds > 0 && seconds <= 30, `Uphold's quote bounds the preview (${seconds} s)`);
    await new Promise((r) => setTimeout(r, (seconds + 1.5) * 1000));
    const before = await transfersCreated('uphold');
    await frame.locator('#lv-confirm').click();
    await frame.locator('#lv-expired').waitFor();
    await frame.locator('#lv-refresh').click();
    await frame.locator('#lv-confirm').click();
    await frame.locator('#lv-success').waitFor({ timeout: 30_000 });
    const [finished] = await waitFor(nonEmpty(() => kinds(page, 'transferFinished')), 'onTransferFinished');
    assert.equal(finished.payload.amount, 6);
    assert.equal(finished.payload.symbol, 'USDC');
    assert.equal(await transfersCreated('uphold'), before + 1, 'the expired preview sent nothing; the new one sent once');
    await context.close();
  });

  test('an expired preview: the countdown ends on a clear screen, one click gets a new quote that can be confirmed', async () => {
    const { context, page } = await newApp({ clock: true });
    const token = await linkToken(lv, { userId: 'alice', integrationId: ids.coinbase, transferOptions: depositOptions(5) }, { scope: 'write' });
    const frame = await open(page, 'mesh', token, { accessTokens: returnToken(state.aliceCoinbase, 'coinbase') });
    await frame.locator('#lv-assets button[data-symbol="USDC"]').click();
    await frame.locator('#lv-amount-continue').click();
    await frame.locator('#lv-countdown').waitFor();
    const first = (await eventPayload(page, 'transferPreviewed')).previewId;
    assert.match(await frame.locator('#lv-countdown').textContent(), /\d+:\d\d/);
    await context.clock.fastForward('10:00');
    await frame.locator('#lv-expired').waitFor();
    await shots(page, '10-preview-expired');
    await frame.locator('#lv-refresh').click();
    await frame.locator('#lv-confirm').waitFor();
    const previews = (await kinds(page, 'event')).filter((c) => c.type === 'transferPreviewed').map((c) => c.payload.previewId);
    assert.equal(previews.length, 2);
    assert.notEqual(previews[1], first, 'a new preview');
    await context.close();
  });

  test('nothing eligible: an account with no USDC gets the transferNoEligibleAssets screen and event', async () => {
    const { context, page } = await newApp();
    const token = await linkToken(lv, { userId: 'erin', integrationId: ids.coinbase, transferOptions: depositOptions(5) }, { scope: 'write' });
    const frame = await open(page, 'linkvault', token);
    await oauthSignIn(context, frame, 'MeshBTC');
    await frame.locator('#lv-no-assets').waitFor();
    await shots(page, '11-no-eligible-assets');
    const payload = await waitFor(() => eventPayload(page, 'transferNoEligibleAssets'), 'transferNoEligibleAssets');
    assert.equal(payload.integrationName, 'Coinbase');
    assert.ok(payload.arrayOfTokensHeld.some((h) => h.symbol === 'BTC'), JSON.stringify(payload));
    await context.close();
  });

  test('a tokenId that needs re-authentication: that sign-in, then the same tokenId, then the transfer flow', async () => {
    const { context, page } = await newApp();
    const binance = 'binanceInternationalDirect';
    const signIn = async (frame) => {
      await frame.locator('#lv-username').fill('Mesh');
      await frame.locator('#lv-password').fill('Pass123');
      await frame.locator('#lv-signin').click();
      await frame.locator('#lv-mfa').fill('123456');
      await frame.locator('#lv-mfa-submit').click();
    };
    const first = await linkToken(lv, { userId: 'frank', integrationId: ids[binance], transferOptions: depositOptions(5) }, { scope: 'write' });
    let frame = await open(page, 'mesh', first);
    await signIn(frame);
    await frame.locator('#lv-assets').waitFor();
    const [connected] = await waitFor(nonEmpty(() => kinds(page, 'connected')), 'onIntegrationConnected');
    const tokenId = connected.payload.accessToken.accountTokens[0].tokenId;
    await context.close();

    const expired = await fetch(`${lv.url}/sandbox/admin/binance/expire-sessions`, { method: 'POST' });
    assert.equal(expired.status, 200);
    const again = await newApp();
    const second = await linkToken(lv, { userId: 'frank', integrationId: ids[binance], transferOptions: depositOptions(5) }, { scope: 'write' });
    frame = await open(again.page, 'linkvault', second, { accessTokens: returnToken(tokenId, binance) });
    await frame.locator('#lv-reauth').waitFor();
    assert.doesNotMatch(await frame.locator('#lv-main').textContent(), /null|undefined/);
    await shots(again.page, '14-reauth-sign-in');
    await signIn(frame);
    await frame.locator('#lv-assets').waitFor();
    const [payload] = await waitFor(nonEmpty(() => kinds(again.page, 'connected')), 'onIntegrationConnected');
    assert.equal(payload.payload.accessToken.accountTokens[0].tokenId, tokenId, 'the same tokenId');
    await again.context.close();
  });

  test("another user's tokenId does not skip sign-in", async () => {
    const { context, page } = await newApp();
    const token = await linkToken(lv, { userId: 'bob', integrationId: ids.coinbase, transferOptions: depositOptions(5) }, { scope: 'write' });
    const frame = await open(page, 'mesh', token, { accessTokens: returnToken(state.aliceCoinbase, 'coinbase') });
    await frame.locator('#lv-oauth-continue').waitFor();
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(await frame.locator('#lv-assets').count(), 0);
    assert.deepEqual(await kinds(page, 'connected'), []);
    assert.ok(!(await events(page)).includes('transferStarted'));
    await context.close();
  });

  test('a read-scoped link token has no transfer flow: sign-in leads to the account and its balances', async () => {
    const { context, page } = await newApp();
    const token = await linkToken(lv, { userId: 'alice', integrationId: ids.coinbase, transferOptions: depositOptions(5) });
    const frame = await open(page, 'linkvault', token);
    await frame.locator('#lv-oauth-continue').waitFor();
    assert.equal(await frame.locator('#lv-purpose').getAttribute('data-scope'), 'read');
    await shots(page, '12-read-sign-in');
    await oauthSignIn(context, frame);
    await frame.locator('#lv-connected').waitFor();
    await frame.locator('.lv-account-balance').first().waitFor();
    await shots(page, '13-read-connected');
    assert.equal(await frame.locator('#lv-assets').count(), 0);
    assert.ok(!(await events(page)).some((t) => t.startsWith('transfer')), 'no transfer event');
    await context.close();
  });

  test('the demo: "Deposit 5 USDC from Coinbase" runs the whole flow, shows onTransferFinished, and skips sign-in the second time', async () => {
    const { context, page, frame } = await openDemo(browser, lv, { userId: 'demo-depositor', button: 'demo-deposit', viewport: { width: 390, height: 844 } });
    await frame.locator('#lv-oauth-continue').waitFor();
    const before = await transfersCreated('coinbase');
    await oauthSignIn(context, frame);
    await frame.locator('#lv-assets button[data-symbol="USDC"]').click();
    assert.equal(await frame.locator('#lv-amount').inputValue(), '5');
    await frame.locator('#lv-amount-continue').click();
    await confirmWithMfa(page, frame);
    await frame.locator('#lv-transfer-done').click();
    await page.locator('#demo-transfer').filter({ hasText: 'USDC' }).waitFor();
    const shown = JSON.parse(await page.locator('#demo-transfer').textContent());
    assert.equal(shown.amount, 5);
    assert.equal(shown.symbol, 'USDC');
    assert.ok(shown.txHash);
    assert.equal(await transfersCreated('coinbase'), before + 1);
    await screenshot(page, 'transfer-15-demo-after-deposit');
    // The demo kept the write-scoped tokenId: the second deposit goes straight to the transfer.
    assert.equal(await page.locator('#demo-tokens li[data-scope="write"]').count(), 1);
    await page.locator('#demo-deposit').click();
    await frame.locator('#lv-assets').waitFor();
    assert.equal(await frame.locator('#lv-oauth-continue').count(), 0);
    await context.close();
  });
});
