// Drives the gateway's web page in headless Chromium (Debian's `chromium`, through playwright-core)
// against a running stack, the way a person would: keyboard sign-up, log out, a wrong password
// and a rate limit, log in, an upload with a progress bar that is cancelled, a real conversion
// followed live, the MP3 downloaded, a failed conversion, an over-limit file, the phone layout,
// deletion, and an invalid session. The page's error wording and SSE parser are checked too.
//
//   node run.mjs <base-url> <screenshot-dir>
//
// Environment: CHROMIUM_PATH (default /usr/bin/chromium), VIDEO_FIXTURE (a short video with
// audio), DOWNLOAD_DIR (where the MP3 is saved), MAX_UPLOAD_BYTES (the gateway's limit).
// Prints progress to stderr and one JSON report as the last line of stdout; exits 0 only when
// every scenario passed. gateway/tests/browser.rs starts the stack and runs this.

import { chromium } from 'playwright-core';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const [baseUrl, screenshotDir] = process.argv.slice(2);
if (!baseUrl || !screenshotDir) {
  console.error('usage: node run.mjs <base-url> <screenshot-dir>');
  process.exit(2);
}
const chromiumPath = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const videoPath =
  process.env.VIDEO_FIXTURE || resolve(here, '../../converter/tests/fixtures/mp4_aac_moov_start.mp4');
const downloadDir = process.env.DOWNLOAD_DIR || mkdtempSync(join(tmpdir(), 'web-tests-downloads-'));
const maxUploadBytes = Number(process.env.MAX_UPLOAD_BYTES || 1_000_000);
const SESSION_KEY = 'mp3converter.session';
const DESKTOP = { width: 1024, height: 768 };
const PHONE = { width: 390, height: 844 };
const OVERALL_TIMEOUT_MS = 240_000;

// The database is fresh for every run, so a readable fixed address is unique.
const email = 'alex@example.com';
const password = `correct horse ${randomBytes(4).toString('hex')}`;

const report = {
  ok: false,
  email,
  password,
  scenarios: [],
  screenshots: [],
  jobs: {},
  conversion: {},
  download: {},
  console_problems: [],
};

function log(message) {
  process.stderr.write(`[web-tests] ${message}\n`);
}

function check(condition, message) {
  if (!condition) throw new Error(message);
}

function finish(code) {
  process.stdout.write(`${JSON.stringify(report)}\n`);
  process.exit(code);
}

const watchdog = setTimeout(() => {
  report.error = `the run took longer than ${OVERALL_TIMEOUT_MS / 1000} s`;
  log(report.error);
  finish(1);
}, OVERALL_TIMEOUT_MS);

mkdirSync(screenshotDir, { recursive: true });
mkdirSync(downloadDir, { recursive: true });
const profile = mkdtempSync(join(tmpdir(), 'web-tests-profile-'));

let context;
try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: chromiumPath,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      '--disable-quic',
    ],
    viewport: DESKTOP,
    deviceScaleFactor: 1,
    acceptDownloads: true,
    downloadsPath: downloadDir,
    locale: 'en-US',
    timezoneId: 'UTC',
  });
} catch (error) {
  report.error = `cannot start Chromium at ${chromiumPath} (Debian package: chromium): ${error.message}`;
  log(report.error);
  finish(1);
}

const page = context.pages()[0] || (await context.newPage());
page.setDefaultTimeout(15_000);
page.on('pageerror', (error) => report.console_problems.push(`uncaught: ${error.message}`));
page.on('console', (message) => {
  const text = message.text();
  if (/Content Security Policy|Trusted ?(HTML|Script|Type)/i.test(text)) {
    report.console_problems.push(`${message.type()}: ${text}`);
  }
});

// ---------------------------------------------------------------------------------------------
// Helpers

async function scenario(name, body) {
  const started = Date.now();
  log(`${name}…`);
  try {
    const details = (await body()) || {};
    report.scenarios.push({ name, ok: true, ms: Date.now() - started, ...details });
  } catch (error) {
    report.scenarios.push({ name, ok: false, ms: Date.now() - started, error: String(error.stack || error) });
    const shot = join(tmpdir(), `web-tests-failure-${Date.now()}.png`);
    await page.screenshot({ path: shot }).catch(() => {});
    report.failure_screenshot = shot;
    report.failure_page_text = await page
      .evaluate(() => document.body.innerText)
      .catch(() => null);
    throw error;
  }
}

