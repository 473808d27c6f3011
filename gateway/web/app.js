// The page: log in or sign up, upload a video with a progress bar, and follow the user's jobs
// live. Everything goes through the public REST API (api.js); no HTML is ever built from strings,
// so nothing the server or a file name contains can turn into markup.

import {
  ApiError,
  deleteJob,
  describeError,
  downloadMp3,
  formatBytes,
  getJob,
  listJobs,
  login,
  signup,
  uploadVideo,
} from './api.js';
import { streamJobEvents } from './sse.js';

const SESSION_KEY = 'mp3converter.session';
/** Browsers open about six connections per host: keep most of them for uploads and downloads. */
const MAX_LIVE_STREAMS = 3;
const PAGE_SIZE = 20;
const MIN_PASSWORD_LENGTH = 8;

const $ = (id) => document.getElementById(id);

const ui = {
  notice: $('notice'),
  account: $('account'),
  accountEmail: $('account-email'),
  logout: $('logout'),
  authView: $('auth-view'),
  authTitle: $('auth-title'),
  authLede: $('auth-lede'),
  authError: $('auth-error'),
  authForm: $('auth-form'),
  email: $('email'),
  password: $('password'),
  passwordHint: $('password-hint'),
  authSubmit: $('auth-submit'),
  authSwitch: $('auth-switch'),
  authSwitchText: $('auth-switch-text'),
  appView: $('app-view'),
  uploadTitle: $('upload-title'),
  uploadForm: $('upload-form'),
  dropzone: $('dropzone'),
  fileInput: $('file-input'),
  fileSummary: $('file-summary'),
  quality: $('quality'),
  uploadError: $('upload-error'),
  uploadProgress: $('upload-progress'),
  uploadLabel: $('upload-label'),
  uploadPercent: $('upload-percent'),
  uploadBar: $('upload-bar'),
  uploadBytes: $('upload-bytes'),
  uploadSubmit: $('upload-submit'),
  uploadCancel: $('upload-cancel'),
  jobsTitle: $('jobs-title'),
  jobsError: $('jobs-error'),
  jobsEmpty: $('jobs-empty'),
  jobsList: $('jobs'),
  jobsMore: $('jobs-more'),
  jobsRefresh: $('jobs-refresh'),
};

/** `{token, email, expiresAt}` while logged in. */
let session = null;
let sessionTimer = null;
/** job id → `{job, element}`, in list order (newest first). */
const jobs = new Map();
let olderCursor = null;
/** The upload in flight: `{abort}`. */
let currentUpload = null;
/** Live streams: job id → AbortController; and the jobs waiting for a free stream. */
const streams = new Map();
const streamQueue = [];

// ---------------------------------------------------------------------------------------------
// Messages

function setNotice(text) {
  ui.notice.textContent = '';
  if (!text) return;
  // A fresh node so the same text twice is announced twice.
  const line = document.createElement('p');
  line.textContent = text;
  ui.notice.append(line);
}

function showError(region, error) {
  region.textContent = '';
  if (!error) return;
  const { title, detail } = typeof error === 'string' ? { title: error, detail: '' } : describeError(error);
  const strong = document.createElement('strong');
  strong.textContent = title;
  region.append(strong);
  if (detail && detail !== title) {
    region.append(' ');
    const span = document.createElement('span');
    span.textContent = detail;
    region.append(span);
  }
}

// ---------------------------------------------------------------------------------------------
// Session

function loadSession() {
  try {
    const stored = JSON.parse(sessionStorage.getItem(SESSION_KEY) || 'null');
    if (stored && typeof stored.token === 'string' && stored.token) {
      if (stored.expiresAt && stored.expiresAt <= Date.now()) return null;
      return { token: stored.token, email: String(stored.email || ''), expiresAt: stored.expiresAt || null };
    }
  } catch {
    // A damaged entry is no session.
  }
  return null;
}

