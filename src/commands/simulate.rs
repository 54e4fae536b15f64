//! `chimewatch simulate`: plays a simulated fleet against a gateway and prints what was sent and answered as JSON.

use anyhow::anyhow;

use crate::cli::SimulateArgs;
use crate::config::Settings;
use crate::simulate::{self, Failure, Options, Summary};

pub async fn run(args: SimulateArgs, settings: &Settings) -> anyhow::Result<()> {
    let api_key = args.api_key.or_else(|| settings.gateway.api_keys.as_ref().and_then(|keys| keys.first().cloned()));
    let options = Options {
        url: args.url,
        rate: args.rate,
        duration: args.duration,
        backfill: args.backfill,
        seed: args.seed,
        scenario: args.scenario,
        api_key,
        token_secret: settings.gateway.token_secret.clone(),
        concurrency: args.concurrency,
        progress: !args.quiet,
    };
    let phases: Vec<String> = options
        .scenario
        .phases()
        .iter()
        .map(|p| match p.to_secs {
            Some(to) => format!("{} {}-{}s", p.name, p.from_secs, to),
            None => format!("{} from {}s", p.name, p.from_secs),
        })
        .collect();
    let backfill = if options.backfill.is_zero() {
        String::new()
    } else {
        format!(", the first {} played at once", humantime::format_duration(options.backfill))
    };
    eprintln!(
        "chimewatch simulate: {} fleet (seed {}, {}) at {} events/s against {}{}{backfill}",
        options.scenario.name(),
        options.seed,
        phases.join(", "),
        options.rate,
        options.url,
        options.duration.map_or(" until Ctrl-C".to_owned(), |d| format!(" for {}", humantime::format_duration(d)))
    );
    let result: Result<Summary, Failure> = simulate::run(options, super::shutdown_signal()).await;
    match result {
        Ok(summary) => {
            println!("{}", serde_json::to_string_pretty(&summary)?);
            Ok(())
        }
        Err(failure) => {
            // What was done before the failure, for whoever investigates it.
            if failure.summary.requests > 0 {
                println!("{}", serde_json::to_string_pretty(&failure.summary)?);
            }
            Err(anyhow!(failure.message))
        }
    }
}
