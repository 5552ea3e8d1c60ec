// Add one job with Node's bullmq and wait for its result: node produce.js QUEUE NAME 'JSON-DATA'
const { Queue, QueueEvents } = require("bullmq");

async function main() {
  const [queueName, jobName, data] = process.argv.slice(2);
  const connection = { url: process.env.REDIS_URL };
  const prefix = process.env.QUEUE_PREFIX || "bull";
  const queue = new Queue(queueName, { connection, prefix });
  const events = new QueueEvents(queueName, { connection, prefix });
  await events.waitUntilReady();
  const job = await queue.add(jobName, JSON.parse(data || "{}"), { attempts: 3, priority: 2 });
  const result = await job.waitUntilFinished(events, 30000);
  console.log(JSON.stringify({ id: job.id, result }));
  await events.close();
  await queue.close();
}

main().catch((error) => {
  console.error(error.message);
  process.exit(1);
});