function startSession(next) {
  session = next;
  sessionStorage.setItem(SESSION_KEY, JSON.stringify(next));
  clearTimeout(sessionTimer);
  if (next.expiresAt) {
    const delay = Math.min(next.expiresAt - Date.now(), 2 ** 31 - 1);
    sessionTimer = setTimeout(() => endSession('expired'), Math.max(0, delay));
  }
}

/** Forgets the session and everything shown for it; `why`: 'logout' or 'expired'. */
function endSession(why) {
  if (!session && why === 'expired' && !ui.authView.hidden) return;
  session = null;
  clearTimeout(sessionTimer);
  sessionStorage.removeItem(SESSION_KEY);
  if (currentUpload) currentUpload.abort();
  stopAllStreams();
  jobs.clear();
  ui.jobsList.textContent = '';
  olderCursor = null;
  resetUploadForm();
  showAuthView();
  if (why === 'expired') {
    showError(ui.authError, 'Your session has expired or is no longer valid. Please log in again.');
    setNotice('');
  } else {
    showError(ui.authError, null);
    setNotice('You have logged out.');
  }
}

/** True (and the session ended) when `error` means the token is no longer accepted. */
function handleSessionError(error) {
  if (error instanceof ApiError && error.sessionExpired) {
    endSession('expired');
    return true;
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// Log in / sign up

function setAuthMode(mode) {
  const signingUp = mode === 'signup';
  ui.authForm.dataset.mode = mode;
  ui.authTitle.textContent = signingUp ? 'Create an account' : 'Log in';
  ui.authLede.textContent = signingUp
    ? 'Choose an email and a password. Your conversions stay private to your account.'
    : 'Turn any video into an MP3. Log in to see your conversions.';
  ui.authSubmit.textContent = signingUp ? 'Create account' : 'Log in';
  ui.password.autocomplete = signingUp ? 'new-password' : 'current-password';
  ui.passwordHint.hidden = !signingUp;
  ui.authSwitchText.textContent = signingUp ? 'Already have an account?' : 'New here?';
  ui.authSwitch.textContent = signingUp ? 'Log in' : 'Create an account';
  showError(ui.authError, null);
  for (const input of [ui.email, ui.password]) input.removeAttribute('aria-invalid');
  document.title = signingUp ? 'Create an account · MP3 Converter' : 'Log in · MP3 Converter';
}

function showAuthView() {
  ui.appView.hidden = true;
  ui.account.hidden = true;
  ui.authView.hidden = false;
  setAuthMode(ui.authForm.dataset.mode || 'login');
  ui.password.value = '';
  ui.email.focus();
}

function invalid(input, message) {
  input.setAttribute('aria-invalid', 'true');
  showError(ui.authError, message);
  input.focus();
}

async function onAuthSubmit(event) {
  event.preventDefault();
  const signingUp = ui.authForm.dataset.mode === 'signup';
  const email = ui.email.value.trim();
  const password = ui.password.value;
  for (const input of [ui.email, ui.password]) input.removeAttribute('aria-invalid');
  if (!email || !email.includes('@')) return invalid(ui.email, 'Enter your email address.');
  if (!password) return invalid(ui.password, 'Enter your password.');
  if (signingUp && password.length < MIN_PASSWORD_LENGTH) {
    return invalid(ui.password, `Choose a password of at least ${MIN_PASSWORD_LENGTH} characters.`);
  }

  ui.authSubmit.disabled = true;
  ui.authSubmit.textContent = signingUp ? 'Creating account…' : 'Logging in…';
  ui.authForm.setAttribute('aria-busy', 'true');
  showError(ui.authError, null);
  try {
    if (signingUp) await signup(email, password);
    const issued = await login(email, password);
    startSession({ token: issued.token, email, expiresAt: issued.expiresAt });
    ui.password.value = '';
    setAuthMode('login');
    showAppView();
    setNotice(signingUp ? `Account created. Welcome, ${email}!` : `Logged in as ${email}.`);
    await loadJobs();
  } catch (error) {
    showError(ui.authError, error);
    if (error instanceof ApiError && error.code === 'invalid_credentials') {
      ui.password.setAttribute('aria-invalid', 'true');
      ui.password.select();
      ui.password.focus();
    }
  } finally {
    ui.authSubmit.disabled = false;
    ui.authSubmit.textContent = ui.authForm.dataset.mode === 'signup' ? 'Create account' : 'Log in';
    ui.authForm.removeAttribute('aria-busy');
  }
}

// ---------------------------------------------------------------------------------------------
// Upload

/** While a file is on its way, neither it nor its quality can change. */
function setUploadInputsDisabled(disabled) {
  ui.fileInput.disabled = disabled;
  ui.quality.disabled = disabled;
  ui.dropzone.classList.toggle('disabled', disabled);
}

function resetUploadForm() {
  setUploadInputsDisabled(false);
  ui.uploadForm.reset();
  ui.fileSummary.hidden = true;
  ui.fileSummary.textContent = '';
  ui.uploadProgress.hidden = true;
  ui.uploadCancel.hidden = true;
  ui.uploadSubmit.disabled = false;
  ui.uploadSubmit.textContent = 'Upload and convert';
  ui.dropzone.classList.remove('has-file', 'dragging');
  ui.uploadForm.removeAttribute('aria-busy');
}

function chosenFile() {
  return ui.fileInput.files && ui.fileInput.files.length ? ui.fileInput.files[0] : null;
}

function onFileChosen() {
  const file = chosenFile();
  showError(ui.uploadError, null);
  ui.dropzone.classList.remove('dragging');
  ui.dropzone.classList.toggle('has-file', Boolean(file));
  ui.fileSummary.hidden = !file;
  ui.fileSummary.textContent = file ? `Selected: ${file.name} (${formatBytes(file.size)})` : '';
}

function showUploadProgress(file, sent, total, done) {
  const percent = total > 0 ? Math.min(100, Math.floor((sent / total) * 100)) : 0;
  ui.uploadBar.value = percent;
  ui.uploadPercent.textContent = `${percent}%`;
  ui.uploadLabel.textContent = done ? `Uploaded ${file.name}, saving…` : `Uploading ${file.name}`;
  ui.uploadBytes.textContent = `${formatBytes(sent)} of ${formatBytes(total)} sent`;
}

async function onUploadSubmit(event) {
  event.preventDefault();
  if (currentUpload || !session) return;
  const file = chosenFile();
  if (!file) {
    showError(ui.uploadError, 'Choose a video first: drop it on the box above or press it to pick a file.');
    ui.fileInput.focus();
    return;
  }
  if (file.size === 0) {
    showError(ui.uploadError, 'This file is empty. Choose another one.');
    ui.fileInput.focus();
    return;
  }
  showError(ui.uploadError, null);
  ui.uploadSubmit.disabled = true;
  ui.uploadSubmit.textContent = 'Uploading…';
  setUploadInputsDisabled(true);
  ui.uploadCancel.hidden = false;
  // The focused submit button is now disabled: give keyboard users the way out instead.
  ui.uploadCancel.focus();
  ui.uploadProgress.hidden = false;
  ui.uploadForm.setAttribute('aria-busy', 'true');
  showUploadProgress(file, 0, file.size, false);
  setNotice(`Uploading ${file.name}…`);

  const upload = uploadVideo(session.token, file, ui.quality.value, ({ sent, total, done }) =>
    showUploadProgress(file, sent, total, done),
  );
  currentUpload = upload;
  try {
    const accepted = await upload.promise;
    resetUploadForm();
    // The focused Cancel button is gone: back to the drop zone for the next video.
    ui.fileInput.focus();
    setNotice(`${file.name} is uploaded and queued for conversion.`);
    addJobOnTop({
      job_id: accepted.job_id,
      status: 'submitted',
      original_filename: accepted.original_filename || file.name,
      quality_label: accepted.quality || null,
      progress: 0,
      submitted_at: new Date().toISOString(),
    });
    watchJob(accepted.job_id);
  } catch (error) {
    ui.uploadProgress.hidden = true;
    ui.uploadCancel.hidden = true;
    ui.uploadSubmit.disabled = false;
    ui.uploadSubmit.textContent = 'Upload and convert';
    setUploadInputsDisabled(false);
    ui.uploadForm.removeAttribute('aria-busy');
    if (error && error.name === 'AbortError') {
      if (session) {
        setNotice(`Upload of ${file.name} cancelled.`);
        ui.fileInput.focus();
      }
    } else if (!handleSessionError(error)) {
      setNotice('');
      showError(ui.uploadError, error);
      ui.fileInput.focus();
    }
  } finally {
    currentUpload = null;
  }
}

// ---------------------------------------------------------------------------------------------
// Jobs

const TERMINAL = new Set(['succeeded', 'failed', 'deleted', 'expired']);

const relativeTime = new Intl.RelativeTimeFormat('en', { numeric: 'auto' });

function ago(iso) {
  const at = Date.parse(iso);
  if (Number.isNaN(at)) return '';
  const seconds = Math.round((at - Date.now()) / 1000);
  if (Math.abs(seconds) < 45) return 'just now';
  const minutes = Math.round(seconds / 60);
  if (Math.abs(minutes) < 60) return relativeTime.format(minutes, 'minute');
  const hours = Math.round(minutes / 60);
  if (Math.abs(hours) < 24) return relativeTime.format(hours, 'hour');
  return relativeTime.format(Math.round(hours / 24), 'day');
}

function formatDuration(seconds) {
  if (!Number.isFinite(seconds)) return '';
  const total = Math.round(seconds);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = String(total % 60).padStart(2, '0');
  return h ? `${h}:${String(m).padStart(2, '0')}:${s}` : `${m}:${s}`;
}

function sentence(text) {
  const trimmed = (text || '').trim();
  if (!trimmed) return '';
  const capitalised = trimmed[0].toUpperCase() + trimmed.slice(1);
  return /[.!?]$/.test(capitalised) ? capitalised : `${capitalised}.`;
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function button(text, className, action) {
  const node = element('button', `button ${className}`, text);
  node.type = 'button';
  node.dataset.action = action;
  return node;
}

function createJobElement(job) {
  const item = element('li', 'job');
  item.dataset.jobId = job.job_id;
  const head = element('div', 'job-head');
  const icon = element('span', 'job-icon');
  icon.setAttribute('aria-hidden', 'true');
  const text = element('div', 'job-text');
  const name = element('h3', 'job-name');
  const meta = element('p', 'job-meta');
  text.append(name, meta);
  const badge = element('span', 'badge');
  head.append(icon, text, badge);
  const progress = element('progress', 'job-progress');
  progress.max = 100;
  const detail = element('p', 'job-detail');
  const note = element('p', 'job-note');
  const actions = element('div', 'job-actions');
  actions.append(button('Download MP3', 'button-primary', 'download'), button('Delete', 'button-danger', 'delete'));
  item.append(head, progress, detail, note, actions);
  renderJob(item, job);
  return item;
}

function renderJob(item, job) {
  const name = job.original_filename || 'Untitled video';
  const status = job.status || 'submitted';
  const progress = Math.max(0, Math.min(100, Number(job.progress) || 0));
  item.dataset.status = status;
  item.querySelector('.job-name').textContent = name;

  const meta = [job.quality_label || 'Automatic quality'];
  const when = ago(job.submitted_at || job.updated_at);
  if (when) meta.push(`uploaded ${when}`);
  item.querySelector('.job-meta').textContent = meta.join(' · ');

  const badge = item.querySelector('.badge');
  const bar = item.querySelector('.job-progress');
  const detail = item.querySelector('.job-detail');
  const labels = {
    submitted: ['Queued', 'Waiting for a converter…'],
    converting: [`Converting ${progress}%`, `Converting… ${progress}% done.`],
    succeeded: ['Ready', ''],
    failed: ['Failed', ''],
    expired: ['Expired', 'The MP3 was removed after the storage period.'],
    deleted: ['Deleted', ''],
  };
  const [label, text] = labels[status] || [status, ''];
  badge.className = `badge badge-${status}`;
  badge.textContent = label;
  let detailText = text;
  if (status === 'succeeded') {
    const facts = [];
    if (job.duration_seconds) facts.push(`${formatDuration(job.duration_seconds)} long`);
    // A constant bitrate is already in the meta line; a variable one is worth its average.
    const constant = /kbps$/.test(job.quality_label || '');
    if (job.bitrate_kbps && !constant) facts.push(`about ${job.bitrate_kbps} kbps`);
    if (job.mp3_size_bytes) facts.push(formatBytes(job.mp3_size_bytes));
    detailText = facts.length ? `Your MP3 is ready: ${facts.join(', ')}.` : 'Your MP3 is ready.';
  } else if (status === 'failed') {
    const reason = sentence(job.failure_reason) || 'No reason was given.';
    detailText =
      job.failure_kind === 'retries_exhausted'
        ? `We could not convert this video after several tries. ${reason}`
        : `This video could not be converted. ${reason}`;
  }
  detail.textContent = detailText;

  const showBar = status === 'submitted' || status === 'converting' || status === 'succeeded';
  bar.hidden = !showBar;
  if (status === 'submitted') bar.removeAttribute('value');
  else bar.value = status === 'succeeded' ? 100 : progress;
  bar.setAttribute('aria-label', `Conversion of ${name}`);

  const download = item.querySelector('[data-action="download"]');
  download.hidden = status !== 'succeeded';
  download.setAttribute('aria-label', `Download the MP3 of ${name}`);
  item.querySelector('[data-action="delete"]').setAttribute('aria-label', `Delete ${name}`);
  if (TERMINAL.has(status)) setJobNote(item, '');
}

function setJobNote(item, text) {
  if (item) item.querySelector('.job-note').textContent = text;
}

function updateEmptyState() {
  ui.jobsEmpty.hidden = jobs.size > 0;
}

function upsertJob(job, { onTop = false } = {}) {
  if (!job || !job.job_id) return;
  if (job.status === 'deleted') {
    removeJob(job.job_id);
    return;
  }
  const known = jobs.get(job.job_id);
  if (known) {
    const before = known.job.status;
    known.job = { ...known.job, ...job };
    renderJob(known.element, known.job);
    if (before !== known.job.status) announceStatus(known.job);
    return;
  }
  const item = createJobElement(job);
  if (onTop) ui.jobsList.prepend(item);
  else ui.jobsList.append(item);
  jobs.set(job.job_id, { job, element: item });
  updateEmptyState();
}

function addJobOnTop(job) {
  upsertJob(job, { onTop: true });
}

function announceStatus(job) {
  const name = job.original_filename || 'Your video';
  if (job.status === 'succeeded') setNotice(`${name} is converted. The MP3 is ready to download.`);
  else if (job.status === 'failed') setNotice(`${name} could not be converted.`);
}

function removeJob(jobId) {
  stopStream(jobId);
  const known = jobs.get(jobId);
  if (!known) return;
  const next = known.element.nextElementSibling || known.element.previousElementSibling;
  const hadFocus = known.element.contains(document.activeElement);
  known.element.remove();
  jobs.delete(jobId);
  updateEmptyState();
  if (hadFocus) {
    const target = next && next.querySelector('button:not([hidden])');
    if (target) target.focus();
    else ui.jobsTitle.focus();
  }
}

async function loadJobs({ older = false } = {}) {
  if (!session) return;
  showError(ui.jobsError, null);
  ui.jobsRefresh.disabled = true;
  ui.jobsMore.disabled = true;
  try {
    const page = await listJobs(session.token, { limit: PAGE_SIZE, before: older ? olderCursor : null });
    if (!older) {
      // A refresh starts over from the newest jobs; their streams replay what was missed.
      stopAllStreams();
      jobs.clear();
      ui.jobsList.textContent = '';
    }
    for (const job of page.jobs) {
      if (job.status === 'deleted') continue;
      upsertJob(job);
      if (!TERMINAL.has(job.status)) watchJob(job.job_id);
    }
    olderCursor = page.before;
    ui.jobsMore.hidden = !olderCursor;
    updateEmptyState();
  } catch (error) {
    if (!handleSessionError(error)) showError(ui.jobsError, error);
  } finally {
    ui.jobsRefresh.disabled = false;
    ui.jobsMore.disabled = false;
  }
}

// ---------------------------------------------------------------------------------------------
// Live updates

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve();
    }, { once: true });
  });
}

