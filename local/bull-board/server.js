// bull-board on heavylift's queues: REDIS_URL, QUEUE_PREFIX (default "bull"), PORT (default 3100).
// npm install && REDIS_URL=redis://127.0.0.1:6379/0 npm start  ->  http://127.0.0.1:3100/admin/queues
const express = require("express");
const { Queue } = require("bullmq");
const { createBullBoard } = require("@bull-board/api");
const { BullMQAdapter } = require("@bull-board/api/bullMQAdapter");
const { ExpressAdapter } = require("@bull-board/express");

const connection = { url: process.env.REDIS_URL || "redis://127.0.0.1:6379/0" };
const prefix = process.env.QUEUE_PREFIX || "bull";
const names = ["documents", "datasets", "diagnostics"];

const serverAdapter = new ExpressAdapter();
serverAdapter.setBasePath("/admin/queues");
createBullBoard({
  queues: names.map((name) => new BullMQAdapter(new Queue(name, { connection, prefix }))),
  serverAdapter,
});

const app = express();
app.use("/admin/queues", serverAdapter.getRouter());
const port = Number(process.env.PORT || 3100);
app.listen(port, "127.0.0.1", () => console.log(`bull-board on http://127.0.0.1:${port}/admin/queues`));
