// Drives codis-fe in headless Chromium against a real local cluster started by
// scripts/browser-test.sh (scripts/local-cluster.sh --bare: redis-servers with the
// codis-slots module, a dashboard, a proxy and codis-fe, but no groups yet).
//
// Environment: FE_URL, PRODUCT, SERVERS (four addresses: master, replica, master,
// replica), SENTINELS (running, not yet added), PROXY_PORT, SCREENSHOTS (directory).
'use strict';

const { chromium } = require('playwright-core');
const { execFileSync } = require('child_process');
const fs = require('fs');
const path = require('path');

const FE = process.env.FE_URL;
const PRODUCT = process.env.PRODUCT || 'codis-demo';
const SERVERS = (process.env.SERVERS || '').split(/\s+/).filter(Boolean);
const SENTINELS = (process.env.SENTINELS || '').split(/\s+/).filter(Boolean);
const PROXY_PORT = process.env.PROXY_PORT;
const SHOTS = process.env.SCREENSHOTS || 'target/fe-screenshots';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

let step = 0;
function log(msg) { console.log(`[${(++step).toString().padStart(2)}] ${msg}`); }

function assert(cond, msg) { if (!cond) throw new Error('assertion failed: ' + msg); }

/// Polls `f` until it returns a truthy value or `ms` pass (no fixed sleeps).
async function until(what, f, ms = 30000) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try { last = await f(); if (last) return last; } catch (e) { last = e; }
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what} (last: ${last})`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function shot(page, name) {
  const file = path.join(SHOTS, name + '.png');
  await page.screenshot({ path: file, fullPage: true });
  console.log('     screenshot ' + file);
}

async function open(page, view) {
  await page.goto(`${FE}/#/${PRODUCT}/${view}`);
  await page.waitForSelector(`nav a.active[data-page="${view}"]`);
}

/// Clicks a button and waits for the message next to it to say how it went.
async function doAction(page, button, msgSel, expect) {
  await page.click(button);
  const text = await until(`${button} to report`, async () => {
    const t = (await page.textContent(msgSel)) || '';
    return t && t !== 'working…' ? t : null;
  });
  const cls = await page.getAttribute(msgSel, 'class');
  if (expect instanceof RegExp) assert(expect.test(text), `${button}: "${text}" matches ${expect}`);
  else assert(!/err/.test(cls), `${button} succeeded, but says: ${text}`);
  return text;
}