function watchJob(jobId) {
  if (streams.has(jobId) || streamQueue.includes(jobId)) return;
  streamQueue.push(jobId);
  pumpStreams();
}

function pumpStreams() {
  while (streams.size < MAX_LIVE_STREAMS && streamQueue.length > 0) {
    const jobId = streamQueue.shift();
    if (jobs.has(jobId)) followJob(jobId);
  }
}

function stopStream(jobId) {
  const queued = streamQueue.indexOf(jobId);
  if (queued !== -1) streamQueue.splice(queued, 1);
  const controller = streams.get(jobId);
  if (controller) controller.abort();
}

function stopAllStreams() {
  streamQueue.length = 0;
  for (const controller of streams.values()) controller.abort();
  streams.clear();
}

/** Follows one job's event stream until the job is terminal, reconnecting with backoff. */
async function followJob(jobId) {
  const controller = new AbortController();
  const { signal } = controller;
  streams.set(jobId, controller);
  let lastEventId = '';
  let failures = 0;
  try {
    while (!signal.aborted && session) {
      let streamError = null;
      try {
        lastEventId = await streamJobEvents(session.token, jobId, {
          lastEventId,
          signal,
          onEvent: (event) => {
            if (event.type === 'error') {
              streamError = event.data;
              return;
            }
            let data;
            try {
              data = JSON.parse(event.data);
            } catch {
              return;
            }
            if (data && data.job) {
              failures = 0;
              upsertJob(data.job);
            }
          },
        });
      } catch (error) {
        if (signal.aborted || (error && error.name === 'AbortError')) return;
        if (handleSessionError(error)) return;
        if (error instanceof ApiError && error.status === 404) {
          removeJob(jobId);
          return;
        }
        failures += 1;
        const known = jobs.get(jobId);
        const { title } = describeError(error);
        setJobNote(known && known.element, `Live updates paused: ${title} Retrying…`);
        const delay = error.retryAfter ? error.retryAfter * 1000 : Math.min(30000, 1000 * 2 ** failures);
        await sleep(delay, signal);
        continue;
      }
      const known = jobs.get(jobId);
      if (!known || TERMINAL.has(known.job.status)) return;
      // The stream ended early (the server restarted, or it reported a problem): come back later.
      failures += 1;
      if (streamError) {
        let message = '';
        try {
          message = JSON.parse(streamError).message || '';
        } catch {
          message = '';
        }
        setJobNote(known.element, `Live updates paused: ${sentence(message) || 'the server had a problem.'} Retrying…`);
      }
      await sleep(Math.min(30000, 500 * 2 ** failures), signal);
    }
  } finally {
    if (streams.get(jobId) === controller) streams.delete(jobId);
    pumpStreams();
  }
}

