import { readFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";

/** Busy and total CPU time of all cores so far, in clock ticks, from the first line of /proc/stat. */
function cpuTicks(): { busy: number; total: number } {
  // cpu  user nice system idle iowait irq softirq steal (guest and guest_nice are inside user and nice)
  const line = readFileSync("/proc/stat", "utf8").split("\n", 1)[0] ?? "";
  const ticks = line.trim().split(/\s+/).slice(1, 9).map(Number);
  const total = ticks.reduce((sum, t) => sum + t, 0);
  return { busy: total - (ticks[3] ?? 0) - (ticks[4] ?? 0), total };
}

/**
 * The share of the machine's CPU time (all cores together, in %) that was busy over the next `ms`.
 * Taken before a bench starts, it tells whether other work is running. The load average cannot:
 * it follows the last minutes, so it still counts a bench that has just ended.
 */
export async function cpuBusyPercent(ms = 3000): Promise<number> {
  const before = cpuTicks();
  await sleep(ms);
  const after = cpuTicks();
  const total = after.total - before.total;
  return total > 0 ? (100 * (after.busy - before.busy)) / total : 0;
}
