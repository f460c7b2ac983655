// Mesh's published Node client (@meshconnect/node-api, unmodified) against a running `linkvault serve
// --sandbox`: proves wire compatibility of every endpoint linkvault serves that the client knows.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { FrontApi } from '@meshconnect/node-api';
import { demoClient, startServer } from './server.mjs';

let server;
let baseURL;
let creds;

function client(secret) {
  return new FrontApi({ baseURL, headers: { 'X-Client-Id': creds.clientId, 'X-Client-Secret': secret } });
}

before(async () => {
  server = await startServer('linkvault-node-api-');
  baseURL = server.baseURL;
  creds = demoClient(server.dataDir);
});

after(() => server?.stop());

async function connectBinance(api, userId) {
  const auth = api.selfManagedAccountAuthentication;
  const first = await auth.v1AuthenticateCreate({ userId }, { type: 'binanceInternationalDirect', username: 'Mesh', password: 'Pass123' });
  assert.equal(first.data.status, 'ok');
  assert.equal(first.data.content.status, 'mfaRequired');
  const done = await auth.v1AuthenticateCreate({ userId }, {
    type: 'binanceInternationalDirect', username: 'Mesh', password: 'Pass123',
    mfaCode: '123456', challengeId: first.data.content.challengeId,
  });
  assert.equal(done.data.content.status, 'succeeded');
  const [token] = done.data.content.accountTokens;
  assert.equal(token.accessToken, token.tokenId, 'managed mode: accessToken equals tokenId on first connection');
  return token.tokenId;
}

test('integrations and authentication schemes', async () => {
  const api = client(creds.read);
  const list = await api.managedAccountAuthentication.v1IntegrationsList();
  assert.equal(list.status, 200);
  assert.equal(list.data.status, 'ok');
  const types = list.data.content.items.map((i) => i.type);
  for (const t of ['coinbase', 'uphold', 'binanceInternationalDirect', 'sandbox']) assert.ok(types.includes(t), t);
  const schemes = await api.selfManagedAccountAuthentication.v1AuthenticationSchemesList();
  assert.ok(schemes.data.content.some((s) => s.brokerType === 'binanceInternationalDirect' && s.authenticationSchemeType === 'usernamePassword'));
});

test('authenticate, holdings, balance, then delete', async () => {
  const api = client(creds.read);
  const tokenId = await connectBinance(api, 'node-user');
  assert.equal(await connectBinance(api, 'node-user'), tokenId, 'same user and integration → same tokenId');

  const holdings = await api.portfolio.v1HoldingsGetCreate({ authToken: tokenId, type: 'binanceInternationalDirect' });
  assert.equal(holdings.data.content.status, 'succeeded');
  assert.ok(holdings.data.content.cryptocurrencyPositions.length > 0);
  const balance = await api.balance.v1BalanceGetCreate({ authToken: tokenId, type: 'binanceInternationalDirect' });
  assert.ok(balance.data.content.balances.length > 0);

  const removed = await api.managedAccountAuthentication.v1AccountDelete({ authToken: tokenId, type: 'binanceInternationalDirect' });
  assert.equal(removed.data.status, 'ok');
  await assert.rejects(
    api.portfolio.v1HoldingsGetCreate({ authToken: tokenId, type: 'binanceInternationalDirect' }),
    (err) => err.response?.status === 404 && err.response.data.errorType === 'tokenNotFound',
  );
});

test('link token for a user', async () => {
  const api = client(creds.read);
  const res = await api.managedAccountAuthentication.v1LinktokenCreate({ userId: 'node-link-user', restrictMultipleAccounts: true });
  assert.equal(res.status, 200);
  assert.equal(res.data.status, 'ok');
  const url = new URL(Buffer.from(res.data.content.linkToken, 'base64').toString('utf8'));
  assert.equal(url.origin, new URL(baseURL).origin, 'the link token points at this server');
  assert.equal(url.pathname, '/link/broker-connect');
  assert.ok(url.searchParams.get('auth_code'));
  await assert.rejects(
    api.managedAccountAuthentication.v1LinktokenCreate({}),
    (err) => err.response?.status === 400 && err.response.data.errorType === 'missingField',
  );
});

test('managed transfer: preview, execute, retried execute → the same transfer', async () => {
  const write = client(creds.write);
  const tokenId = await connectBinance(write, 'node-transfer-user');
  /** @type {import('@meshconnect/node-api').PreviewTransferRequest} */
  const previewRequest = {
    fromAuthToken: tokenId,
    fromType: 'binanceInternationalDirect',
    networkId: 'e3c7fdd8-b1fc-4e51-85ae-bb276e075611',
    symbol: 'USDC',
    toAddress: '0x52908400098527886E0F7030069857D2E4169EE7',
    amount: 25,
    transactionId: 'node-order-1',
  };
  const preview = await write.managedTransfers.v1TransfersManagedPreviewCreate(previewRequest);
  assert.equal(preview.data.status, 'ok');
  assert.equal(preview.data.content.status, 'succeeded');
  const result = preview.data.content.previewResult;
  assert.equal(result.previewExpiresIn, 300);
  assert.equal(result.symbol, 'USDC');
  assert.equal(result.amount, 25);
  assert.equal(result.networkName, 'Ethereum');
  assert.equal(result.clientTransactionId, 'node-order-1');
  assert.ok(result.institutionTransferFee.fee > 0);

  /** @type {import('@meshconnect/node-api').ExecuteTransferRequest} */
  const executeRequest = { fromAuthToken: tokenId, fromType: 'binanceInternationalDirect', previewId: result.previewId };
  const params = { headers: { 'Idempotency-Key': 'node-execute-1' } };
  const first = await write.managedTransfers.v1TransfersManagedExecuteCreate(executeRequest, params);
  assert.equal(first.data.status, 'ok');
  assert.equal(first.data.content.status, 'succeeded');
  const transfer = first.data.content.executeTransferResult;
  assert.ok(transfer.transferId);
  assert.equal(transfer.amount, 25);
  assert.equal(transfer.toAddress, previewRequest.toAddress);

  const retried = await write.managedTransfers.v1TransfersManagedExecuteCreate(executeRequest, params);
  assert.equal(retried.data.content.executeTransferResult.transferId, transfer.transferId);
  const retriedWithoutKey = await write.managedTransfers.v1TransfersManagedExecuteCreate(executeRequest);
  assert.equal(retriedWithoutKey.data.content.executeTransferResult.transferId, transfer.transferId);
  const counts = await (await fetch(`${baseURL}/sandbox/admin/requests`)).json();
  assert.equal(counts.binance.transfersCreated, 1, 'one transfer at the exchange');

  // A read key may not call the write endpoints.
  await assert.rejects(
    client(creds.read).managedTransfers.v1TransfersManagedPreviewCreate(previewRequest),
    (err) => err.response?.status === 403 && err.response.data.errorType === 'keyScopeInsufficient',
  );
});

test('wrong credentials are an empty 401', async () => {
  const api = new FrontApi({ baseURL, headers: { 'X-Client-Id': creds.clientId, 'X-Client-Secret': 'lvk_wrong' } });
  await assert.rejects(api.managedAccountAuthentication.v1IntegrationsList(), (err) => err.response?.status === 401 && err.response.data === '');
});