// ---------------------------------------------------------------------------------------------
// Job actions

async function onJobAction(event) {
  const target = event.target.closest('button[data-action]');
  if (!target || !session) return;
  const item = target.closest('li.job');
  const known = item && jobs.get(item.dataset.jobId);
  if (!known) return;
  if (target.dataset.action === 'download') await download(known, target);
  if (target.dataset.action === 'delete') await remove(known, target);
}

async function download(known, control) {
  const label = control.textContent;
  control.disabled = true;
  control.textContent = 'Downloading…';
  setJobNote(known.element, '');
  try {
    const { blob, filename } = await downloadMp3(session.token, known.job.job_id);
    const url = URL.createObjectURL(blob);
    const link = document.createElement('a');
    link.href = url;
    link.download = filename;
    link.hidden = true;
    document.body.append(link);
    link.click();
    link.remove();
    // Revoking at once can cancel the download in some browsers.
    setTimeout(() => URL.revokeObjectURL(url), 60000);
    setNotice(`Downloaded ${filename} (${formatBytes(blob.size)}).`);
  } catch (error) {
    if (!handleSessionError(error)) {
      const { title, detail } = describeError(error);
      setJobNote(known.element, `${title} ${detail}`.trim());
      setNotice(`The download of ${known.job.original_filename || 'the MP3'} failed.`);
      if (error instanceof ApiError && error.status === 404) refreshJob(known.job.job_id);
    }
  } finally {
    control.disabled = false;
    control.textContent = label;
  }
}

