"use strict";
// Upload page: multipart for small files, signed URL + PUT for large ones, then each job's
// progress over Server-Sent Events (/api/jobs/<id>/events).
(() => {
  const form = document.getElementById("upload-form");
  const list = document.getElementById("uploads");
  const maxFiles = Number(form.dataset.maxFiles);
  const FLAGS = ["useAI", "generateSummary", "generateEmbeddings"];
  // Browsers allow ~6 connections per host over HTTP/1.1; keep some free for uploads and fetches.
  const MAX_STREAMS = 4;
  // Sent with our own writes: the server refuses cookie-authenticated writes without it.
  const CSRF = { "X-CSRF-Token": document.querySelector('meta[name="heavylift-csrf"]').content };
  let openStreams = 0;
  const waitingStreams = [];

  // XMLHttpRequest rather than fetch: it reports upload progress.
  function send(method, url, body, headers, onUpload) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open(method, url);
      for (const [name, value] of Object.entries(headers)) xhr.setRequestHeader(name, value);
      if (onUpload) xhr.upload.onprogress = (e) => e.lengthComputable && onUpload(100 * e.loaded / e.total);
      xhr.onload = () => {
        let json = {};
        try { json = JSON.parse(xhr.responseText || "{}"); } catch (_) { /* not JSON */ }
        if (xhr.status >= 400) reject(new Error(json.error || `${method} ${url}: HTTP ${xhr.status}`));
        else resolve({ status: xhr.status, json });
      };
      xhr.onerror = () => reject(new Error(`${method} ${url}: network error`));
      xhr.send(body);
    });
  }

  // Elements from DOM calls only: file names, reasons and results are data, shown as text.
  function element(tag, className, text) {
    const el = document.createElement(tag);
    if (className) el.className = className;
    if (text !== undefined) el.textContent = text;
    return el;
  }

  function card(file) {
    const el = element("article", "card upload");
    const bar = element("progress");
    bar.max = 100;
    bar.value = 0;
    const status = element("span", "status", "waiting to upload");
    el.append(element("strong", "name", file.name), bar, status);
    list.prepend(el);
    return {
      el,
      set(text, percent) { status.textContent = text; if (percent !== undefined) bar.value = percent; },
      done(result) {
        el.classList.add("done");
        bar.value = 100;
        status.textContent = `Completed: ${result.chunks} chunks, ${result.themes} themes, ` +
          `${result.quotes} quotes, ${result.insights} insights. `;
        const link = element("a", "manifest", "Manifest");
        link.href = `/api/documents/${encodeURIComponent(result.documentId)}`;
        status.append(link);
      },
      fail(reason) { el.classList.add("failed"); status.textContent = `Failed: ${reason}`; },
    };
  }

  function watch(jobId, view) {
    waitingStreams.push(() => openStream(jobId, view));
    pump();
  }

  function pump() {
    while (openStreams < MAX_STREAMS && waitingStreams.length) {
      openStreams += 1;
      waitingStreams.shift()();
    }
  }

  function openStream(jobId, view) {
    view.el.dataset.jobId = jobId;
    const events = new EventSource(`/api/jobs/${encodeURIComponent(jobId)}/events?queue=documents`);
    const finish = () => { events.close(); openStreams -= 1; pump(); };
    const show = (job) => view.set(`${job.state}: ${Math.round(Number(job.progress) || 0)}%`,
                                   Number(job.progress) || 0);
    events.addEventListener("state", (e) => show(JSON.parse(e.data)));
    events.addEventListener("progress", (e) => {
      const p = Number(JSON.parse(e.data).progress) || 0;
      view.set(`processing: ${Math.round(p)}%`, p);
    });
    events.addEventListener("completed", (e) => { view.done(JSON.parse(e.data).result); finish(); });
    events.addEventListener("failed", (e) => { view.fail(JSON.parse(e.data).failedReason); finish(); });
    // A dropped connection reconnects by itself; a refused one (404, 401) is final.
    events.onerror = () => {
      if (events.readyState === EventSource.CLOSED) { view.fail("lost the job's event stream"); finish(); }
    };
  }

  function flags() {
    return Object.fromEntries(FLAGS.map((name) => [name, form.elements[name].checked]));
  }

  async function uploadSmall(files, options) {
    const body = new FormData();
    for (const file of files) body.append("files", file, file.name);
    for (const [name, on] of Object.entries(options)) body.append(name, String(on));
    const views = files.map(card);
    try {
      const { json } = await send("POST", "/api/documents/async-upload", body, CSRF,
        (p) => views.forEach((v) => v.set(`uploading: ${Math.round(p)}%`)));
      json.jobs.forEach((job, i) => { views[i].set("queued", 0); watch(job.jobId, views[i]); });
    } catch (error) {
      views.forEach((v) => v.fail(error.message));
    }
  }

  async function uploadSigned(file, options) {
    const view = card(file);
    try {
      const contentType = file.type || "application/pdf";
      const signed = (await send("POST", "/api/documents/upload-url",
        JSON.stringify({ filename: file.name, size: file.size, contentType, ...options }),
        { "Content-Type": "application/json", ...CSRF })).json;
      const put = await send(signed.method, signed.url, file, signed.headers,
        (p) => view.set(`uploading: ${Math.round(p)}%`));
      view.set("queued", 0);
      // file:// storage answers with the job; a bucket's finalize event enqueues it later.
      watch(put.json.jobId || await jobOf(signed.documentId, view), view);
    } catch (error) {
      view.fail(error.message);
    }
  }

  async function jobOf(documentId, view) {
    for (;;) {
      const res = await fetch(`/api/documents/${encodeURIComponent(documentId)}`);
      if (res.status === 202 || res.status === 200) {
        const body = await res.json();
        return body.jobId || body.job?.id;
      }
      if (res.status !== 404) throw new Error(`document ${documentId}: HTTP ${res.status}`);
      view.set("waiting for the storage event");
      await new Promise((r) => setTimeout(r, 1000));
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const files = [...form.elements.files.files];
    const options = flags();
    const threshold = Number(form.dataset.signedThreshold);
    const small = files.filter((f) => f.size <= threshold);
    for (let i = 0; i < small.length; i += maxFiles) uploadSmall(small.slice(i, i + maxFiles), options);
    files.filter((f) => f.size > threshold).forEach((f) => uploadSigned(f, options));
    form.reset();
  });
})();
