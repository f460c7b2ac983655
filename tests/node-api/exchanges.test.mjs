// Mesh's published Node client (@meshconnect/node-api, unmodified) against every sandbox exchange, each served in
// its provider's own wire format: holdings, balance, value, portfolio, deposit address, preview, execute (with
// Coinbase's second factor) and transfer history answer in Mesh's shapes with the sandbox's numbers, and the
// sandbox's request log shows only the providers' documented paths.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { FrontApi } from '@meshconnect/node-api';
import { demoClient, startServer } from './server.mjs';

const BASE_NETWORK = 'aa883b03-120d-477c-a588-37c2afd3ca71';
const ETHEREUM = 'e3c7fdd8-b1fc-4e51-85ae-bb276e075611';
const ADDRESS = '0x52908400098527886E0F7030069857D2E4169EE7';
// The sandbox user `Mesh`.
const HOLDINGS = { BTC: [12.5, 65000], ETH: [240, 3500], SOL: [5000, 150], USDC: [250000, 1] };
const CASH = 10_000_000;
const DOCUMENTED = { coinbase: ['/v2/'], uphold: ['/v0/'], binance: ['/api/v3/', '/sapi/v1/'] };

let server;
let baseURL;
let creds;

function client(secret) {
  return new FrontApi({ baseURL, headers: { 'X-Client-Id': creds.clientId, 'X-Client-Secret': secret } });
}

before(async () => {
  server = await startServer('linkvault-node-exchanges-');
  baseURL = server.baseURL;
  creds = demoClient(server.dataDir);
});

after(() => server?.stop());

const close = (a, b) => Math.abs(a - b) <= 1e-6 * Math.max(1, Math.abs(b));

/** Signs in at a sandbox OAuth exchange through its consent form and imports the tokens (write scope). */
async function connectOAuth(exchange, userId) {
  const meta = await (await fetch(`${baseURL}/sandbox/${exchange}/.well-known/oauth-authorization-server`)).json();
  // Every scope the exchange offers: read and send.
  const scopes = meta.scopes_supported;
  const verifier = randomBytes(32).toString('base64url');
  const challenge = createHash('sha256').update(verifier).digest('base64url');
  const redirect = 'http://127.0.0.1:9/callback';
  const query = {
    response_type: 'code', client_id: 'linkvault-sandbox', redirect_uri: redirect, scope: scopes.join(' '),
    state: 'node', code_challenge: challenge, code_challenge_method: 'S256',
  };
  const form = new URLSearchParams({ ...query, username: 'Mesh', password: 'Pass123', decision: 'allow' });
  const consent = await fetch(meta.authorization_endpoint, { method: 'POST', body: form, redirect: 'manual' });
  assert.ok([302, 303].includes(consent.status), `${exchange} consent redirects (${consent.status})`);
  const code = new URL(consent.headers.get('location')).searchParams.get('code');
  const tokenResponse = await fetch(meta.token_endpoint, {
    method: 'POST',
    body: new URLSearchParams({
      grant_type: 'authorization_code', code, redirect_uri: redirect, code_verifier: verifier,
      client_id: 'linkvault-sandbox', client_secret: 'linkvault-sandbox-secret',
    }),
  });
  const tokens = await tokenResponse.json();
  assert.ok(tokens.access_token, JSON.stringify(tokens));
  // linkvault's import extension (not in Mesh's client): the tokens go under management, the app keeps a tokenId.
  const imported = await fetch(`${baseURL}/api/v1/tokens/import`, {
    method: 'POST',
    headers: { 'X-Client-Id': creds.clientId, 'X-Client-Secret': creds.write, 'content-type': 'application/json' },
    body: JSON.stringify({
      userId, type: exchange, accessToken: tokens.access_token, refreshToken: tokens.refresh_token,
      expiresInSeconds: tokens.expires_in,
    }),
  });
  const body = await imported.json();
  assert.equal(imported.status, 200, JSON.stringify(body));
  return body.content.tokenId;
}

/** A Binance API key pair from the sandbox, signed in with Mesh's authenticate call. */
async function connectBinanceKey(api, userId) {
  const issued = await (await fetch(`${baseURL}/sandbox/admin/binance/api-keys`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username: 'Mesh', permissions: ['read', 'withdraw'] }),
  })).json();
  const done = await api.selfManagedAccountAuthentication.v1AuthenticateCreate({ userId }, {
    type: 'binanceInternational', username: issued.apiKey, password: issued.secretKey,
  });
  assert.equal(done.data.content.status, 'succeeded', JSON.stringify(done.data));
  return done.data.content.accountTokens[0].tokenId;
}