async function refreshJob(jobId) {
  try {
    upsertJob(await getJob(session.token, jobId));
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) removeJob(jobId);
    else handleSessionError(error);
  }
}

async function remove(known, control) {
  const name = known.job.original_filename || 'this conversion';
  if (!window.confirm(`Delete ${name}? The video and its MP3 will be removed.`)) return;
  control.disabled = true;
  try {
    await deleteJob(session.token, known.job.job_id);
    removeJob(known.job.job_id);
    setNotice(`Deleted ${name}.`);
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) {
      removeJob(known.job.job_id);
      setNotice(`${name} was already deleted.`);
    } else if (!handleSessionError(error)) {
      const { title, detail } = describeError(error);
      setJobNote(known.element, `Could not delete: ${title} ${detail}`.trim());
    }
  } finally {
    control.disabled = false;
  }
}

// ---------------------------------------------------------------------------------------------
// Start

function showAppView() {
  ui.authView.hidden = true;
  ui.appView.hidden = false;
  ui.account.hidden = false;
  ui.accountEmail.textContent = session ? session.email : '';
  document.title = 'MP3 Converter';
  ui.uploadTitle.setAttribute('tabindex', '-1');
  ui.uploadTitle.focus();
}

function wireDropZone() {
  const zone = ui.dropzone;
  let depth = 0;
  zone.addEventListener('dragenter', (event) => {
    if (!event.dataTransfer || !Array.from(event.dataTransfer.types).includes('Files')) return;
    depth += 1;
    zone.classList.add('dragging');
  });
  zone.addEventListener('dragleave', () => {
    depth = Math.max(0, depth - 1);
    if (depth === 0) zone.classList.remove('dragging');
  });
  zone.addEventListener('drop', () => {
    depth = 0;
    zone.classList.remove('dragging');
  });
  // A file dropped beside the zone must not make the browser leave the page to open it.
  for (const type of ['dragover', 'drop']) {
    window.addEventListener(type, (event) => {
      if (event.target !== ui.fileInput) event.preventDefault();
    });
  }
}

