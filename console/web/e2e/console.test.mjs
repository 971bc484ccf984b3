// End-to-end tests of the operator console against a running keel platform
// (`cargo xtask up`: authentication disabled), in headless Chromium.
//
//   KEEL_COMMAND_URL          command API          (default http://127.0.0.1:8080)
//   KEEL_QUERY_URL            query API            (default http://127.0.0.1:8090)
//   KEEL_CONSOLE_URL          the console          (default $KEEL_QUERY_URL/console/)
//   KEEL_DATABASE_URL         read-model database  (default postgres://keel:keel@127.0.0.1:5432/keel;
//                             KEEL_READ_MODEL_DATABASE_URL wins when set, as for the projector)
//   KEEL_CHROMIUM             the browser          (default /usr/bin/chromium)
//   KEEL_CONSOLE_SCREENSHOTS  where screenshots go (default ../../target/console-screenshots from console/web)

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { access, mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import pg from 'pg';

const webDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const trim = (url) => url.replace(/\/+$/, '');
const COMMAND_URL = trim(process.env.KEEL_COMMAND_URL || 'http://127.0.0.1:8080');
const QUERY_URL = trim(process.env.KEEL_QUERY_URL || 'http://127.0.0.1:8090');
const CONSOLE_URL = `${trim(process.env.KEEL_CONSOLE_URL || `${QUERY_URL}/console`)}/`;
const DATABASE_URL =
  process.env.KEEL_READ_MODEL_DATABASE_URL || process.env.KEEL_DATABASE_URL || 'postgres://keel:keel@127.0.0.1:5432/keel';
const CHROMIUM = process.env.KEEL_CHROMIUM || '/usr/bin/chromium';
const SCREENSHOTS = path.resolve(process.env.KEEL_CONSOLE_SCREENSHOTS || path.join(webDir, '../../target/console-screenshots'));

/** How long the console may take to show what the platform already holds. */
const UI_TIMEOUT = 20_000;
/** How long an event may take through the outbox, Kafka and a projector. */
const PIPELINE_TIMEOUT = 45_000;
/** How long the saga may take to fulfil an order. */
const SAGA_TIMEOUT = 90_000;

let browser;
let context;
let userDataDir;

// --- The platform -----------------------------------------------------------------------

async function reachable(url, what) {
  let response;
  try {
    response = await fetch(url, { signal: AbortSignal.timeout(5000) });
  } catch (error) {
    throw new Error(
      `${what} does not answer at ${url} (${error.cause?.code ?? error.message}). ` +
        'Start the platform with `cargo xtask up` (check `curl -s 127.0.0.1:8090/health/ready`), ' +
        'or point KEEL_COMMAND_URL / KEEL_QUERY_URL / KEEL_CONSOLE_URL at it.',
    );
  }
  if (!response.ok) {
    throw new Error(`${what} at ${url} answered ${response.status}: ${(await response.text()).slice(0, 300)}`);
  }
  return response;
}

async function command(method, route, body, headers = {}) {
  const init = { method, headers: { 'x-actor': 'console-e2e', ...headers }, signal: AbortSignal.timeout(15_000) };
  if (body !== undefined) {
    init.headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const response = await fetch(`${COMMAND_URL}${route}`, init);
  const text = await response.text();
  if (!response.ok) throw new Error(`${method} ${COMMAND_URL}${route} answered ${response.status}: ${text}`);
  return JSON.parse(text);
}

/** Polls `probe` until it returns a value other than undefined, or fails naming `what`. */
async function eventually(what, timeoutMs, probe) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${last.message}` : ''}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

const uniqueSku = (prefix) => `${prefix}-${randomUUID().slice(0, 8).toUpperCase()}`;

/** An order placed with a card the saga can charge, its SKU stocked first (README walk-through). */
async function placeOrder({ correlationId = randomUUID(), stock = 10 } = {}) {
  const sku = uniqueSku('E2E-CONSOLE');
  const orderId = randomUUID();
  const headers = { 'x-correlation-id': correlationId };
  await command('POST', `/inventory/${sku}/stock`, { quantity: stock });
  await command('POST', '/orders', { order_id: orderId, customer_id: randomUUID(), currency: 'EUR' }, headers);
  await command('POST', `/orders/${orderId}/lines`, { sku, quantity: 2, unit_price: { amount_minor: 1250, currency: 'EUR' } }, headers);
  await command('POST', `/orders/${orderId}/place`, { payment_method: 'tok_visa' }, headers);
  return { orderId, sku, correlationId };
}

let firstOrder;
/** The order tests 1 and 2 look at (either may run alone). */
const theOrder = () => (firstOrder ??= placeOrder());

// --- The browser ------------------------------------------------------------------------

before(async () => {
  await reachable(`${COMMAND_URL}/health/ready`, 'The command API');
  await reachable(`${QUERY_URL}/health/ready`, 'The query API');
  const page = await reachable(CONSOLE_URL, 'The console');
  const html = await page.text();
  if (!html.includes('id="app"')) {
    throw new Error(`${CONSOLE_URL} does not serve the console's index.html (got: ${html.slice(0, 200)})`);
  }
  try {
    await access(CHROMIUM);
  } catch {
    throw new Error(`no Chromium at ${CHROMIUM}: \`apt-get install -y chromium\`, or set KEEL_CHROMIUM`);
  }
  await mkdir(SCREENSHOTS, { recursive: true });
  for (const file of await readdir(SCREENSHOTS)) {
    if (/^failed-.*\.png$/.test(file)) await rm(path.join(SCREENSHOTS, file)); // a previous run's
  }
  userDataDir = await mkdtemp(path.join(tmpdir(), 'keel-console-e2e-'));
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1440, height: 900 },
    timezoneId: 'UTC',
  });
  browser = context.browser();
});