async function screenshot(name, options = {}) {
  const path = join(screenshotDir, `${name}.png`);
  await page.screenshot({ path, animations: 'disabled', caret: 'hide', ...options });
  const bytes = statSync(path).size;
  report.screenshots.push({ name, path, bytes });
  log(`screenshot ${name}.png (${bytes} bytes)`);
}

async function textOf(selector) {
  return page.evaluate((s) => {
    const node = document.querySelector(s);
    return node ? node.textContent.replace(/\s+/g, ' ').trim() : null;
  }, selector);
}

/** Waits until `selector`'s text contains `needle`. */
async function expectText(selector, needle, timeout = 15_000) {
  try {
    await page.waitForFunction(
      ([s, n]) => {
        const node = document.querySelector(s);
        return Boolean(node && node.textContent.includes(n));
      },
      [selector, needle],
      { timeout },
    );
  } catch {
    throw new Error(`${selector} never showed ${JSON.stringify(needle)}; it shows ${JSON.stringify(await textOf(selector))}`);
  }
}

async function visible(selector, timeout = 15_000) {
  await page.locator(selector).first().waitFor({ state: 'visible', timeout });
}

async function focusedMatches(selector) {
  return page.evaluate((s) => Boolean(document.activeElement && document.activeElement.matches(s)), selector);
}

/** Presses Tab until `selector` has the focus: proves it is reachable by keyboard alone. */
async function tabTo(selector, max = 25) {
  for (let i = 0; i < max; i += 1) {
    await page.keyboard.press('Tab');
    if (await focusedMatches(selector)) return i + 1;
  }
  throw new Error(`${selector} cannot be reached with the Tab key`);
}

/** Throttles uploads (bytes per second) through the DevTools protocol; null lifts it. */
let devtools;
async function throttleUploads(bytesPerSecond) {
  devtools = devtools || (await context.newCDPSession(page));
  await devtools.send('Network.enable');
  await devtools.send('Network.emulateNetworkConditions', {
    offline: false,
    latency: bytesPerSecond ? 20 : 0,
    downloadThroughput: -1,
    uploadThroughput: bytesPerSecond || -1,
  });
}

function looksLikeMp3(bytes) {
  const id3 = bytes.subarray(0, 3).toString('latin1') === 'ID3';
  const sync = bytes[0] === 0xff && (bytes[1] & 0xe0) === 0xe0;
  return id3 || sync;
}

// ---------------------------------------------------------------------------------------------
// Scenarios

