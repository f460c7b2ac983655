// Independent OAuth 2.0 authorization server for linkvault's conformance test (crates/integrations/tests/oidc_conformance.rs).
// Starts oidc-provider on 127.0.0.1, port 0 (or $OIDC_PORT), with one static confidential client, PKCE required,
// refresh-token rotation on every use, offline_access and RFC 7009 revocation, then prints one JSON line on stdout:
//   {"issuer":"http://127.0.0.1:PORT","port":PORT,"clientId":"…","clientSecret":"…","redirectUri":"…"}
// The development-only interaction pages (login form accepting any login, consent form) are kept on purpose:
// the test drives them over HTTP. Logging from oidc-provider goes to stderr. Stops on SIGTERM/SIGINT or stdin EOF.
import http from 'node:http';
import Provider from 'oidc-provider';

const clientId = process.env.OIDC_CLIENT_ID ?? 'linkvault-conformance';
const clientSecret = process.env.OIDC_CLIENT_SECRET ?? 'linkvault-conformance-secret-0123456789abcdef';
const redirectUri = process.env.OIDC_REDIRECT_URI ?? 'http://127.0.0.1:9/linkvault/callback';
const requestedPort = Number.parseInt(process.env.OIDC_PORT ?? '0', 10);

// Warnings (dev interactions, default TTLs) must not pollute stdout, which carries the JSON line.
console.warn = (...args) => process.stderr.write(`${args.join(' ')}\n`);
console.info = console.warn;
console.log = console.warn;

const server = http.createServer();
server.listen(requestedPort, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    clients: [{
      client_id: clientId,
      client_secret: clientSecret,
      redirect_uris: [redirectUri],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    }],
    pkce: { required: () => true },
    rotateRefreshToken: true,
    scopes: ['openid', 'offline_access'],
    features: {
      devInteractions: { enabled: true },
      revocation: { enabled: true },
    },
    ttl: {
      AccessToken: 600,
      AuthorizationCode: 60,
      Grant: 3600,
      IdToken: 600,
      Interaction: 600,
      RefreshToken: 3600,
      Session: 3600,
    },
    // Cookie signing keys for this throwaway process only.
    cookies: { keys: [`conformance-${process.pid}-${Date.now()}`] },
  });
  provider.on('server_error', (_ctx, err) => process.stderr.write(`oidc-provider server_error: ${err.stack}\n`));
  server.on('request', provider.callback());
  process.stdout.write(`${JSON.stringify({ issuer, port, clientId, clientSecret, redirectUri })}\n`);
});

const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
// The parent test holds our stdin open; when it dies, stdin closes and so do we (no orphaned servers).
process.stdin.on('end', stop);
process.stdin.resume();