after(async () => {
  await context?.close();
  await browser?.close();
  if (userDataDir) await rm(userDataDir, { recursive: true, force: true });
});

/**
 * A fresh tab on the console. Uncaught page errors fail the test; on failure the page is
 * kept as `failed-<name>.png` next to the screenshots.
 */
async function withPage(name, body) {
  const page = await context.newPage();
  page.setDefaultTimeout(UI_TIMEOUT);
  const pageErrors = [];
  page.on('pageerror', (error) => pageErrors.push(error));
  try {
    await body(page);
    assert.deepEqual(pageErrors.map(String), [], 'the console threw');
  } catch (error) {
    await page.screenshot({ path: path.join(SCREENSHOTS, `failed-${name}.png`), fullPage: true }).catch(() => {});
    throw error;
  } finally {
    await page.close();
  }
}

const open = (page, route) => page.goto(`${CONSOLE_URL}#/${route}`);
const shot = (page, file) => page.screenshot({ path: path.join(SCREENSHOTS, file), fullPage: true });
const attr = (page, selector, name) =>
  page.$$eval(selector, (elements, name) => elements.map((el) => el.getAttribute(name)), name);

// --- The tests --------------------------------------------------------------------------

test('streams: an order placed through the command API shows its history and a verified hash chain', { timeout: 90_000 }, async () => {
  const { orderId, correlationId } = await theOrder();
  await withPage('streams', async (page) => {
    await open(page, `streams?type=order&id=${orderId}`);
    await page.waitForSelector('[data-testid="history-row"][data-event-type="OrderPlaced"]');

    const types = await attr(page, '[data-testid="history-row"]', 'data-event-type');
    assert.deepEqual(types.slice(0, 3), ['OrderCreated', 'OrderLineAdded', 'OrderPlaced']);
    const sequences = await attr(page, '[data-testid="history-row"]', 'data-sequence');
    assert.deepEqual(sequences.slice(0, 3), ['1', '2', '3']);

    const firstRow = page.locator('[data-testid="history-row"][data-sequence="1"]');
    assert.match(await firstRow.innerText(), /console-e2e/, 'the actor is shown');
    const correlationLink = firstRow.locator(`a[href="#/log?correlation_id=${correlationId}"]`).first();
    assert.equal(await correlationLink.getAttribute('title'), correlationId, 'the correlation id links to the global log');

    const badge = page.locator('[data-testid="verify-badge"][data-state="verified"]');
    await badge.waitFor();
    assert.equal((await badge.innerText()).trim(), 'verified');

    // Time travel: the state after the first event.
    await page.waitForSelector('[data-testid="state-json"]');
    await page.locator('[data-testid="version-slider"]').fill('1');
    await page.waitForFunction(() => document.querySelector('[data-testid="state-version"]')?.textContent === '1');
    await page.waitForFunction(
      () => document.querySelector('[data-testid="state-json"]')?.previousElementSibling?.textContent?.includes('after event 1 of'),
    );

    await shot(page, 'streams.png');
  });
});