async function main() {
  assert(FE && SERVERS.length === 4 && PROXY_PORT, 'FE_URL, SERVERS (4) and PROXY_PORT are set');
  fs.mkdirSync(SHOTS, { recursive: true });
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('dialog', (d) => d.accept());
  try {
    log('products page lists the product');
    await page.goto(FE + '/');
    await page.waitForSelector(`#products a[href="#/${PRODUCT}/overview"]`);
    await until('the product\'s dashboard listed', async () => /127\.0\.0\.1:\d+/.test(await page.textContent(`tr[data-product="${PRODUCT}"]`)));
    await shot(page, '01-products');

    log('read-only without login: changes are disabled and refused');
    await open(page, 'groups');
    await until('read-only state', async () => (await page.textContent('#auth')).includes('read-only'));
    await until('buttons disabled', () => page.isDisabled('#group-create'));
    const refused = await page.evaluate(async (p) => {
      const r = await fetch(`/api/topom/group/create/XAUTH/7?forward=${p}`, { method: 'PUT' });
      return [r.status, (await r.json()).Cause];
    }, PRODUCT);
    assert(refused[0] === 401 && /log in/.test(refused[1]), 'PUT without login: 401 ' + refused);

    log('a wrong secret is refused with a readable message');
    await page.click('#btn-login');
    await page.fill('#login-secret', 'not-the-secret');
    await page.click('#login-submit');
    await until('login error', async () => /wrong secret/.test(await page.textContent('#login-msg')));
    await shot(page, '02-login-error');

    log('log in with the product secret (empty: the demo product has no product_auth)');
    await page.fill('#login-secret', '');
    await page.click('#login-submit');
    await until('logged in', async () => (await page.textContent('#auth')).includes('logged in'));
    await until('buttons enabled', async () => !(await page.isDisabled('#group-create')));
    const cookies = await page.context().cookies();
    const c = cookies.find((c) => c.name === 'codis_fe_session');
    assert(c && c.httpOnly, 'session cookie is HttpOnly');

    log('create groups 1 and 2');
    for (const gid of [1, 2]) {
      await page.fill('#group-id', String(gid));
      await doAction(page, '#group-create', '#group-msg');
      await page.waitForSelector(`.group-card[data-group="${gid}"]`);
    }
    log('creating group 1 again shows the dashboard\'s error next to the form');
    await page.fill('#group-id', '1');
    const err = await doAction(page, '#group-create', '#group-msg', /already exists/);
    console.log('     error shown: ' + err);
    await shot(page, '03-groups-error');

    log('add a master and a replica to each group');
    for (const [i, addr] of SERVERS.entries()) {
      const gid = i < 2 ? 1 : 2;
      await page.fill('#server-addr', addr);
      await page.fill('#server-gid', String(gid));
      await doAction(page, '#server-add', '#group-msg');
      await page.waitForSelector(`.group-card[data-group="${gid}"] tr[data-server="${addr}"]`);
    }
    log('sync the replicas and wait for their links');
    for (const [gid, addr] of [[1, SERVERS[1]], [2, SERVERS[3]]]) {
      await page.click(`tr[data-server="${addr}"] button:text("Sync")`);
      await until(`${addr} link up`, async () => /link up/.test(await page.textContent(`tr[data-server="${addr}"]`)), 30000);
      await until(`group-${gid} in sync`, async () => /in sync/.test(await page.textContent(`.group-card[data-group="${gid}"] h3`)), 30000);
    }
    await shot(page, '04-groups');

    log('assign every slot to group 1');
    await open(page, 'slots');
    await page.fill('#assign-beg', '0');
    await page.fill('#assign-end', '1023');
    await page.fill('#assign-gid', '1');
    await doAction(page, '#assign-go', '#assign-msg');
    await until('legend group-1: 1024', async () => /group-1: 1024/.test(await page.textContent('#slot-legend')));

    log('write keys through the proxy');
    let cmds = '';
    for (let i = 1; i <= 20000; i++) cmds += `SET key:${i} ${i}\n`;
    execFileSync('redis-cli', ['-p', PROXY_PORT], { input: cmds, stdio: ['pipe', 'ignore', 'inherit'] });
    const dbsize = execFileSync('redis-cli', ['-h', SERVERS[0].split(':')[0], '-p', SERVERS[0].split(':')[1], 'DBSIZE']).toString().trim();
    assert(+dbsize === 20000, 'group 1 master holds 20000 keys, has ' + dbsize);

    log('slow migrations down so that progress is visible, then migrate slots 0-127 to group 2');
    await page.fill('#mig-interval', '500000');
    await doAction(page, '#mig-interval-set', '#ctl-msg');
    await page.fill('#mig-beg', '0');
    await page.fill('#mig-end', '127');
    await page.fill('#mig-gid', '2');
    await doAction(page, '#mig-range', '#mig-msg');
    await page.waitForSelector('#mig-table tr[data-slot]');
    await until('a cell marked migrating', () => page.$('#slot-map div.mig'));
    await until('the overall bar part way', async () => {
      const pct = +(await page.getAttribute('#mig-overall', 'data-pct'));
      return pct > 0 && pct < 100;
    }, 120000);
    await shot(page, '05-slots-migrating');
    await page.fill('#mig-interval', '0');
    await doAction(page, '#mig-interval-set', '#ctl-msg');
    log('watch every progress bar reach done');
    await until('slots 0-127 in group 2', async () => /group-2: 128/.test(await page.textContent('#slot-legend')), 120000);
    await until('all bars done', async () => page.evaluate(() => {
      const bars = [...document.querySelectorAll('#mig-table tr[data-slot] .bar')];
      return bars.length === 128 && bars.every((b) => b.classList.contains('done') && b.dataset.pct === '100');
    }), 30000);
    const firstBar = await page.textContent('#mig-table tr[data-slot="0"] .bar');
    assert(/done/.test(firstBar), 'slot 0 bar says done: ' + firstBar);
    assert((await page.getAttribute('#mig-overall', 'data-pct')) === '100', 'overall bar at 100%');
    const slotKeys = execFileSync('redis-cli', ['-p', SERVERS[2].split(':')[1], 'DBSIZE']).toString().trim();
    assert(+slotKeys > 0, 'group 2 master received keys: ' + slotKeys);
    await shot(page, '06-slots-done');

    log('pause and resume migrations');
    await doAction(page, '#mig-pause', '#ctl-msg');
    await until('paused shown', async () => /paused/.test(await page.textContent('#mig-state')));
    await doAction(page, '#mig-resume', '#ctl-msg');
    await until('running shown', async () => /running/.test(await page.textContent('#mig-state')));

    log('rebalance preview: a plan, nothing moved');
    await doAction(page, '#rebalance-preview', '#ctl-msg');
    await until('plan shown', async () => /group-2/.test(await page.textContent('#rebalance-plan')));
    const plan = await page.textContent('#rebalance-plan');
    assert(/384/.test(plan), 'plan moves 384 slots to group 2 (512 each): ' + plan);
    assert(/group-2: 128/.test(await page.textContent('#slot-legend')), 'preview changed nothing');
    await shot(page, '06b-rebalance-preview');

    log('promote the replica of group 1');
    await open(page, 'groups');
    await page.waitForSelector(`tr[data-server="${SERVERS[1]}"]`);
    await page.click(`tr[data-server="${SERVERS[1]}"] button:text("Promote")`);
    await until('new master of group 1', async () => {
      const first = await page.$(`.group-card[data-group="1"] tr[data-server]`);
      return first && (await first.getAttribute('data-server')) === SERVERS[1] && /master/.test(await first.textContent());
    }, 30000);
    await until('group 1 in sync again (old master follows the new one)', async () =>
      /in sync/.test(await page.textContent('.group-card[data-group="1"] h3')), 30000);
    await shot(page, '07-groups-promoted');

    log('proxies page with per-command stats');
    await open(page, 'proxies');
    await page.waitForSelector('#proxy-table tr[data-proxy]');
    await page.click('#proxy-table button:text("Commands")');
    await until('SET in the command stats', async () => /SET/.test(await page.textContent('#proxy-table')));
    await shot(page, '08-proxies');

    log('add the sentinels and resync them: they monitor both groups');
    await open(page, 'sentinels');
    await page.waitForSelector('#sentinel-table');
    for (const addr of SENTINELS) {
      await page.fill('#sentinel-addr', addr);
      await doAction(page, '#sentinel-add', '#sentinel-msg');
      await page.waitForSelector(`tr[data-sentinel="${addr}"]`);
    }
    await doAction(page, '#sentinel-resync', '#sentinel-msg');
    await until('sentinels agree on both masters', async () => {
      const t = await page.textContent('#sentinel-table');
      return t.includes(`group-1: ${SERVERS[1]}`) && t.includes(`group-2: ${SERVERS[2]}`);
    }, 60000);
    await page.click(`tr[data-sentinel="${SENTINELS[0]}"] button:text("Info")`);
    await until('sentinel INFO shown', async () => /redis_mode|sentinel/.test(await page.textContent('#sentinel-table pre.info')));
    await shot(page, '09-sentinels');

    log('events page shows what happened');
    await open(page, 'events');
    await until('events recorded', async () => {
      const t = await page.textContent('#event-table');
      return /group-1 created/.test(t) && /group-2/.test(t) && /group-1 master changed/.test(t) && /promote of/.test(t);
    }, 30000);
    await shot(page, '10-events');

    log('overview shows charts with history');
    await open(page, 'overview');
    await until('charts drawn', async () => page.evaluate(() =>
      [...document.querySelectorAll('.chart path')].some((p) => (p.getAttribute('d') || '').length > 10)), 30000);
    await until('keys counted', async () => /20,000/.test(await page.textContent('#ov-charts')), 30000);
    await shot(page, '11-overview');

    log('history survives a reload (kept by codis-fe, not the page)');
    const before = await page.evaluate(async (p) => (await (await fetch('/fe/history?forward=' + p)).json()).length, PRODUCT);
    assert(before >= 2, 'codis-fe holds several samples: ' + before);
    await page.reload();
    await until('charts redrawn from codis-fe\'s history right after the reload', async () => page.evaluate((n) => {
      const d = document.querySelector('.chart[data-chart="keys"] path[fill="none"]');
      return d && (d.getAttribute('d') || '').split('L').length >= n;
    }, before), 10000);

    log('log out: read-only again');
    await page.click('#btn-logout');
    await until('read-only again', async () => (await page.textContent('#auth')).includes('read-only'));

    assert(errors.length === 0, 'no JavaScript errors: ' + errors.join('; '));
    console.log('browser test passed');
  } catch (e) {
    await shot(page, '99-failure').catch(() => {});
    throw e;
  } finally {
    await browser.close();
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
