/**
 * Preloaded (`node --import`) into every server the bench starts: exits the server if the bench
 * itself is gone, even killed with SIGKILL, so no load test outlives its run. Costs one timer.
 */
const parent = process.ppid;
setInterval(() => {
  if (process.ppid !== parent) process.exit(1);
}, 500).unref();

export {};
