/**
 * Progress of the demo's long phases: a cli-progress bar per phase on a terminal, and log lines (every
 * tenth of the phase, at most one per few seconds, plus one at the end) when stdout is not a terminal,
 * so CI logs stay readable.
 */
import cliProgress from "cli-progress";
import { log } from "../common/log.js";

export interface PhaseBar {
  /** Sets the position (0..total) and a short status such as "task 2/5 epoch 3/5 loss 0.41". */
  update(value: number, status?: string): void;
  /** Ends the phase with a one-line summary. */
  stop(summary: string): void;
}

export interface Progress {
  start(label: string, total: number): PhaseBar;
}

const LOG_EVERY_SECONDS = 5;

export function createProgress(interactive = process.stdout.isTTY === true): Progress {
  return interactive ? new BarProgress() : new LogProgress();
}

class BarProgress implements Progress {
  start(label: string, total: number): PhaseBar {
    const bar = new cliProgress.SingleBar(
      {
        stream: process.stdout,
        format: `${label.padEnd(22)} {bar} {percentage}% | {eta_formatted} left | {status}`,
        barsize: 28,
        hideCursor: true,
        etaBuffer: 50,
      },
      cliProgress.Presets.shades_classic,
    );
    bar.start(Math.max(1, total), 0, { status: "" });
    return {
      update: (value, status) => bar.update(value, status === undefined ? {} : { status }),
      stop: (summary) => {
        bar.update(Math.max(1, total), { status: summary });
        bar.stop();
      },
    };
  }
}

class LogProgress implements Progress {
  start(label: string, total: number): PhaseBar {
    const started = performance.now();
    let lastTenth = -1;
    let lastLog = 0;
    return {
      update: (value, status) => {
        const tenth = Math.floor((10 * value) / Math.max(1, total));
        const now = performance.now();
        if (tenth > lastTenth && now - lastLog >= LOG_EVERY_SECONDS * 1000) {
          lastTenth = tenth;
          lastLog = now;
          log.info(
            { phase: label, done: value, total, status },
            `${label}: ${Math.round((100 * value) / total)}%`,
          );
        }
      },
      stop: (summary) => {
        const seconds = Math.round((performance.now() - started) / 100) / 10;
        log.info({ phase: label, seconds }, `${label}: done in ${seconds} s — ${summary}`);
      },
    };
  }
}
