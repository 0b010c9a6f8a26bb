// A real OpenID provider for tests: npm `oidc-provider` (panva, OpenID Certified) on loopback.
// Usage: node oidc_idp.mjs CONFIG.json, CONFIG = {port, clients: [{client_id, client_secret,
// redirect_uris}], users: {login: {password, email, groups}}}. The provider module is imported
// from JBM_OIDC_PROVIDER (its lib/index.js, installed by `make oidc-provider`).
// Its one interaction is a small login form that checks the user's password; consent is
// granted for the configured (first-party) clients, as an institute's SSO does for its own hub.
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

const { default: Provider } = await import(pathToFileURL(process.env.JBM_OIDC_PROVIDER).href);
const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const issuer = `http://127.0.0.1:${config.port}`;
const users = config.users;

const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

const provider = new Provider(issuer, {
  clients: config.clients.map((c) => ({ ...c, grant_types: ['authorization_code'], response_types: ['code'] })),
  cookies: { keys: ['jbm-oidc-test-cookie-key'] },
  claims: { openid: ['sub'], profile: ['preferred_username', 'name'], email: ['email'], groups: ['groups'] },
  scopes: ['openid', 'profile', 'email', 'groups'],
  features: { devInteractions: { enabled: false } },
  pkce: { required: () => false },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(ctx, sub) {
    const user = users[sub];
    if (!user) return undefined;
    return {
      accountId: sub,
      async claims() {
        return { sub, preferred_username: sub, name: sub, email: user.email || `${sub}@example.org`,
                 groups: user.groups || [] };
      },
    };
  },
  // first-party clients: every requested scope and claim is granted, no consent page
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId
      || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
    grant.addOIDCScope('openid profile email groups');
    grant.addOIDCClaims(['sub', 'preferred_username', 'name', 'email', 'groups']);
    await grant.save();
    return grant;
  },
});

const form = (uid, error) => `<!doctype html><html><head><title>Test IdP sign-in</title></head><body>
<h1>Test IdP</h1>${error ? `<p id="error">${esc(error)}</p>` : ''}
<form method="post" action="/interaction/${esc(uid)}/login">
<input id="login" name="login" autofocus><input id="password" name="password" type="password">
<button id="submit" type="submit">Sign in</button></form></body></html>`;

async function body(ctx) {
  let data = '';
  for await (const chunk of ctx.req) data += chunk;
  return new URLSearchParams(data);
}

provider.use(async (ctx, next) => {
  const m = ctx.path.match(/^\/interaction\/([^/]+)(\/login)?$/);
  if (!m) return next();
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  if (details.prompt.name !== 'login') ctx.throw(501, `prompt ${details.prompt.name} not handled`);
  ctx.set('cache-control', 'no-store');
  if (ctx.method === 'GET') {
    ctx.type = 'html';
    ctx.body = form(details.uid);
    return undefined;
  }
  const params = await body(ctx);
  const login = params.get('login') || '';
  if (!users[login] || users[login].password !== params.get('password')) {
    ctx.status = 401;
    ctx.type = 'html';
    ctx.body = form(details.uid, 'Invalid login or password');
    return undefined;
  }
  return provider.interactionFinished(ctx.req, ctx.res, { login: { accountId: login } },
                                      { mergeWithLastSubmission: false });
});

provider.listen(config.port, '127.0.0.1', () => console.log(`listening ${issuer}`));
