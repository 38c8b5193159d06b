//! Progress of a long pass (a first link-up, a benchmark's backfill) on
//! standard error: a spinner with the links made, their rate, the records
//! staged and the writes queued, read from the state store while the pass
//! runs; on a terminal it is redrawn in place, otherwise a line every ten
//! seconds once the pass has taken that long.

use std::future::Future;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::engine::Engine;

/// How often the counts are read.
const TICK: Duration = Duration::from_millis(250);
/// How often a plain line is printed when standard error is not a terminal.
const LINE_EVERY: Duration = Duration::from_secs(10);

/// Run `work` (a pass of `engine`), reporting its progress as `what`.
pub async fn watch<T>(engine: &Engine, what: &str, work: impl Future<Output = T>) -> T {
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                .expect("the template is valid"),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    });
    tokio::pin!(work);
    let started = Instant::now();
    let mut printed = started;
    let mut tick = tokio::time::interval(TICK);
    let (mut first_links, mut last) = (None, String::new());
    let done = loop {
        tokio::select! {
            done = &mut work => break done,
            _ = tick.tick() => {
                let pairs: Vec<String> = engine.policies().iter().map(|p| p.name.clone()).collect();
                let Ok(counts) = engine
                    .store()
                    .call(move |s| {
                        let mut total = [0u64; 3];
                        for pair in &pairs {
                            let c = s.counts(pair)?;
                            total[0] += c.links;
                            total[1] += c.inbox;
                            total[2] += c.pending_writes;
                        }
                        Ok(total)
                    })
                    .await
                else {
                    continue;
                };
                let [links, staged, queued] = counts;
                let base = *first_links.get_or_insert(links);
                let secs = started.elapsed().as_secs_f64().max(0.001);
                let rate = (links - base.min(links)) as f64 / secs;
                last = format!(
                    "{what}: {links} linked ({rate:.0}/s), {staged} records staged, {queued} writes queued"
                );
                match &bar {
                    Some(bar) => bar.set_message(last.clone()),
                    None if printed.elapsed() >= LINE_EVERY => {
                        eprintln!("{last} ({:.0} s)", started.elapsed().as_secs_f64());
                        printed = Instant::now();
                    }
                    None => {}
                }
            }
        }
    };
    if let Some(bar) = bar {
        bar.finish_and_clear();
    } else if started.elapsed() >= LINE_EVERY && !last.is_empty() {
        eprintln!("{what}: done in {:.0} s", started.elapsed().as_secs_f64());
    }
    done
}