test('global log: filtered by the order\'s correlation id, it shows that flow\'s events', { timeout: 90_000 }, async () => {
  const { orderId, correlationId } = await theOrder();
  await withPage('log', async (page) => {
    await open(page, `log?correlation_id=${correlationId}`);
    await page.waitForSelector('[data-testid="log-row"][data-event-type="OrderPlaced"]');

    const correlations = await attr(page, '[data-testid="log-row"]', 'data-correlation-id');
    assert.ok(correlations.length >= 3, `at least the order's three events, got ${correlations.length}`);
    assert.ok(correlations.every((c) => c === correlationId), `every row is of the flow ${correlationId}: ${correlations}`);
    const types = await attr(page, '[data-testid="log-row"]', 'data-event-type');
    for (const type of ['OrderCreated', 'OrderLineAdded', 'OrderPlaced']) assert.ok(types.includes(type), `${type} in ${types}`);
    assert.equal(await page.inputValue('[data-testid="filter-correlation_id"]'), correlationId, 'the filter form shows the filter');
    const orderRows = page.locator('[data-testid="log-row"]', { has: page.locator(`a[title="${orderId}"]`) });
    assert.ok((await orderRows.count()) >= 3, 'the rows name the order');

    // The live tail: an event appended to the flow now shows up once, above the older
    // ones, and no row shows twice (the saga may still add events of this flow meanwhile).
    await page.locator('[data-testid="live-tail"]').check();
    const sku = uniqueSku('E2E-TAIL');
    await command('POST', `/inventory/${sku}/stock`, { quantity: 1 }, { 'x-correlation-id': correlationId });
    await page.waitForSelector('[data-testid="log-row"][data-event-type="StockAdded"]', { timeout: PIPELINE_TIMEOUT });
    const after = await attr(page, '[data-testid="log-row"]', 'data-event-type');
    assert.ok(after.indexOf('StockAdded') < after.indexOf('OrderPlaced'), `the new event is above the older ones: ${after}`);
    assert.equal(after.filter((type) => type === 'StockAdded').length, 1, `it shows once: ${after}`);
    const ids = await attr(page, '[data-testid="log-row"]', 'data-event-id');
    assert.equal(new Set(ids).size, ids.length, `no event shows twice: ${ids}`);

    await shot(page, 'log.png');
  });
});

