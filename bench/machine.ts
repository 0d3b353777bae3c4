import { readFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";

/** More of the CPU than this (%, all cores) in use before a bench starts: other work shares the machine. */
export const OTHER_WORK_PERCENT = 10;

/**
 * Busy and total CPU time of all cores so far, in clock ticks, from the first line of /proc/stat;
 * undefined where there is no such line (not Linux).
 */
function cpuTicks(): { busy: number; total: number } | undefined {
  let line: string;
  try {
    line = readFileSync("/proc/stat", "utf8").split("\n", 1)[0] ?? "";
  } catch {
    return undefined;
  }
  // cpu  user nice system idle iowait irq softirq steal (guest and guest_nice are inside user and nice)
  const ticks = line.trim().split(/\s+/).slice(1, 9).map(Number);
  if (ticks.length < 8 || !ticks.every(Number.isFinite)) return undefined;
  const total = ticks.reduce((sum, t) => sum + t, 0);
  return { busy: total - (ticks[3] ?? 0) - (ticks[4] ?? 0), total };
}

/**
 * The share of the machine's CPU time (all cores together, in %) that was busy over the next `ms`;
 * undefined when /proc/stat cannot tell.
 * Taken before a bench starts, it tells whether other work is running. The load average cannot:
 * it follows the last minutes, so it still counts a bench that has just ended.
 */
export async function cpuBusyPercent(ms = 3000): Promise<number | undefined> {
  const before = cpuTicks();
  await sleep(ms);
  const after = cpuTicks();
  if (before === undefined || after === undefined || after.total <= before.total) return undefined;
  return (100 * (after.busy - before.busy)) / (after.total - before.total);
}
