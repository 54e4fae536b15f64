//! `chimewatch dashboards put` and `chimewatch alarms put`: the dashboards and alarms of `deploy/` (the ones `up`
//! renders and the CloudFormation template deploys) into a CloudWatch account, filled for one deployment.
//! `--dry-run` prints the API requests as JSON lines and sends nothing.

use anyhow::{Context, bail};
use chimewatch_console::builtin;
use chimewatch_console::template::Values;
use chimewatch_sinks::cloudwatch_admin;
use serde_json::json;

use crate::cli::{AlarmsPutArgs, DashboardsPutArgs, PutTarget};
use crate::config::Settings;

/// The placeholders' values for this deployment, and the region.
async fn target(target: &PutTarget, settings: &Settings) -> anyhow::Result<(Values, aws_config::SdkConfig)> {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(region) = &target.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    let sdk = loader.load().await;
    let Some(region) = sdk.region().map(ToString::to_string) else {
        bail!("no AWS region: pass --region or set AWS_REGION");
    };
    let aggregation = settings.aggregation()?;
    let pipeline_namespace =
        settings.pipeline()?.map_or_else(|| chimewatch_sinks::pipeline::DEFAULT_NAMESPACE.to_owned(), |p| p.namespace);
    Ok((super::deploy_values(&region, &aggregation, &pipeline_namespace), sdk))
}

/// One JSON line on stdout; a closed pipe (`| head`) ends the command with an error rather than a panic.
fn print(line: &serde_json::Value) -> anyhow::Result<()> {
    use std::io::Write;
    writeln!(std::io::stdout().lock(), "{line}").context("writing to stdout")
}

/// Ends with an error naming how many puts failed (each was reported as it failed).
fn outcome(failed: usize, total: usize, what: &str) -> anyhow::Result<()> {
    if failed > 0 {
        bail!("{failed} of {total} {what} were not put (see above)");
    }
    Ok(())
}

pub async fn dashboards(args: DashboardsPutArgs, settings: &Settings) -> anyhow::Result<()> {
    let (values, sdk) = target(&args.target, settings).await?;
    let requests = builtin::dashboard_requests(&values, &args.target.name_prefix).map_err(anyhow::Error::msg)?;
    if args.target.dry_run {
        for (name, body) in &requests {
            print(&json!({"operation": "PutDashboard", "request": {"DashboardName": name, "DashboardBody": body}}))?;
        }
        return Ok(());
    }
    let client = chimewatch_sinks::cloudwatch::client(&sdk, &[]);
    let mut failed = 0;
    for (name, body) in &requests {
        match cloudwatch_admin::put_dashboard(&client, name, body).await {
            Ok(messages) => {
                eprintln!("put dashboard {name}");
                for m in &messages {
                    eprintln!("  CloudWatch notes: {m}");
                }
                print(&json!({"dashboard": name, "validationMessages": messages}))?;
            }
            Err(e) => {
                eprintln!("error: {e}");
                failed += 1;
            }
        }
    }
    outcome(failed, requests.len(), "dashboards")
}

pub async fn alarms(args: AlarmsPutArgs, settings: &Settings) -> anyhow::Result<()> {
    let (values, sdk) = target(&args.target, settings).await?;
    let requests = builtin::alarm_requests(&values, &args.target.name_prefix, &args.alarm_actions)
        .map_err(anyhow::Error::msg)
        .context("the alarms of deploy/alarms/")?;
    if args.target.dry_run {
        for (request, _) in &requests {
            print(&json!({"operation": "PutMetricAlarm", "request": request}))?;
        }
        return Ok(());
    }
    if args.alarm_actions.is_empty() {
        eprintln!("note: no --alarm-action: the alarms change state but notify no one");
    }
    let client = chimewatch_sinks::cloudwatch::client(&sdk, &[]);
    let mut failed = 0;
    for (_, alarm) in &requests {
        match cloudwatch_admin::put_metric_alarm(&client, alarm).await {
            Ok(()) => {
                eprintln!("put alarm {}", alarm.name());
                print(&json!({"alarm": alarm.name()}))?;
            }
            Err(e) => {
                eprintln!("error: {e}");
                failed += 1;
            }
        }
    }
    outcome(failed, requests.len(), "alarms")
}