function init() {
  ui.jobsTitle.setAttribute('tabindex', '-1');
  ui.authForm.addEventListener('submit', onAuthSubmit);
  ui.authSwitch.addEventListener('click', () => {
    setAuthMode(ui.authForm.dataset.mode === 'signup' ? 'login' : 'signup');
    ui.email.focus();
  });
  ui.logout.addEventListener('click', () => endSession('logout'));
  ui.uploadForm.addEventListener('submit', onUploadSubmit);
  ui.fileInput.addEventListener('change', onFileChosen);
  ui.uploadCancel.addEventListener('click', () => {
    if (currentUpload) currentUpload.abort();
  });
  ui.jobsList.addEventListener('click', onJobAction);
  ui.jobsRefresh.addEventListener('click', () => loadJobs());
  ui.jobsMore.addEventListener('click', () => loadJobs({ older: true }));
  wireDropZone();
  // Keep "uploaded 3 minutes ago" true.
  setInterval(() => {
    for (const known of jobs.values()) renderJob(known.element, known.job);
  }, 60000);
  // Another tab logging out of the same session storage is not possible (it is per tab), but
  // an expired token is: it is handled on the first 401.
  session = loadSession();
  if (session) {
    startSession(session);
    showAppView();
    loadJobs();
  } else {
    showAuthView();
  }
}

init();