test('projections: lag per projection; a poisoned stock event is dead-lettered, retried, and its aggregate flows again', { timeout: 150_000 }, async () => {
  const sku = uniqueSku('E2E-POISON');
  const suffix = randomUUID().replace(/-/g, '').slice(0, 12);
  const fn = `read_model.console_e2e_poison_${suffix}`;
  const trigger = `console_e2e_poison_${suffix}`;
  const db = new pg.Client({ connectionString: DATABASE_URL, connectionTimeoutMillis: 5000 });
  try {
    await db.connect();
  } catch (error) {
    throw new Error(`the read-model database does not answer at ${DATABASE_URL.replace(/:[^:@/]*@/, ':***@')}: ${error.message}`);
  }
  try {
    await withPage('projections', async (page) => {
      await open(page, 'projections');
      for (const name of ['orders', 'stock', 'payments']) {
        const row = page.locator(`[data-testid="projection-${name}"]`);
        await row.waitFor();
        const lagEvents = await row.locator(`[data-testid="lag-events-${name}"]`).getAttribute('data-value');
        assert.match(lagEvents ?? '', /^\d+$/, `${name}: lag in events is a number`);
        assert.ok(await row.locator(`[data-testid="lag-seconds-${name}"]`).isVisible(), `${name}: lag in seconds shown`);
        assert.ok(await row.locator(`[data-testid="position-${name}"]`).isVisible(), `${name}: position shown`);
      }

      // A value the read model refuses as a data exception (SQLSTATE class 22): the
      // projector dead-letters it at once and parks the aggregate.
      await db.query(
        `CREATE FUNCTION ${fn}() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN RAISE EXCEPTION 'console e2e: % is poisoned', NEW.sku USING ERRCODE = '22023'; END $$`,
      );
      await db.query(
        `CREATE TRIGGER ${trigger} BEFORE INSERT OR UPDATE ON read_model.stock_levels
         FOR EACH ROW WHEN (NEW.sku = '${sku}') EXECUTE FUNCTION ${fn}()`,
      );
      await command('POST', `/inventory/${sku}/stock`, { quantity: 7 });

      const letterRow = page.locator(`[data-testid^="dead-letter-"][data-aggregate-id="${sku}"]`);
      await letterRow.waitFor({ timeout: PIPELINE_TIMEOUT });
      const id = await letterRow.getAttribute('data-id');
      assert.match(id ?? '', /^\d+$/);
      assert.equal(await letterRow.getAttribute('data-resolution'), '', 'the letter is unanswered');
      assert.match(await letterRow.innerText(), /poison/);
      await page.waitForFunction(
        () => Number(document.querySelector('[data-testid="dead-letters-stock"]')?.getAttribute('data-value')) > 0,
        undefined,
        { timeout: UI_TIMEOUT },
      );

      await db.query(`DROP TRIGGER ${trigger} ON read_model.stock_levels`);
      await db.query(`DROP FUNCTION ${fn}()`);

      await page.locator(`[data-testid="retry-${id}"]`).click();
      await page.locator('[data-testid="flash-ok"]').waitFor();
      assert.match(await page.locator('[data-testid="flash-ok"]').innerText(), new RegExp(`Dead letter ${id} retried`));
      await page.locator(`[data-testid="dead-letter-${id}"][data-resolution="retried"]`).waitFor();
      assert.equal(
        (await page.locator(`[data-testid="resolution-badge-${id}"]`).innerText()).trim(),
        'retried',
      );

      const stock = await eventually(`GET /stock/${sku} to show the 7 units`, PIPELINE_TIMEOUT, async () => {
        const response = await fetch(`${QUERY_URL}/stock/${sku}`, { signal: AbortSignal.timeout(5000) });
        if (!response.ok) return undefined;
        const body = await response.json();
        return body.on_hand === 7 ? body : undefined;
      });
      assert.equal(stock.available, 7);

      await shot(page, 'projections.png');
    });
  } finally {
    await db.query(`DROP TRIGGER IF EXISTS ${trigger} ON read_model.stock_levels`).catch(() => {});
    await db.query(`DROP FUNCTION IF EXISTS ${fn}()`).catch(() => {});
    await db.end();
  }
});

test('sagas: an order the saga fulfils shows status completed and a timeline of its commands and events', { timeout: 180_000 }, async () => {
  const { orderId } = await placeOrder();
  await withPage('sagas', async (page) => {
    await open(page, `sagas/${orderId}`);
    const status = page.locator('[data-testid="saga-status"]');
    await page.locator('[data-testid="saga-status"][data-status="completed"]').waitFor({ timeout: SAGA_TIMEOUT });
    assert.equal((await status.innerText()).trim(), 'completed');

    // The last poll may still have the flow's final commands pending: wait for them all.
    await page.waitForFunction(
      () => {
        const commands = [...document.querySelectorAll('[data-testid="step-command"]')];
        return commands.length > 0 && commands.every((c) => c.getAttribute('data-status') === 'accepted');
      },
      undefined,
      { timeout: PIPELINE_TIMEOUT },
    );
    const steps = await attr(page, '[data-testid="step-command"]', 'data-step');
    for (const kind of ['reserve_stock', 'authorize_payment', 'confirm_order', 'capture_payment', 'commit_reservation']) {
      assert.ok(steps.some((s) => s === kind || s.startsWith(`${kind}:`)), `a ${kind} command in ${steps}`);
    }
    const events = await attr(page, '[data-testid="step-event"]', 'data-event-type');
    assert.ok(events.includes('PaymentAuthorized'), `the payment's answer in ${events}`);
    await shot(page, 'sagas.png');

    await open(page, 'sagas?status=completed');
    await page.locator(`[data-testid="flow-${orderId}"][data-status="completed"]`).waitFor();
    await open(page, 'sagas');
    await page.locator('[data-testid="flows"]').waitFor();
    await page.waitForFunction(() => Number(document.querySelector('[data-testid="count-completed"]')?.getAttribute('data-value')) > 0);
    await shot(page, 'saga-flows.png');

    // A row opens its flow (when the flow is on the first page: failed and stuck ones come first).
    const row = page.locator(`[data-testid="flow-${orderId}"]`);
    if ((await row.count()) > 0) {
      await row.locator('a').first().click();
      await page.locator('[data-testid="saga-status"][data-status="completed"]').waitFor();
      assert.ok(page.url().endsWith(`#/sagas/${orderId}`));
    }
  });
});