try {
  await scenario('security headers', async () => {
    const response = await page.goto(`${baseUrl}/`, { waitUntil: 'load' });
    check(response && response.status() === 200, `GET / answered ${response && response.status()}`);
    const headers = response.headers();
    const csp = headers['content-security-policy'] || '';
    check(csp.includes("default-src 'self'"), `CSP: ${csp}`);
    check(csp.includes("frame-ancestors 'none'"), `CSP: ${csp}`);
    check(!/unsafe-inline|unsafe-eval/.test(csp), `CSP allows inline code: ${csp}`);
    check(headers['x-content-type-options'] === 'nosniff', 'no nosniff');
    check(headers['referrer-policy'] === 'no-referrer', 'no Referrer-Policy');
    check(/no-cache/.test(headers['cache-control'] || '') && headers.etag, 'index.html lacks no-cache/ETag');
    const script = await context.request.get(`${baseUrl}/assets/app.js`);
    check(/javascript/.test(script.headers()['content-type']), 'app.js is not served as JavaScript');
    check(script.headers()['x-content-type-options'] === 'nosniff', 'app.js lacks nosniff');
    const revalidated = await context.request.get(`${baseUrl}/`, { headers: { 'If-None-Match': headers.etag } });
    check(revalidated.status() === 304, `If-None-Match answered ${revalidated.status()}`);
    await visible('#auth-view');
    check((await page.title()).includes('MP3 Converter'), 'title');
    await screenshot('01-login');
    return { csp };
  });

  await scenario('sign up by keyboard', async () => {
    const presses = await tabTo('#auth-switch');
    await page.keyboard.press('Enter');
    await expectText('#auth-title', 'Create an account');
    check(await focusedMatches('#email'), 'the email field does not have the focus after switching to sign-up');
    await page.keyboard.type(email);
    await page.keyboard.press('Tab');
    check(await focusedMatches('#password'), 'Tab from email does not reach the password');
    await page.keyboard.type(password);
    await page.keyboard.press('Enter');
    await visible('#app-view');
    await expectText('#notice', 'Account created');
    await expectText('#account-email', email);
    await visible('#jobs-empty');
    check((await page.evaluate(() => document.cookie)) === '', 'the page set a cookie');
    const stored = await page.evaluate((key) => sessionStorage.getItem(key), SESSION_KEY);
    check(stored && JSON.parse(stored).token, 'no token in sessionStorage');
    return { tab_presses: presses };
  });

  await scenario('log out', async () => {
    await page.click('#logout');
    await visible('#auth-view');
    await expectText('#notice', 'logged out');
    const stored = await page.evaluate((key) => sessionStorage.getItem(key), SESSION_KEY);
    check(stored === null, 'the token survived logging out');
  });

  await scenario('wrong password', async () => {
    await page.fill('#email', email);
    await page.fill('#password', 'not my password');
    await page.click('#auth-submit');
    await expectText('#auth-error', 'Wrong email or password');
    check(await page.isHidden('#app-view'), 'logged in with a wrong password');
    check((await page.getAttribute('#password', 'aria-invalid')) === 'true', 'the password is not marked invalid');
  });

  await scenario('rate limited', async () => {
    // Auth refuses logins after a few failures for one email; the page must say when to retry.
    await page.fill('#email', 'someone-else@example.com');
    for (let attempt = 1; attempt <= 10; attempt += 1) {
      await page.fill('#password', `guess number ${attempt}`);
      await page.click('#auth-submit');
      await page.waitForFunction(() => !document.querySelector('#auth-form').hasAttribute('aria-busy'));
      const shown = await textOf('#auth-error');
      if (shown.includes('Too many attempts')) {
        check(/Try again in \d+ (seconds?|minutes)\./.test(shown), `no wait in ${shown}`);
        return { attempts: attempt, message: shown };
      }
      check(shown.includes('Wrong email or password'), `attempt ${attempt} showed ${shown}`);
    }
    throw new Error('ten wrong passwords in a row were never rate-limited');
  });

  await scenario('error messages', async () => {
    // The page's own module, as served, on every error the API can answer with.
    const described = await page.evaluate(async () => {
      const api = await import('/assets/api.js');
      const { SseParser } = await import('/assets/sse.js');
      const body = (error, message) => JSON.stringify({ error, message });
      const say = (status, json, retryAfter = null) => {
        const { title, detail } = api.describeError(api.errorFromBody(status, json, retryAfter));
        return `${title} ${detail}`;
      };
      const parser = new SseParser();
      const events = [
        ...parser.push(': keep-alive\r\nevent: conversion.progress\r'),
        ...parser.push('\nid: 7\ndata: {"a":\ndata: 1}\n\n'),
        ...parser.push('data: second\n\n'),
      ];
      return {
        busy: say(503, body('service_unavailable', 'the authentication service is unavailable, try again later')),
        limited: say(429, body('too_many_requests', 'too many failed logins'), '42'),
        large: say(413, body('payload_too_large', 'the file is larger than the limit of 2147483648 bytes')),
        expired: say(401, body('unauthorized', 'token expired')),
        offline: api.describeError(api.networkError()).title,
        internal: say(500, body('internal_error', 'internal error')),
        proxy: say(502, '<html>Bad Gateway</html>'),
        events,
      };
    });
    check(described.busy.startsWith('The service is busy') && described.busy.includes('The authentication service is unavailable'), described.busy);
    check(described.limited.startsWith('Too many attempts. Try again in 42 seconds.'), described.limited);
    check(described.large.includes('the largest upload is 2.1 GB'), described.large);
    check(described.expired.startsWith('Your session has expired.'), described.expired);
    check(described.offline === 'Cannot reach the server.', described.offline);
    check(described.internal.startsWith('Something went wrong on our side.'), described.internal);
    check(described.proxy.includes('HTTP 502') || described.proxy.startsWith('Something went wrong'), described.proxy);
    const [first, second] = described.events;
    check(described.events.length === 2, `events: ${JSON.stringify(described.events)}`);
    check(first.type === 'conversion.progress' && first.data === '{"a":\n1}' && first.id === '7', JSON.stringify(first));
    check(second.type === 'message' && second.data === 'second' && second.id === '7', JSON.stringify(second));
    return { busy: described.busy, limited: described.limited };
  });

  await scenario('log in', async () => {
    await page.fill('#email', email);
    await page.fill('#password', password);
    await page.press('#password', 'Enter');
    await visible('#app-view');
    await expectText('#notice', `Logged in as ${email}`);
    await visible('#jobs-empty');
  });

  await scenario('upload progress and cancel', async () => {
    const size = 600_000;
    await throttleUploads(48 * 1024);
    await page.setInputFiles('#file-input', {
      name: 'holiday-video.mp4',
      mimeType: 'video/mp4',
      buffer: randomBytes(size),
    });
    await expectText('#file-summary', 'holiday-video.mp4');
    await page.selectOption('#quality', 'V5');
    await page.click('#upload-submit');
    await visible('#upload-progress');
    await page.waitForFunction(
      () => {
        const bar = document.querySelector('#upload-bar');
        return bar.value >= 15 && bar.value <= 80;
      },
      null,
      { timeout: 30_000 },
    );
    const bytesText = await textOf('#upload-bytes');
    check(/ of 600 KB sent/.test(bytesText), `byte count: ${bytesText}`);
    const percentText = await textOf('#upload-percent');
    await screenshot('02-upload-progress');
    await page.click('#upload-cancel');
    await expectText('#notice', 'cancelled');
    check(await page.isHidden('#upload-progress'), 'the progress bar stayed after cancelling');
    await throttleUploads(null);
    await page.waitForTimeout(500);
    check((await page.locator('li.job').count()) === 0, 'a cancelled upload made a job');
    return { progress_when_cancelled: percentText, bytes: bytesText };
  });

  await scenario('upload and live conversion', async () => {
    // Records every state the first job card goes through.
    await page.evaluate(() => {
      window.__statuses = [];
      window.__progress = [];
      const list = document.getElementById('jobs');
      const record = () => {
        const card = list.querySelector('li.job');
        if (!card) return;
        const status = card.dataset.status;
        if (window.__statuses[window.__statuses.length - 1] !== status) window.__statuses.push(status);
        const bar = card.querySelector('progress');
        const value = bar.hasAttribute('value') ? bar.value : null;
        if (value !== null && window.__progress[window.__progress.length - 1] !== value) window.__progress.push(value);
      };
      new MutationObserver(record).observe(list, { subtree: true, childList: true, attributes: true, characterData: true });
    });
    await page.setInputFiles('#file-input', videoPath);
    await page.selectOption('#quality', '192');
    await page.click('#upload-submit');
    await expectText('#notice', 'queued for conversion', 30_000);
    const card = page.locator('li.job').first();
    await page.waitForSelector('li.job[data-status="succeeded"]', { timeout: 90_000 });
    const state = await page.evaluate(() => {
      const node = document.querySelector('li.job');
      return {
        id: node.dataset.jobId,
        status: node.dataset.status,
        progress: node.querySelector('progress').value,
        badge: node.querySelector('.badge').textContent,
        meta: node.querySelector('.job-meta').textContent,
        detail: node.querySelector('.job-detail').textContent,
        statuses: window.__statuses,
        progressSeen: window.__progress,
      };
    });
    check(state.badge === 'Ready', `badge: ${state.badge}`);
    check(state.progress === 100, `progress: ${state.progress}`);
    check(state.meta.includes('192 kbps'), `meta: ${state.meta}`);
    check(/ready/i.test(state.detail), `detail: ${state.detail}`);
    check(await card.locator('[data-action="download"]').isVisible(), 'no download button');
    await expectText('#notice', 'ready to download');
    report.jobs.succeeded = state.id;
    report.conversion = {
      final_status: state.status,
      final_progress: state.progress,
      statuses: state.statuses,
      progress: state.progressSeen,
    };
    await screenshot('03-job-done', { fullPage: true });
    return { detail: state.detail };
  });

  await scenario('download', async () => {
    const [download] = await Promise.all([
      page.waitForEvent('download', { timeout: 30_000 }),
      page.click('li.job[data-status="succeeded"] [data-action="download"]'),
    ]);
    const filename = download.suggestedFilename();
    const path = join(downloadDir, filename);
    await download.saveAs(path);
    const bytes = readFileSync(path);
    check(filename.endsWith('.mp3'), `file name ${filename}`);
    check(bytes.length > 10_000, `the MP3 is only ${bytes.length} bytes`);
    check(looksLikeMp3(bytes), `not an MP3: starts with ${bytes.subarray(0, 4).toString('hex')}`);
    await expectText('#notice', `Downloaded ${filename}`);
    report.download = { path, filename, bytes: bytes.length };
  });

  await scenario('failed conversion', async () => {
    await page.setInputFiles('#file-input', {
      name: 'notes.mp4',
      mimeType: 'video/mp4',
      buffer: Buffer.from('These are meeting notes, not a video. '.repeat(300)),
    });
    await page.click('#upload-submit');
    await page.waitForSelector('li.job[data-status="failed"]', { timeout: 60_000 });
    const first = await page.evaluate(() => {
      const node = document.querySelector('li.job');
      return { id: node.dataset.jobId, status: node.dataset.status, detail: node.querySelector('.job-detail').textContent };
    });
    check(first.status === 'failed', 'the newest job is not listed first');
    check(first.detail.startsWith('This video could not be converted.') && first.detail.length > 40, `reason: ${first.detail}`);
    check(!(await page.locator('li.job[data-status="failed"] [data-action="download"]').isVisible()), 'a failed job offers a download');
    report.jobs.failed = first.id;
    return { reason: first.detail };
  });

  await scenario('too large', async () => {
    await page.setInputFiles('#file-input', {
      name: 'too-big.mp4',
      mimeType: 'video/mp4',
      buffer: Buffer.alloc(maxUploadBytes + 400_000, 7),
    });
    await page.click('#upload-submit');
    await expectText('#upload-error', 'This file is too big', 30_000);
    const message = await textOf('#upload-error');
    check(message.includes('1 MB'), `the limit is not given in plain words: ${message}`);
    check(/larger than the limit/.test(message), `the API's message is not shown: ${message}`);
    check((await page.getAttribute('#upload-error', 'role')) === 'alert', 'the error is not announced');
    check((await page.locator('li.job').count()) === 2, 'the refused upload made a job');
    await screenshot('04-error-too-large', { fullPage: true });
    return { message };
  });

  await scenario('phone layout', async () => {
    await page.setViewportSize(PHONE);
    await page.evaluate(() => window.scrollTo(0, 0));
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    check(overflow <= 0, `the page is ${overflow}px wider than a phone`);
    const small = await page.evaluate(() =>
      [...document.querySelectorAll('button, select, input:not([type=file])')]
        .filter((node) => node.offsetParent !== null)
        .filter((node) => node.getBoundingClientRect().height < 36)
        .map((node) => node.id || node.textContent.trim()),
    );
    check(small.length === 0, `controls too small to tap: ${small.join(', ')}`);
    await screenshot('05-phone', { fullPage: true });
    await page.setViewportSize(DESKTOP);
  });

  await scenario('delete', async () => {
    page.once('dialog', (dialog) => dialog.accept());
    await page.click('li.job[data-status="failed"] [data-action="delete"]');
    await page.waitForSelector('li.job[data-status="failed"]', { state: 'detached' });
    await expectText('#notice', 'Deleted notes.mp4');
    check((await page.locator('li.job').count()) === 1, 'the wrong number of jobs is left');
  });

  await scenario('reload keeps the session', async () => {
    await page.reload();
    await visible('#app-view');
    await page.waitForSelector('li.job[data-status="succeeded"]');
    check((await page.locator('li.job').count()) === 1, 'the deleted job came back');
  });

  await scenario('invalid session', async () => {
    await page.evaluate((key) => {
      const stored = JSON.parse(sessionStorage.getItem(key));
      stored.token = `${stored.token.slice(0, -8)}AAAAAAAA`;
      sessionStorage.setItem(key, JSON.stringify(stored));
    }, SESSION_KEY);
    await page.reload();
    await visible('#auth-view');
    await expectText('#auth-error', 'Your session has expired');
    check(await page.isHidden('#app-view'), 'the app stayed visible');
    const stored = await page.evaluate((key) => sessionStorage.getItem(key), SESSION_KEY);
    check(stored === null, 'the rejected token was kept');
    await page.fill('#email', email);
    await screenshot('06-session-expired');
  });

  await scenario('no script errors or policy violations', async () => {
    check(report.console_problems.length === 0, report.console_problems.join('\n'));
  });

  report.ok = true;
} catch (error) {
  report.error = String(error.message || error);
  log(`FAILED: ${report.error}`);
} finally {
  clearTimeout(watchdog);
  await context.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
}

const passed = report.scenarios.filter((s) => s.ok).length;
log(`${passed} passed, ${report.scenarios.length - passed} failed`);
finish(report.ok ? 0 : 1);
