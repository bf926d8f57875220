// The operators' dashboard in headless Chromium (Debian's package, driven by playwright-core):
// an operator logs in, sees the live session the Rust test created, opens every page, clicks
// Kill, confirms, and the session leaves the live list. A screenshot of each step is saved.
//
//   node dashboard.mjs <baseUrl> <operatorJwt> <sessionId> <artefactDir> [<nonOperatorJwt>]
//
// With a non-operator's JWT, the script also checks that such a user is sent back to the
// login form (403 FORBIDDEN from /v1/ops) with nothing kept.
// Exits non-zero (with a failure screenshot) on any failed step, uncaught page error or
// Content-Security-Policy violation. CHROMIUM_PATH overrides /usr/bin/chromium.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const [baseUrl, jwt, sessionId, outDir, userJwt] = process.argv.slice(2);
if (!baseUrl || !jwt || !sessionId || !outDir) {
  console.error('usage: node dashboard.mjs <baseUrl> <operatorJwt> <sessionId> <artefactDir>');
  process.exit(2);
}
mkdirSync(outDir, { recursive: true });
const STEP_TIMEOUT = 20_000;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
  headless: true,
  // As root on a machine with no outside network: no sandbox, and no background requests
  // (they are refused here, many at a time).
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
});
const context = await browser.newContext({ viewport: { width: 1440, height: 900 }, deviceScaleFactor: 1 });
const page = await context.newPage();
page.setDefaultTimeout(STEP_TIMEOUT);

const problems = [];
page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
page.on('console', (m) => {
  // A refused request shows as "Failed to load resource" (the bad-token step wants a 401);
  // anything else the page logs as an error, CSP refusals included, fails the test.
  if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) problems.push(`console: ${m.text()}`);
});
page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
page.on('request', (r) => {
  if (!r.url().startsWith(baseUrl)) problems.push(`external request: ${r.url()}`);
});

let n = 0;
async function shot(name) {
  n += 1;
  const file = join(outDir, `${String(n).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  console.log(`screenshot ${file}`);
}
async function step(what, fn) {
  process.stdout.write(`step: ${what} ... `);
  await fn();
  if (problems.length) throw new Error(problems.join('\n'));
  console.log('ok');
}
async function ready(pageName) {
  await page.locator(`#view[data-page="${pageName}"][data-ready="true"]`).waitFor();
}
const row = () => page.locator(`#live-table tr[data-session-id="${sessionId}"]`);

try {
  await step('the login form is shown, with no data', async () => {
    const res = await page.goto(`${baseUrl}/ops`);
    if (res.status() !== 200) throw new Error(`GET /ops answered ${res.status()}`);
    await page.locator('#login-form').waitFor();
    if (await page.locator('#app').isVisible()) throw new Error('the app is visible before login');
    await shot('login');
  });

  await step('a token that is not valid is refused (401 → login with a message)', async () => {
    await page.fill('#token-input', 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.bad-signature');
    await page.click('#login-submit');
    await page.locator('#login-error').filter({ hasText: 'not valid' }).waitFor();
    if (await page.evaluate(() => sessionStorage.length) !== 0) throw new Error('a refused token was kept');
    await shot('login-refused');
  });

  if (userJwt) {
    await step('a valid token of a user who is not an operator is refused (403 → login)', async () => {
      await page.fill('#token-input', userJwt);
      await page.click('#login-submit');
      await page.locator('#login-error').filter({ hasText: 'not an operator' }).waitFor();
      if (await page.locator('#app').isVisible()) throw new Error('the app is visible to a non-operator');
      if (await page.evaluate(() => sessionStorage.length) !== 0) throw new Error('a refused token was kept');
    });
  }

  await step('the operator logs in and sees the live session', async () => {
    await page.fill('#token-input', jwt);
    await page.click('#login-submit');
    await page.locator('#app').waitFor();
    await ready('live');
    await row().waitFor();
    const active = Number(await page.locator('#stat-active').textContent());
    if (!(active >= 1)) throw new Error(`active sessions card shows ${active}`);
    if (await page.evaluate(() => sessionStorage.getItem('ipelya.ops.token')) !== jwt) throw new Error('token not kept for the tab');
    await shot('live-overview');
  });

  await step('the session detail shows participants, stats and chat', async () => {
    await row().getByRole('link', { name: 'Details' }).click();
    await ready('sessions');
    await page.locator('.panel h2', { hasText: 'Participants' }).waitFor();
    await page.locator('.panel h2', { hasText: 'Recent chat' }).waitFor();
    await shot('session-detail');
  });

  await step('usage shows the quota bar and the per-day chart', async () => {
    await page.click('[data-nav="usage"]');
    await ready('usage');
    await page.locator('#usage-chart svg rect.bar').first().waitFor({ state: 'attached' });
    await page.locator('[data-quota="minutes"] .quota-track').waitFor();
    await shot('usage');
  });

  await step('incidents lists the pending reports', async () => {
    await page.click('[data-nav="incidents"]');
    await ready('incidents');
    await page.locator('.panel h2', { hasText: 'Pending reports' }).waitFor();
    await page.locator('tr[data-report-id]').first().waitFor();
    await shot('incidents');
  });

  await step('Dismiss resolves a report: it leaves the pending queue', async () => {
    const report = page.locator('tr[data-report-id]').first();
    const id = await report.getAttribute('data-report-id');
    await report.getByRole('button', { name: 'Dismiss' }).click();
    await page.locator('#modal-title', { hasText: 'Dismiss this report?' }).waitFor();
    await page.click('#modal-confirm');
    await page.locator('.toast.ok', { hasText: 'Report dismissed' }).waitFor();
    await page.locator(`tr[data-report-id="${id}"]`).waitFor({ state: 'detached' });
    await shot('incidents-resolved');
  });

  await step('bans shows the ban form and the list', async () => {
    await page.click('[data-nav="bans"]');
    await ready('bans');
    await page.locator('#ban-form').waitFor();
    await shot('bans');
  });

  await step('Kill asks for confirmation', async () => {
    await page.click('[data-nav="live"]');
    await ready('live');
    await row().locator('[data-action="kill"]').click();
    await page.locator('#modal').waitFor();
    await page.locator('#modal-title', { hasText: 'Kill this session?' }).waitFor();
    await shot('kill-confirm');
  });

  await step('confirming ends the session: it leaves the live list', async () => {
    await page.click('#modal-confirm');
    await page.locator('.toast.ok', { hasText: 'Session terminated' }).waitFor();
    await row().waitFor({ state: 'detached' });
    await shot('after-kill');
  });

  await step('a reload keeps the operator signed in for the tab, the session stays gone', async () => {
    await page.reload();
    await ready('live');
    if (await row().count() !== 0) throw new Error('the killed session is listed again');
  });

  console.log(`dashboard browser test passed: ${n} screenshots in ${outDir}`);
  await browser.close();
} catch (e) {
  console.log('FAILED');
  console.error(e && e.stack ? e.stack : String(e));
  try { await page.screenshot({ path: join(outDir, 'failure.png'), fullPage: true }); } catch (_) { /* the page may be gone */ }
  await browser.close();
  process.exit(1);
}
