import type { Command } from "commander";

export function registerWatch(program: Command): void {
  program
    .command("watch")
    .description("Live view of a run: task and epoch progress, loss, workers and the accuracy matrix so far")
    .argument("[runDir]", "run directory (reads its events.jsonl)")
    .option("--nats <url>", "follow the run's events on NATS JetStream instead of events.jsonl")
    .option("--run <id>", "run id on NATS (default: from RUN_DIR/run.json)")
    .option("-f, --follow", "keep following new events until interrupted", false)
    .addHelpText(
      "after",
      `
Examples:
  $ inflora watch runs/c100 -f
  $ inflora watch --nats nats://nats:4222 --run 3f2a… -f`,
    )
    .action(async (runDir: string | undefined, o: { nats?: string; run?: string; follow: boolean }) => {
      const { runWatch } = await import("../watch.js");
      await runWatch({ runDir, nats: o.nats, run: o.run, follow: o.follow });
    });
}