const EXCHANGES = [
  { type: 'coinbase', exchange: 'coinbase', connect: () => connectOAuth('coinbase', 'node-exchanges') },
  { type: 'uphold', exchange: 'uphold', connect: () => connectOAuth('uphold', 'node-exchanges') },
  { type: 'binanceInternational', exchange: 'binance', connect: () => connectBinanceKey(client(creds.write), 'node-exchanges') },
];

for (const { type, exchange, connect } of EXCHANGES) {
  test(`${type}: holdings, balance, value, address, transfer and history through Mesh's client`, async () => {
    const api = client(creds.write);
    const authToken = await connect();

    const holdings = await api.portfolio.v1HoldingsGetCreate({ authToken, type });
    assert.equal(holdings.data.content.status, 'succeeded');
    for (const [symbol, [amount, price]] of Object.entries(HOLDINGS)) {
      const p = holdings.data.content.cryptocurrencyPositions.find((x) => x.symbol === symbol);
      assert.ok(p, `${type}: ${symbol}`);
      assert.ok(close(p.amount, amount) && close(p.lastPrice, price) && close(p.marketValue, amount * price), JSON.stringify(p));
    }
    const balance = await api.balance.v1BalanceGetCreate({ authToken, type });
    assert.ok(close(balance.data.content.totalCashUsdValue, CASH), JSON.stringify(balance.data));
    const value = await api.portfolio.v1HoldingsValueCreate({ authToken, type });
    assert.ok(close(value.data.content.fiatValue, CASH), JSON.stringify(value.data));

    const address = await api.managedTransfers.v1TransfersManagedAddressGetCreate({ authToken, type, symbol: 'ETH', networkId: ETHEREUM });
    assert.match(address.data.content.address, /^0x[0-9a-fA-F]{40}$/);

    const preview = await api.managedTransfers.v1TransfersManagedPreviewCreate({
      fromAuthToken: authToken, fromType: type, networkId: BASE_NETWORK, symbol: 'USDC', toAddress: ADDRESS, amount: 5,
    });
    assert.equal(preview.data.content.status, 'succeeded', JSON.stringify(preview.data));
    const { previewId } = preview.data.content.previewResult;
    let executed = await api.managedTransfers.v1TransfersManagedExecuteCreate({ fromAuthToken: authToken, fromType: type, previewId });
    if (type === 'coinbase') {
      assert.equal(executed.data.content.status, 'mfaRequired', JSON.stringify(executed.data));
      executed = await api.managedTransfers.v1TransfersManagedExecuteCreate({ fromAuthToken: authToken, fromType: type, previewId, mfaCode: '123456' });
    }
    assert.equal(executed.data.content.status, 'succeeded', JSON.stringify(executed.data));
    const { transferId } = executed.data.content.executeTransferResult;
    const retried = await api.managedTransfers.v1TransfersManagedExecuteCreate({ fromAuthToken: authToken, fromType: type, previewId });
    assert.equal(retried.data.content.executeTransferResult.transferId, transferId);

    const history = await api.transfers.v1TransfersListCreate({ authToken, type });
    assert.equal(history.data.content.total, 1, JSON.stringify(history.data));
    assert.equal(history.data.content.transfers[0].targetAddress, ADDRESS);

    const counts = await (await fetch(`${baseURL}/sandbox/admin/requests`)).json();
    assert.equal(counts[exchange].transfersCreated, 1, 'one send at the exchange');
    for (const endpoint of Object.keys(counts[exchange].requests)) {
      const path = endpoint.split(' ')[1] ?? endpoint;
      assert.ok(DOCUMENTED[exchange].some((prefix) => path.startsWith(prefix)), `${exchange}: ${endpoint} is not a documented path`);
    }
  });
}

test('portfolio over every connection of the user', async () => {
  const api = client(creds.read);
  const portfolio = await api.portfolio.v1HoldingsPortfolioList({ UserId: 'node-exchanges' });
  assert.equal(portfolio.data.status, 'ok');
  const btc = portfolio.data.content.cryptocurrencyPositions.find((p) => p.symbol === 'BTC');
  assert.ok(close(btc.amount, 3 * HOLDINGS.BTC[0]), JSON.stringify(btc));
  const fiat = await api.balance.v1BalancePortfolioList({ UserId: 'node-exchanges' });
  const usd = fiat.data.content.fiatBalances.find((b) => b.symbol === 'USD');
  assert.ok(close(usd.cash, 3 * CASH), JSON.stringify(fiat.data));
  const networks = await api.managedTransfers.v1TransfersManagedNetworksList();
  assert.ok(networks.data.content.networks.some((n) => n.id === ETHEREUM));
  const tokens = await api.managedTransfers.v1TransfersManagedTokensList();
  assert.ok(tokens.data.content.tokens.some((t) => t.token === 'USDC'));
});
