"use strict";
// /admin/queues: counts and progress over /api/queues/events, a job's detail over
// /api/jobs/<id>/events, actions through the JSON API. Selection lives in the URL hash.
// Data only ever reaches the page as text (textContent, createElement) and URLs only through
// encodeURIComponent / URLSearchParams; the page's CSP refuses inline script and HTML strings.
(() => {
  const $ = (selector, root = document) => root.querySelector(selector);
  // The queues and states the server rendered: a hash naming anything else shows the overview.
  const QUEUES = [...document.querySelectorAll("#overview tbody tr")].map((row) => row.dataset.queue);
  const STATES = [...document.querySelectorAll("#state-tabs [data-state]")].map((tab) => tab.dataset.state);
  const FINAL = ["completed", "failed"];
  const PAGE_SIZE = 20;
  let view = {};
  let overview = null;
  let page = null;
  let job = null;
  let jobStream = null;
  let listTimer = null;
  // Actions are the operator's: other roles get the page read-only (the routes refuse them too).
  const ADMIN = $("#queue-panel").dataset.role === "admin";
  // States a cancel can stop (the api answers 409 for the others).
  const CANCELLABLE = new Set(["waiting", "prioritized", "delayed", "paused", "active"]);
  if (!ADMIN) $("#queue-panel .actions").style.display = "none";

  function readHash() {
    const p = new URLSearchParams(location.hash.slice(1));
    const queue = QUEUES.includes(p.get("queue")) ? p.get("queue") : null;
    const state = STATES.includes(p.get("state")) ? p.get("state") : "waiting";
    const n = Number(p.get("page"));
    return { queue, state, page: Number.isSafeInteger(n) && n > 0 ? n : 1,
             job: queue && p.get("job") };
  }

  function go(changes) {
    const next = { ...view, ...changes };
    const p = new URLSearchParams();
    for (const key of ["queue", "state", "page", "job"]) if (next[key]) p.set(key, next[key]);
    location.hash = p.toString();
  }

  // Sent with every write: the server refuses cookie-authenticated writes without it.
  const CSRF = document.querySelector('meta[name="heavylift-csrf"]').content;

  async function api(path, body) {
    const options = body === undefined ? {} :
      { method: "POST", headers: { "Content-Type": "application/json", "X-CSRF-Token": CSRF },
        body: JSON.stringify(body) };
    const res = await fetch(path, options);
    const json = await res.json().catch(() => ({}));
    if (!res.ok) throw new Error(json.error || `HTTP ${res.status}`);
    return json;
  }

  function say(text, isError = false) {
    const el = $("#message");
    el.textContent = text;
    el.classList.toggle("error", isError);
  }

  const time = (ms) => (ms ? new Date(ms).toLocaleString() : "—");
  const percent = (p) => (typeof p === "number" ? p : 0);

  const BADGES = [...STATES, "paused", "running"];

  function badge(el, text) {
    el.textContent = text;
    el.className = "badge";
    if (BADGES.includes(text)) el.classList.add(text);
  }

  // `/api/queues/<queue>/<...rest>`, every segment encoded.
  const queuePath = (...rest) => `/api/queues/${[view.queue, ...rest].map(encodeURIComponent).join("/")}`;

  function showCounts(data) {
    overview = data;
    for (const queue of data.queues) {
      const row = $(`#overview tr[data-queue="${CSS.escape(queue.name)}"]`);
      if (!row) continue;
      for (const state of STATES) $(`.count[data-state="${state}"]`, row).textContent = queue.counts[state];
      badge($(".badge", row), queue.paused ? "paused" : "running");
      if (queue.name !== view.queue) continue;
      for (const state of STATES) $(`#state-tabs [data-state="${state}"] .n`).textContent = queue.counts[state];
      badge($("#q-status"), queue.paused ? "paused" : "running");
      $("#pause").disabled = queue.paused;
      $("#resume").disabled = !queue.paused;
      $("#retry-all").disabled = queue.counts.failed === 0;
      if (page && page.total !== queue.counts[view.state]) scheduleList();
    }
  }

  function scheduleList() {
    clearTimeout(listTimer);
    listTimer = setTimeout(loadList, 200);
  }

  async function loadList() {
    const q = new URLSearchParams({ state: view.state, page: view.page, pageSize: PAGE_SIZE });
    page = await api(`${queuePath("jobs")}?${q}`);
    const body = $("#jobs tbody");
    body.replaceChildren(...page.jobs.map(jobRow));
    if (!page.jobs.length) {
      const cell = document.createElement("td");
      cell.colSpan = 5;
      cell.className = "hint";
      cell.textContent = `no ${view.state} jobs`;
      body.insertRow().append(cell);
    }
    const pages = Math.max(1, Math.ceil(page.total / PAGE_SIZE));
    $("#page-info").textContent = `page ${page.page} of ${pages} · ${page.total} jobs`;
    $("#prev").disabled = page.page <= 1;
    $("#next").disabled = page.page >= pages;
  }

  function jobRow(item) {
    const row = document.createElement("tr");
    row.dataset.id = item.id;
    row.classList.toggle("selected", item.id === view.job);
    const cells = [item.id, "", time(item.createdAt), item.attemptsMade ?? 0, item.failedReason || ""];
    for (const text of cells) {
      const cell = document.createElement("td");
      cell.textContent = text;
      row.append(cell);
    }
    const bar = document.createElement("progress");
    bar.max = 100;
    bar.value = percent(item.progress);
    row.cells[1].append(bar);
    row.addEventListener("click", () => go({ job: item.id }));
    return row;
  }

  function showProgress(data) {
    if (data.queue !== view.queue) return;
    const bar = $(`#jobs tr[data-id="${CSS.escape(data.id)}"] progress`);
    if (bar) bar.value = percent(data.progress);
  }

  function renderJob() {
    $("#detail").hidden = false;
    $("#d-id").textContent = `${job.queue} / ${job.id}`;
    badge($("#d-state"), job.state);
    $("#d-progress").value = percent(job.progress);
    $("#d-percent").textContent = `${Math.round(percent(job.progress))}%`;
    const fields = {
      name: job.name, priority: job.priority,
      attempts: `${job.attemptsMade ?? 0} made of ${job.attempts}`,
      // Times its worker died under it: counted apart, they use no attempt.
      stalls: `${job.stalls ?? 0}`,
      created: time(job.createdAt), processed: time(job.processedAt), finished: time(job.finishedAt),
      "failed reason": job.failedReason || "—",
    };
    $("#d-fields").replaceChildren(...Object.entries(fields).flatMap(([key, value]) => {
      const dt = document.createElement("dt");
      const dd = document.createElement("dd");
      dt.textContent = key;
      dd.textContent = value;
      return [dt, dd];
    }));
    $("#d-data").textContent = JSON.stringify(job.data, null, 2);
    $("#d-result-box").hidden = job.result == null;
    $("#d-result").textContent = JSON.stringify(job.result, null, 2);
    $("#d-stack-box").hidden = !(job.stacktrace && job.stacktrace.length);
    $("#d-stack").textContent = (job.stacktrace || []).join("\n\n");
    $("#d-retry").hidden = !ADMIN || job.state !== "failed";
    $("#d-cancel").hidden = !ADMIN || !CANCELLABLE.has(job.state);
  }

  function closeJobStream() {
    if (jobStream) jobStream.close();
    jobStream = null;
  }

  async function loadJob() {
    closeJobStream();
    if (!view.job) { $("#detail").hidden = true; return; }
    job = await api(queuePath("jobs", view.job));
    renderJob();
    if (FINAL.includes(job.state)) return;
    const query = new URLSearchParams({ queue: view.queue });
    const stream = new EventSource(`/api/jobs/${encodeURIComponent(job.id)}/events?${query}`);
    jobStream = stream;
    const update = (e) => { job = { ...job, ...JSON.parse(e.data) }; renderJob(); };
    stream.addEventListener("state", update);
    stream.addEventListener("progress", update);
    // The final view lacks the stack trace and attempts: read the whole detail once more.
    const finish = () => { closeJobStream(); loadJob().catch((err) => say(err.message, true)); };
    stream.addEventListener("completed", finish);
    stream.addEventListener("failed", finish);
  }

  async function render() {
    const previous = view;
    view = readHash();
    $("#queue-panel").hidden = !view.queue;
    if (!view.queue) { $("#detail").hidden = true; return; }
    $("#q-name").textContent = view.queue;
    for (const tab of document.querySelectorAll("#state-tabs a")) {
      tab.classList.toggle("current", tab.dataset.state === view.state);
    }
    if (overview) showCounts(overview);
    try {
      await loadList();
      if (view.job !== previous.job || view.queue !== previous.queue || !view.job) await loadJob();
    } catch (error) {
      say(error.message, true);
    }
  }

  async function act(action) {
    try {
      say(await action());
      showCounts(await api("/api/queues"));
      scheduleList();
    } catch (error) {
      say(error.message, true);
    }
  }

  $("#pause").addEventListener("click", () => act(async () => {
    await api(queuePath("pause"), {});
    return `${view.queue} paused`;
  }));
  $("#resume").addEventListener("click", () => act(async () => {
    await api(queuePath("resume"), {});
    return `${view.queue} resumed`;
  }));
  $("#retry-all").addEventListener("click", () => act(async () =>
    `${(await api(queuePath("retry-failed"), {})).retried} failed jobs retried`));
  $("#clean-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = event.target;
    const state = form.elements.state.value;
    const olderThanMs = Number(form.elements.age.value) * Number(form.elements.unit.value);
    if (!confirm(`Remove ${state} jobs of ${view.queue} older than ${form.elements.age.value} ${form.elements.unit.selectedOptions[0].text}?`)) return;
    act(async () => `${(await api(queuePath("clean"), { state, olderThanMs })).removed} ${state} jobs removed`);
  });
  $("#d-retry").addEventListener("click", () => act(async () => {
    await api(queuePath("jobs", job.id, "retry"), {});
    await loadJob();
    return `job ${job.id} retried`;
  }));
  $("#d-cancel").addEventListener("click", () => act(async () => {
    if (!confirm(`Cancel job ${job.id}? It fails as "cancelled" and is not retried.`)) return "";
    await api(queuePath("jobs", job.id, "cancel"), {});
    await loadJob();
    return `job ${job.id} cancelled`;
  }));
  for (const tab of document.querySelectorAll("#state-tabs a")) {
    tab.addEventListener("click", (e) => { e.preventDefault(); go({ state: tab.dataset.state, page: 1, job: null }); });
  }
  $("#prev").addEventListener("click", () => go({ page: view.page - 1 }));
  $("#next").addEventListener("click", () => go({ page: view.page + 1 }));

  const live = new EventSource("/api/queues/events");
  live.addEventListener("counts", (e) => showCounts(JSON.parse(e.data)));
  live.addEventListener("progress", (e) => showProgress(JSON.parse(e.data)));
  live.onopen = () => { $("#live").textContent = "live"; $("#live").classList.add("on"); };
  live.onerror = () => { $("#live").textContent = "reconnecting…"; $("#live").classList.remove("on"); };

  window.addEventListener("hashchange", render);
  render();
})();