test('overview: events and commands per second over the last five minutes, and projection lag', { timeout: 90_000 }, async () => {
  await theOrder(); // there is activity in the window even when this test runs alone
  await withPage('overview', async (page) => {
    await open(page, 'overview');
    await page.waitForFunction(() => Number(document.querySelector('[data-testid="total-events"]')?.getAttribute('data-value')) > 0);
    await page.waitForFunction(() => Number(document.querySelector('[data-testid="total-commands"]')?.getAttribute('data-value')) > 0);
    // Bars are drawn for the buckets that have any: some must, with a height.
    for (const chart of ['chart-events', 'chart-commands']) {
      await page.waitForSelector(`[data-testid="${chart}"] rect.bar`);
      const values = await attr(page, `[data-testid="${chart}"] rect.bar`, 'data-value');
      assert.ok(values.length > 0 && values.every((v) => Number(v) > 0), `${chart}: bars of buckets with activity: ${values}`);
      const { height } = await page.locator(`[data-testid="${chart}"] rect.bar`).first().boundingBox();
      assert.ok(height >= 1, `${chart}: a bar is drawn`);
    }
    // The lag chart is drawn from the page's own samples, one every 2 s: wait for two.
    await page.waitForFunction(() => Number(document.querySelector('[data-testid="chart-lag"]')?.getAttribute('data-samples')) >= 2);
    const series = await attr(page, '[data-testid="chart-lag"] polyline', 'data-series');
    assert.deepEqual(series.sort(), ['orders', 'payments', 'stock']);
    await shot(page, 'overview.png');
  });
});

test('behind a path prefix (as the Kubernetes ingress serves it) the console loads and reads the platform', { timeout: 60_000 }, async () => {
  const { orderId } = await theOrder();
  // What the ingress does: /api/queries/<rest> reaches the query API as /<rest>.
  const prefix = '/api/queries';
  const upstream = new URL(QUERY_URL);
  const proxy = http.createServer((request, response) => {
    if (!request.url.startsWith(`${prefix}/`)) {
      response.writeHead(404).end();
      return;
    }
    const forwarded = http.request(
      { host: upstream.hostname, port: upstream.port, method: request.method, path: request.url.slice(prefix.length), headers: request.headers },
      (answer) => {
        response.writeHead(answer.statusCode, answer.headers);
        answer.pipe(response);
      },
    );
    forwarded.on('error', () => response.writeHead(502).end());
    request.pipe(forwarded);
  });
  await new Promise((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${proxy.address().port}${prefix}`;
  try {
    await withPage('prefixed', async (page) => {
      // Without the trailing slash, as a person types it.
      await page.goto(`${base}/console#/streams?type=order&id=${orderId}`);
      await page.waitForSelector('[data-testid="history-row"][data-event-type="OrderPlaced"]');
      assert.ok(page.url().startsWith(`${base}/console/`), `the page moved to the console's folder: ${page.url()}`);
      await page.locator('[data-testid="verify-badge"][data-state="verified"]').waitFor();
    });
  } finally {
    await new Promise((resolve) => proxy.close(resolve));
  }
});
