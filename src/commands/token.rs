//! `chimewatch token mint`: an attendee token, for testing token auth or for backends without a JWT library.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow};
use chimewatch_gateway::auth::{AttendeeClaims, mint_token};

use crate::cli::MintArgs;
use crate::config::Settings;

pub fn mint(args: MintArgs, settings: &Settings) -> anyhow::Result<()> {
    let secret = settings.gateway.token_secret.clone().context(
        "no token secret: pass --token-secret, set CHIMEWATCH_TOKEN_SECRET, or set gateway.token_secret in the config file",
    )?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let claims = AttendeeClaims {
        meeting_id: args.meeting_id,
        attendee_id: args.attendee_id,
        exp: now + args.ttl_secs,
        external_user_id: args.external_user_id,
    };
    println!("{}", mint_token(secret.as_bytes(), &claims).map_err(|e| anyhow!(e))?);
    Ok(())
}
