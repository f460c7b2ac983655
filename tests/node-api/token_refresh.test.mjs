// Client-managed token mode through Mesh's published Node client (@meshconnect/node-api, unmodified): a
// client created with `linkvault client create --token-mode client` signs a Binance sandbox user in, receives
// linkvault access/refresh tokens, and refreshes them with `v1TokenRefreshCreate` — without and with
// `createNewRefreshToken` — and a spent refresh token presented again revokes the family.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { FrontApi } from '@meshconnect/node-api';
import { binary, startServer } from './server.mjs';

const TYPE = 'binanceInternationalDirect';

let server;
let baseURL;
let creds;

before(async () => {
  server = await startServer('linkvault-node-refresh-');
  baseURL = server.baseURL;
  // A second process on the same data dir (SQLite allows it): the operator's CLI creating a client-mode app.
  const out = execFileSync(binary, ['--data-dir', server.dataDir, 'client', 'create', '--name', 'node client-managed', '--token-mode', 'client', '--json'], {
    env: { ...process.env, LINKVAULT_LOG: 'warn' },
  });
  const created = JSON.parse(out.toString());
  creds = { clientId: created.clientId, read: created.keys.find((k) => k.scope === 'read').secret };
});

after(() => server?.stop());

function api() {
  return new FrontApi({ baseURL, headers: { 'X-Client-Id': creds.clientId, 'X-Client-Secret': creds.read } });
}

const refused = (status, errorType) => (err) => err.response?.status === status && err.response.data.errorType === errorType;

test('client-managed tokens: authenticate, refresh, rotate, reuse detection', async () => {
  const client = api();
  const auth = client.selfManagedAccountAuthentication;
  const first = await auth.v1AuthenticateCreate({ userId: 'node-cm' }, { type: TYPE, username: 'Mesh', password: 'Pass123' });
  assert.equal(first.data.content.status, 'mfaRequired');
  const done = await auth.v1AuthenticateCreate({ userId: 'node-cm' }, {
    type: TYPE, username: 'Mesh', password: 'Pass123', mfaCode: '123456', challengeId: first.data.content.challengeId,
  });
  assert.equal(done.data.content.status, 'succeeded');
  const [issued] = done.data.content.accountTokens;
  assert.match(issued.accessToken, /^lva_/);
  assert.match(issued.refreshToken, /^lvr_/);
  assert.equal(issued.tokenId, undefined, 'client-managed mode hands out tokens, not a tokenId');
  assert.equal(done.data.content.expiresInSeconds, 3600);
  assert.ok(done.data.content.refreshTokenExpiresInSeconds > 0);

  const holdings = await client.portfolio.v1HoldingsGetCreate({ authToken: issued.accessToken, type: TYPE });
  assert.equal(holdings.data.content.status, 'succeeded');

  // Without createNewRefreshToken: a new access token; the refresh token stays valid.
  const refresh = client.managedAccountAuthentication;
  const plain = await refresh.v1TokenRefreshCreate({ refreshToken: issued.refreshToken, type: TYPE });
  assert.equal(plain.data.status, 'ok');
  assert.equal(plain.data.content.status, 'succeeded');
  const [renewed] = plain.data.content.brokerAccountTokens;
  assert.match(renewed.accessToken, /^lva_/);
  assert.notEqual(renewed.accessToken, issued.accessToken);
  assert.equal(renewed.refreshToken, issued.refreshToken);
  const balance = await client.balance.v1BalanceGetCreate({ authToken: renewed.accessToken, type: TYPE });
  assert.ok(balance.data.content.balances.length > 0);

  // With createNewRefreshToken: a new refresh token, and the old one is spent.
  const rotated = await refresh.v1TokenRefreshCreate({ refreshToken: issued.refreshToken, type: TYPE, createNewRefreshToken: true });
  const [next] = rotated.data.content.brokerAccountTokens;
  assert.match(next.refreshToken, /^lvr_/);
  assert.notEqual(next.refreshToken, issued.refreshToken);

  // The spent one again: refreshTokenReused, and the whole family is revoked.
  await assert.rejects(refresh.v1TokenRefreshCreate({ refreshToken: issued.refreshToken, type: TYPE }), refused(403, 'refreshTokenReused'));
  await assert.rejects(client.portfolio.v1HoldingsGetCreate({ authToken: next.accessToken, type: TYPE }), refused(403, 'tokenRevoked'));
  await assert.rejects(refresh.v1TokenRefreshCreate({ refreshToken: next.refreshToken, type: TYPE }), refused(403, 'tokenRevoked'));

  // A refresh token nobody issued: Mesh's own "Unauthorized token" answer.
  await assert.rejects(refresh.v1TokenRefreshCreate({ refreshToken: 'lvr_unknown', type: TYPE }), (err) =>
    err.response?.status === 400 && err.response.data.message === 'Unauthorized token');
});
